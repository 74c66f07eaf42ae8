"""The fake world the controller tests run in: the fakes wired together (tests/fakes `Lab`,
the fake operator running the real reconcile) and the controller service on them; and the
guest the node service tests run in (`tree`: a sysfs and mountinfo under a folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge_csi.controller import ControllerService
from lunbridge_csi.volume_rules import Timeouts
from tests.fakes import Lab
from tests.unit.csi.sysfs import add_disk, add_host

TIMEOUTS = Timeouts(provision=1, attach=1, detach=1, delete=1, expand=1, snapshot=1)


@pytest.fixture
def lab() -> Lab:
    return Lab.build()


@pytest.fixture
def service(lab: Lab) -> ControllerService:
    return ControllerService(lab.kube, TIMEOUTS)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A KVM guest's root: a virtio-scsi host in PCI slot 5 with disk sdb (tgtd's LUN `NAA`) at
    2:0:3:0, the root filesystem and /dev mounted."""
    root = tmp_path / "root"
    add_host(root, "host2", "0000:00:05.0")
    add_disk(root, "2:0:3:0", "sdb")
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "22 1 0:21 / / ro - 9p hostroot ro\n23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n"
    )
    return root
