"""DiskGroupSnapshot rules on the fakes with the real handlers: one group cut on the backend,
a member DiskSnapshot per disk that restores like any snapshot, deletion through the members;
disks on two backends are refused, a missing disk is waited for."""

from __future__ import annotations

from lunbridge.api import API_VERSION, DISK_GROUP_SNAPSHOT_PLURAL, DISK_SNAPSHOT_PLURAL
from lunbridge.models import DiskGroupSnapshot, DiskSnapshot, DiskSource, SnapshotPhase
from tests.fakes import Lab


async def _group(lab: Lab, name: str, *disks: str) -> DiskGroupSnapshot:
    body = {"apiVersion": API_VERSION, "kind": "DiskGroupSnapshot", "metadata": {"name": name},
            "spec": {"virtualDisks": list(disks)}}  # fmt: skip
    await lab.kube.create(DISK_GROUP_SNAPSHOT_PLURAL, body)
    return DiskGroupSnapshot.from_dict(lab.kube.read(DISK_GROUP_SNAPSHOT_PLURAL, name))


async def test_a_group_is_one_cut_and_its_members_restore_and_go_with_it() -> None:
    lab = Lab.build()
    await lab.create_disk("d1")
    await lab.create_disk("d2")
    group = await _group(lab, "g", "d1", "d2")
    assert group.status.ready_to_use
    assert len(lab.storage.groups) == 1
    assert sorted(lab.storage.groups[0]) == sorted([lab.lun("d1").name, lab.lun("d2").name])
    members = {m.virtual_disk: m for m in group.status.members}
    assert set(members) == {"d1", "d2"}
    for disk, member in members.items():
        snap = DiskSnapshot.from_dict(lab.kube.read(DISK_SNAPSHOT_PLURAL, member.disk_snapshot))
        assert snap.ready, disk
        assert snap.status.snapshot_name == member.snapshot_name
    restored = await lab.create_disk("r1", source=DiskSource(snapshot=members["d1"].disk_snapshot))
    assert restored.status.lun is not None
    assert lab.lun("r1").source_snapshot == members["d1"].snapshot_name

    await lab.kube.delete_object(DISK_GROUP_SNAPSHOT_PLURAL, "g")
    await lab.operator.retry()
    assert "g" not in lab.kube.objects[DISK_GROUP_SNAPSHOT_PLURAL]
    assert not lab.kube.objects.get(DISK_SNAPSHOT_PLURAL)
    assert not set(lab.storage.snapshots) & {m.snapshot_name for m in members.values()}


async def test_disks_on_two_backends_are_refused_and_a_missing_disk_waited_for() -> None:
    lab = Lab.build(backends=("gold", "silver"))
    await lab.create_disk("d1")
    await lab.create_disk("d2", backend="silver")
    refused = await _group(lab, "g", "d1", "d2")
    assert refused.status.phase is SnapshotPhase.FAILED
    ready = refused.status.condition("Ready")
    assert ready is not None
    assert "on backends gold, silver" in ready.message
    waiting = await _group(lab, "w", "d1", "later")
    assert waiting.status.phase is SnapshotPhase.PENDING
    condition = waiting.status.condition("Ready")
    assert condition is not None
    assert "VirtualDisk later does not exist" in condition.message
    await lab.create_disk("later")
    await lab.operator.retry()
    assert DiskGroupSnapshot.from_dict(lab.kube.read(DISK_GROUP_SNAPSHOT_PLURAL, "w")).status.ready_to_use
