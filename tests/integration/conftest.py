"""Session-scoped real peers for the integration tests, started by the same code as
`make lab-up` (tests/lab) in a private lab folder, and stopped at the end of the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab import guest as guest_module
from tests.lab import lab as lab_module
from tests.lab import paths
from tests.lab import tgt as tgt_module
from tests.lab import vcsim as vcsim_module
from tests.lab.guest import Guest
from tests.lab.lab import LabState


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def lab(lab_dir: Path) -> Iterator[LabState]:
    """The whole lab: kube-apiserver, etcd, kube-controller-manager, vcsim and tgtd."""
    state = lab_module.up(lab_dir)
    yield state
    lab_module.down(lab_dir)


@pytest.fixture(scope="session")
def tgt(lab: LabState) -> tgt_module.Tgt:
    """The lab's tgtd."""
    return lab.tgt


@pytest.fixture(scope="session")
def vcsim(lab: LabState) -> vcsim_module.VcsimPeer:
    """The lab's vCenter simulator: its inventory and the lab credentials."""
    lab_dir = Path(lab.lab_dir)
    return vcsim_module.VcsimPeer(
        lab_dir, vcsim_module.load_inventory(lab_dir), lab.vsphere_user, lab.vsphere_password
    )


@pytest.fixture
def make_lun(tgt: tgt_module.Tgt, tmp_path: Path) -> Iterator[Callable[..., tgt_module.LabLun]]:
    """Make tgtd LUNs straight with tgtadm (masked to the given IQNs); removed after the test."""
    made: list[tgt_module.LabLun] = []

    def make(initiators: list[str], size: int = 64 << 20, naa: str | None = None) -> tgt_module.LabLun:
        lun = tgt_module.make_lun(tgt, tmp_path, initiators, size, naa)
        made.append(lun)
        return lun

    yield make
    for lun in made:
        tgt_module.delete_target(tgt, lun.tid)


@pytest.fixture(scope="session")
def guest(lab_dir: Path) -> Iterator[Guest]:
    """A QEMU (TCG) guest with a virtio-scsi controller, booted from this machine's own root."""
    vm = guest_module.start(lab_dir, paths.cache_dir())
    yield vm
    vm.close()
    guest_module.stop(lab_dir)
