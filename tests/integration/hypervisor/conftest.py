"""Fixtures for the vSphere layer against the lab's real vcsim and tgtd: a connected
`VSphere`, tgtd targets holding many LUNs, and a second simulator whose sessions expire after
2 s of idleness (the raw pyvmomi handle `si` and throwaway VMs `scratch_vm` come from
tests/integration/conftest.py).

At the end of the package every host loses the lab portal from its send targets and is
rescanned, so the lab's other tests find the hosts as the lab made them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from tests.integration.hypervisor.vcenter import LunSet, SpareVcsim, forget_portal, new_naa, server_pem
from tests.lab import paths, procs
from tests.lab import tgt as tgt_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState


@pytest.fixture(scope="session")
def lab_ca(lab: LabState) -> str:
    return server_pem(lab.vsphere_url)


@pytest.fixture
def config(lab: LabState, lab_ca: str) -> VSphereConfig:
    """The lab's vCenter, TLS verified against its own certificate as the CA bundle."""
    return VSphereConfig(
        url=lab.vsphere_url, username=lab.vsphere_user, password=lab.vsphere_password, ca_bundle=lab_ca
    )


@pytest.fixture
async def vsphere(config: VSphereConfig) -> AsyncIterator[VSphere]:
    client = await VSphere.connect(config)
    yield client
    await client.close()


@pytest.fixture(scope="package", autouse=True)
def _hosts_left_as_found(lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    yield
    forget_portal(si, vcsim.inventory, lab.tgt.port)


@pytest.fixture
def make_luns(tgt: tgt_lab.Tgt, tmp_path: Path) -> Iterator[Callable[..., LunSet]]:
    """`make(initiators, count)`: a new target with `count` 1 MiB LUNs masked to `initiators`
    (straight with tgtadm); deleted after the test."""
    made: list[int] = []

    def make(initiators: list[str], count: int) -> LunSet:
        tid = max(tgt_lab.target_ids(tgt), default=0) + 1
        target = f"iqn.2024-01.io.lunbridge.lab:many-{uuid.uuid4().hex[:8]}"
        tgt.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", target)
        made.append(tid)
        naas, files = [], []
        for lun in range(1, count + 1):
            naa = new_naa()
            backing = tmp_path / f"{tid}-{lun}.img"
            with backing.open("wb") as handle:
                handle.truncate(1 << 20)
            tgt.adm(
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                str(tid),
                "--lun",
                str(lun),
                "-b",
                str(backing),
            )
            tgt.adm(
                "--op", "update", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
                "--params", f"scsi_sn=LBMANY{tid:03d}{lun:03d},scsi_id={naa.removeprefix('naa.')}",
            )  # fmt: skip
            naas.append(naa)
            files.append(backing)
        for initiator in initiators:
            tgt.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-name", initiator)
        return LunSet(tid, target, tuple(naas), tuple(files))

    yield make
    for tid in made:
        tgt_lab.delete_target(tgt, tid)


def start_spare(lab_dir: Path, vcsim: vcsim_lab.VcsimPeer, *extra: str) -> SpareVcsim:
    lab_dir.mkdir(parents=True, exist_ok=True)
    inventory = vcsim_lab.start(
        lab_dir, paths.bin_dir(), procs.free_port(), vcsim.username, vcsim.password, extra_args=list(extra)
    )
    return SpareVcsim(lab_dir, inventory, vcsim.username, vcsim.password)


@pytest.fixture(scope="module")
def idle_vcsim(tmp_path_factory: pytest.TempPathFactory, vcsim: vcsim_lab.VcsimPeer) -> Iterator[SpareVcsim]:
    """A second simulator that drops sessions idle for 2 s (checked every 2 s, so a session
    is gone at most 4 s after its last call)."""
    spare = start_spare(tmp_path_factory.mktemp("idle-vcsim"), vcsim, "-session-idle-timeout", "2s")
    yield spare
    vcsim_lab.stop(spare.lab_dir)


@pytest.fixture
def doomed_vcsim(tmp_path: Path, vcsim: vcsim_lab.VcsimPeer) -> Iterator[SpareVcsim]:
    """A second simulator for a test to stop mid-session."""
    spare = start_spare(tmp_path / "doomed-vcsim", vcsim)
    yield spare
    vcsim_lab.stop(spare.lab_dir)
