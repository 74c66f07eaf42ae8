"""DiskRestore rules on the fakes with the real handlers: a disk is reverted in place from its
own snapshot (same LUN and NAA), once; a published disk, a snapshot of another disk and a
missing disk are refused (Failed, with the reason) and nothing is reverted; a disk whose
publication is being undone is waited for."""

from __future__ import annotations

from typing import Any

from lunbridge.api import API_VERSION, DISK_RESTORE_PLURAL, DISK_SNAPSHOT_PLURAL
from lunbridge.models import DiskRestore, DiskSnapshot, RestorePhase
from tests.fakes import Lab


async def _snapshot(lab: Lab, name: str, disk: str) -> DiskSnapshot:
    body = {"apiVersion": API_VERSION, "kind": "DiskSnapshot", "metadata": {"name": name},
            "spec": {"source": {"virtualDisk": disk}}}  # fmt: skip
    await lab.kube.create(DISK_SNAPSHOT_PLURAL, body)
    return DiskSnapshot.from_dict(lab.kube.read(DISK_SNAPSHOT_PLURAL, name))


async def _restore(lab: Lab, name: str, disk: str, snapshot: str) -> DiskRestore:
    body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "DiskRestore", "metadata": {"name": name},
                            "spec": {"virtualDisk": disk, "snapshot": snapshot}}  # fmt: skip
    await lab.kube.create(DISK_RESTORE_PLURAL, body)
    return DiskRestore.from_dict(lab.kube.read(DISK_RESTORE_PLURAL, name))


async def test_an_unpublished_disk_is_reverted_in_place_once() -> None:
    lab = Lab.build()
    disk = await lab.create_disk("d1", size="1Gi")
    snap = await _snapshot(lab, "s1", "d1")
    assert snap.ready
    await lab.patch("d1", size="2Gi")  # grew after the snapshot
    done = await _restore(lab, "r1", "d1", "s1")
    assert done.status.phase is RestorePhase.COMPLETED
    assert disk.status.lun is not None
    assert (done.status.lun, done.status.naa) == (disk.status.lun.name, disk.status.lun.naa)
    assert lab.storage.reverted == [(disk.status.lun.name, snap.status.snapshot_name)]
    assert done.status.size_bytes == 2 << 30  # the grown size stays
    assert lab.lun("d1").naa == disk.status.lun.naa
    await lab.operator.restart()  # kopf resumes every object
    assert len(lab.storage.reverted) == 1, "a done restore ran again"


async def test_refusals_name_their_reason_and_revert_nothing() -> None:
    lab = Lab.build()
    await lab.create_disk("d1")
    await lab.create_disk("d2")
    await _snapshot(lab, "s1", "d1")
    await lab.patch("d1", node_name="node-a")
    cases = {
        "published": ("d1", "s1", "DiskPublished", "published to node node-a"),
        "other": ("d2", "s1", "OtherDisk", "restore it into a new VirtualDisk"),
        "missing": ("nope", "s1", "DiskNotFound", "spec.virtualDisk nope"),
        "no-snapshot": ("d2", "nope", "SnapshotNotFound", "spec.snapshot nope"),
    }
    for name, (disk, snapshot, reason, words) in cases.items():
        refused = await _restore(lab, name, disk, snapshot)
        ready = refused.status.condition("Ready")
        assert refused.status.phase is RestorePhase.FAILED, name
        assert ready is not None
        assert (ready.reason, words in ready.message) == (reason, True), ready.message
    assert lab.storage.reverted == []
