"""The DiskGroupSnapshot lifecycle as plain async steps.

Up: every disk exists, has its LUN, and all are on one backend -> the members (LUN, storage
snapshot name, member DiskSnapshot name) are recorded before the cut -> one group cut on the
backend (`create_group_snapshot`: one instant across the LUNs, or a refusal that keeps
nothing) -> a member DiskSnapshot per disk, importing its storage snapshot, owned by the group
-> Ready. Down, behind the finalizer: the member DiskSnapshots are deleted (each deletes its storage
snapshot, or keeps it by the group's deletion policy, behind its own finalizer); storage
snapshots recorded for members whose object was never made are deleted here (Delete policy).
"""

from __future__ import annotations

import contextlib
from typing import Any

from lunbridge.api import (
    API_VERSION,
    DISK_GROUP_SNAPSHOT_KIND,
    DISK_GROUP_SNAPSHOT_PLURAL,
    DISK_SNAPSHOT_KIND,
    DISK_SNAPSHOT_PLURAL,
    GROUP_LABEL,
    SOURCE_DISK_ANNOTATION,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.errors import AlreadyExists, Busy, InvalidArgument, NotFound
from lunbridge.models import (
    DeletionPolicy,
    DiskGroupSnapshotSpec,
    DiskGroupSnapshotStatus,
    GroupMember,
    SnapshotPhase,
    VirtualDisk,
)
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile.services import Events, Services
from lunbridge_operator.reconcile.tracked import Tracked

KIND = DISK_GROUP_SNAPSHOT_KIND


class Group(Tracked[DiskGroupSnapshotSpec, DiskGroupSnapshotStatus]):
    """One DiskGroupSnapshot as a reconcile sees it."""

    plural = DISK_GROUP_SNAPSHOT_PLURAL
    spec_model = DiskGroupSnapshotSpec
    status_model = DiskGroupSnapshotStatus

    def left_behind(self) -> list[str]:
        return [
            f"storage snapshot {m.snapshot_name} on backend {self.status.backend}"
            for m in self.status.members
        ]


async def _disks(svc: Services, names: list[str]) -> list[VirtualDisk]:
    disks = []
    for name in names:
        try:
            disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
        except NotFound:
            raise NotFound(f"spec.virtualDisks: VirtualDisk {name} does not exist") from None
        if disk.status.lun is None or not disk.status.lun.name:
            raise Busy(f"spec.virtualDisks: VirtualDisk {name} has no LUN yet")
        disks.append(disk)
    return disks


def _member_body(group: Group, member: GroupMember, policy: DeletionPolicy) -> dict[str, Any]:
    owner = {"apiVersion": API_VERSION, "kind": KIND, "name": group.name, "uid": group.uid,
             "controller": True, "blockOwnerDeletion": False}  # fmt: skip
    return {
        "apiVersion": API_VERSION,
        "kind": DISK_SNAPSHOT_KIND,
        "metadata": {"name": member.disk_snapshot, "labels": {GROUP_LABEL: group.name},
                     "annotations": {SOURCE_DISK_ANNOTATION: member.virtual_disk},
                     "ownerReferences": [owner]},
        "spec": {"source": {"backend": group.status.backend, "snapshotName": member.snapshot_name},
                 "deletionPolicy": policy.value},
    }  # fmt: skip


async def reconcile(svc: Services, group: Group, events: Events) -> None:
    """Cut the group once; a Ready group is left as it is."""
    if group.spec is None:
        raise group.spec_error or InvalidArgument("spec is missing")
    status = group.status
    if status.ready_to_use:
        return
    disks = await _disks(svc, group.spec.virtual_disks)
    backends = {svc.backends.recorded(d.status.lun.backend if d.status.lun else None) for d in disks}
    if len(backends) > 1:
        raise InvalidArgument(
            f"spec.virtualDisks are on backends {', '.join(sorted(b or '?' for b in backends))}: "
            "a group snapshot is cut on one backend"
        )
    backend, storage = svc.backends.get(backends.pop(), "VirtualDisk status.lun.backend")
    status.backend = backend
    status.members = [
        GroupMember(
            virtual_disk=d.name,
            lun=d.status.lun.name if d.status.lun else None,
            snapshot_name=naming.group_member_snapshot_name(group.uid, d.metadata.uid or ""),
            disk_snapshot=naming.group_member_name(group.name, d.name),
        )
        for d in disks
    ]
    status.phase, status.observed_generation = SnapshotPhase.PENDING, group.generation
    await group.save(svc)  # what may exist is recorded before the cut
    with measured(KIND, "cut"):
        cut = await storage.create_group_snapshot({m.lun or "": m.snapshot_name for m in status.members})
    sizes = {s.name: s.size_bytes for s in cut}
    for member in status.members:
        member.restore_size = sizes.get(member.snapshot_name)
        body = _member_body(group, member, group.spec.deletion_policy)
        with contextlib.suppress(AlreadyExists):  # a retry after a crash finds it made
            await svc.kube.create(DISK_SNAPSHOT_PLURAL, body)
    status.ready_to_use, status.phase, status.message = True, SnapshotPhase.READY, ""
    status.creation_time = cut[0].created.strftime("%Y-%m-%dT%H:%M:%SZ") if cut else None
    group.condition(True, "GroupSnapshotReady", f"{len(cut)} LUNs cut at one instant on backend {backend}")
    await group.save(svc)
    events("GroupSnapshotCut", f"cut {', '.join(m.virtual_disk for m in status.members)} at one instant "
                               f"on backend {backend}")  # fmt: skip


async def delete(svc: Services, group: Group, events: Events) -> None:
    """Delete the member DiskSnapshots (each deletes or keeps its storage snapshot behind its
    own finalizer, and says so); the storage snapshot of a member that has no object (a crash
    before it was made) is deleted here (Delete policy)."""
    policy = group.spec.deletion_policy if group.spec is not None else DeletionPolicy.DELETE
    storage = None
    for member in group.status.members:
        try:
            found = await svc.kube.get(DISK_SNAPSHOT_PLURAL, member.disk_snapshot)
        except NotFound:
            if policy is DeletionPolicy.DELETE:
                if storage is None:
                    _, storage = svc.backends.get(group.status.backend, "status.backend")
                await storage.delete_snapshot(member.snapshot_name)
            continue
        if not (found.get("metadata") or {}).get("deletionTimestamp"):
            await svc.kube.delete_object(DISK_SNAPSHOT_PLURAL, member.disk_snapshot)
    events("Deleted", f"deleted the group's {len(group.status.members)} member snapshot(s) "
                      f"(deletionPolicy {policy.value})")  # fmt: skip
