"""A DiskRestore whose operator is SIGKILLed after the restore was recorded, and one killed in
the middle of the revert (the restored copy made, not yet in place: the backend's fault
injection LUNBRIDGE_CRASH_DURING_RESTORE=1): right after the kill the LUN holds its old content
untouched; the operator started again finishes the restore, and then the LUN holds exactly the
snapshot's content, same NAA, and no temporary file is left in the pool. The disk is not
attached, so its backing file is read directly. These tests run their own operator."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.integration.operator.crashing import Operator
from tests.integration.operator.snapshotting import Snapshots
from tests.integration.operator.test_restore import restore, wait_done
from tests.lab.lab import LabState


def lun_file(lab: LabState, disk: dict[str, Any]) -> Path:
    return observe.pool_dir(lab) / "luns" / f"{disk['status']['lun']['name']}.img"


def fill(path: Path, seed: bytes) -> str:
    """Write 4 MiB made from `seed` at the start of the file; the file's sha256 after that."""
    with path.open("r+b") as handle:
        handle.write(hashlib.sha256(seed).digest() * (4 << 15))
        handle.flush()
        os.fsync(handle.fileno())
    return digest(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["after the restore was recorded", "during the copy"])
def test_a_restore_killed_midway_ends_with_the_old_or_the_restored_content_never_a_mix(
    lab: LabState, own_operator: Operator, disks: Disks, snapshots: Snapshots, how: str
) -> None:  # own_operator first: it stops last, after the disks and snapshots are gone
    own_operator.start()
    disk = observe.wait_ready(lab, disks.make(size="16Mi"))
    path = lun_file(lab, disk)
    content_a = fill(path, b"A")
    snap = snapshots.wait_ready(snapshots.make({"virtualDisk": disk["metadata"]["name"]}))
    content_b = fill(path, b"B")
    own_operator.stop()

    if how == "during the copy":
        own_operator.start(LUNBRIDGE_CRASH_DURING_RESTORE="1")
    else:
        own_operator.start(crash_after="restoring", kind="DiskRestore")
    name = restore(lab, disk["metadata"]["name"], snap["metadata"]["name"], disks.test_id)
    own_operator.wait_dead()
    assert digest(path) == content_b, f"killed {how}, the LUN holds neither its old content"

    own_operator.start()
    done = wait_done(lab, name, timeout=90)
    assert done["status"]["phase"] == "Completed", done["status"]
    assert digest(path) == content_a, "the restored LUN does not hold exactly the snapshot's content"
    assert done["status"]["naa"] == disk["status"]["lun"]["naa"]
    left = sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".img"))
    assert left == [], f"temporary files left in the pool: {left}"
