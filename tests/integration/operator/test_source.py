"""A VirtualDisk made from another disk is a real copy: its LUN holds the other disk's bytes,
has its own NAA and serial, and the snapshot used on the way is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.lab.lab import LabState

pytestmark = pytest.mark.usefixtures("operator")

MARKER = b"lunbridge: these bytes must reach the clone\n"


def lun_file(lab: LabState, disk: dict[str, object]) -> Path:
    name = disk["status"]["lun"]["name"]  # type: ignore[index]
    return Path(lab.env()["LUNBRIDGE_TGT_POOL_DIR"]) / "luns" / f"{name}.img"


def test_clone_of_a_disk_has_its_data_and_its_own_identity(lab: LabState, disks: Disks) -> None:
    origin = observe.wait_ready(lab, disks.make(size="16Mi"))
    with lun_file(lab, origin).open("r+b") as handle:
        handle.seek(4096)
        handle.write(MARKER)

    clone = observe.wait_ready(
        lab, disks.make(size="16Mi", source={"virtualDisk": origin["metadata"]["name"]})
    )

    with lun_file(lab, clone).open("rb") as handle:
        handle.seek(4096)
        assert handle.read(len(MARKER)) == MARKER
    assert clone["status"]["lun"]["naa"] != origin["status"]["lun"]["naa"]
    assert clone["status"]["lun"]["serial"] != origin["status"]["lun"]["serial"]
    assert not observe.backend_state(lab).get("snapshots"), "the clone's scaffolding snapshot stayed"


def test_clone_of_a_missing_disk_says_so(lab: LabState, disks: Disks) -> None:
    name = disks.make(source={"virtualDisk": "no-such-disk"})

    def failing() -> str | None:
        disk = observe.get(lab, "vdisk", name)
        message = observe.condition(disk, "Ready").get("message", "") if disk else ""
        return message or None

    message = observe.eventually(failing, 30, "a Ready=False message")
    assert "spec.source.virtualDisk no-such-disk does not exist" in message
