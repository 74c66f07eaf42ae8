"""The CSI GroupController service: volume group snapshots as DiskGroupSnapshot objects, which
the operator cuts at one instant across their LUNs (fencing the backend's I/O, see
lunbridge/storage/tgt/fence.py) and turns into one member DiskSnapshot per volume.

`group_snapshot_id` is the DiskGroupSnapshot's name (the request name when it is a DNS label,
as `groupsnapshot-<uid>` from the csi-snapshotter is); each member's `snapshot_id` is its
handle `<backend>/<storage snapshot name>`, which the snapshot RPCs resolve like any other.

Idempotency: the group of that name with the same set of source volumes is the same group;
other volumes -> ALREADY_EXISTS. Create returns once the group is cut and its members are
ready. Delete of an unknown id is OK; Get of one is NOT_FOUND. `snapshot_ids` given to Delete
or Get must be exactly the group's members (INVALID_ARGUMENT otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from lunbridge.api import DISK_GROUP_SNAPSHOT_PLURAL, DISK_SNAPSHOT_PLURAL
from lunbridge.errors import AlreadyExists, InvalidArgument, NotFound
from lunbridge.models import (
    DiskGroupSnapshot,
    DiskGroupSnapshotSpec,
    DiskSnapshot,
    ObjectMeta,
    make_handle,
)
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.errors import InFlight, handled
from lunbridge_csi.kube import ControllerKube
from lunbridge_csi.snapshots import gave_up, snapshot_message, snapshot_or_none
from lunbridge_csi.volume_rules import (
    MANAGED_BY,
    NAME_ANNOTATION,
    RESERVED_PREFIX,
    Timeouts,
    is_object_name,
    known_volume,
    required,
    volume_id_for,
)
from lunbridge_csi.waiting import wait_until, watched

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
GroupRPC = csi_pb2.GroupControllerServiceCapability.RPC


def group_or_none(body: dict[str, Any] | None) -> DiskGroupSnapshot | None:
    """A watched DiskGroupSnapshot (None: deleted)."""
    return DiskGroupSnapshot.from_dict(body) if body is not None else None


def member_ids(group: DiskGroupSnapshot) -> set[str]:
    return {make_handle(group.status.backend or "", m.snapshot_name) for m in group.status.members}


def as_csi(group: DiskGroupSnapshot) -> csi_pb2.VolumeGroupSnapshot:
    created = Timestamp()
    if group.status.creation_time:
        created.FromJsonString(group.status.creation_time)
    ready = bool(group.status.ready_to_use)
    snapshots = [
        csi_pb2.Snapshot(
            size_bytes=m.restore_size or 0,
            snapshot_id=make_handle(group.status.backend or "", m.snapshot_name),
            source_volume_id=m.virtual_disk,
            creation_time=created,
            ready_to_use=ready,
            group_snapshot_id=group.name,
        )
        for m in group.status.members
    ]
    return csi_pb2.VolumeGroupSnapshot(
        group_snapshot_id=group.name, snapshots=snapshots, creation_time=created, ready_to_use=ready
    )


class GroupControllerService(csi_pb2_grpc.GroupControllerServicer):
    def __init__(self, kube: ControllerKube, timeouts: Timeouts | None = None) -> None:
        self.kube = kube
        self.timeouts = timeouts or Timeouts()
        self.in_flight = InFlight()

    async def _get(self, name: str) -> DiskGroupSnapshot | None:
        try:
            return await self.kube.get_group_snapshot(name)
        except NotFound:
            return None

    async def _wait(self, name: str, want_gone: bool, context: Context) -> DiskGroupSnapshot | None:
        """Until the group is gone (`want_gone`), or cut with every member DiskSnapshot ready: a
        watch of the group until the operator cut it, then of each member until it is ready, all
        within one bound (`Timeouts.snapshot`)."""
        loop = asyncio.get_running_loop()
        started = loop.time()

        def cut(group: DiskGroupSnapshot | None) -> bool:
            if want_gone:
                return group is None
            if group is None:
                raise NotFound(f"DiskGroupSnapshot {name} is gone")
            return bool(group.status.ready_to_use)

        group = await wait_until(
            "DiskGroupSnapshot",
            name,
            "deleted" if want_gone else "cut",
            lambda: self._get(name),
            cut,
            gave_up=lambda group: gave_up(group) if group is not None and not want_gone else None,
            said=lambda group: (group.status.message if group is not None else "gone") or "no message",
            bound=self.timeouts.snapshot,
            context=context,
            changes=watched(self.kube, DISK_GROUP_SNAPSHOT_PLURAL, name, group_or_none),
        )
        for member in group.status.members if group is not None else []:
            left = self.timeouts.snapshot - (loop.time() - started)
            await self._wait_member(member.disk_snapshot, left, context)
        return group

    async def _wait_member(self, name: str, bound: float, context: Context) -> None:
        async def read() -> DiskSnapshot | None:
            try:
                return await self.kube.get_snapshot(name)
            except NotFound:
                return None

        await wait_until(
            "DiskSnapshot",
            name,
            "ready to use",
            read,
            lambda snap: snap is not None and snap.ready,
            gave_up=lambda _: None,
            said=lambda snap: snapshot_message(snap) if snap is not None else "not made yet",
            bound=max(bound, 0.0),
            context=context,
            changes=watched(self.kube, DISK_SNAPSHOT_PLURAL, name, snapshot_or_none),
        )

    def _check_members(self, group: DiskGroupSnapshot, snapshot_ids: list[str]) -> None:
        if snapshot_ids and set(snapshot_ids) != member_ids(group):
            raise InvalidArgument(
                f"snapshot_ids {sorted(snapshot_ids)} are not the members of group snapshot {group.name} "
                f"({sorted(member_ids(group))})"
            )

    @handled
    async def GroupControllerGetCapabilities(
        self, request: csi_pb2.GroupControllerGetCapabilitiesRequest, context: Context
    ) -> csi_pb2.GroupControllerGetCapabilitiesResponse:
        rpc = GroupRPC(type=GroupRPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT)
        return csi_pb2.GroupControllerGetCapabilitiesResponse(
            capabilities=[csi_pb2.GroupControllerServiceCapability(rpc=rpc)]
        )

    @handled
    async def CreateVolumeGroupSnapshot(
        self, request: csi_pb2.CreateVolumeGroupSnapshotRequest, context: Context
    ) -> csi_pb2.CreateVolumeGroupSnapshotResponse:
        name = required(request.name, "name")
        if not request.source_volume_ids:
            raise InvalidArgument("source_volume_ids is required")
        sources = [known_volume(v) for v in request.source_volume_ids]
        unknown = sorted(k for k in request.parameters if not k.startswith(RESERVED_PREFIX))
        if unknown:
            raise InvalidArgument(
                f"parameter(s) {', '.join(unknown)} are not known to lunbridge group snapshots"
            )
        group_name = volume_id_for(name)
        async with self.in_flight.hold(f"group/{group_name}"):
            existing = await self._get(group_name)
            if existing is None:
                for volume in sources:
                    await self.kube.get(volume)  # NotFound: a source volume does not exist
                meta = ObjectMeta(
                    name=group_name, labels=dict(MANAGED_BY), annotations={NAME_ANNOTATION: name}
                )
                group = DiskGroupSnapshot(metadata=meta, spec=DiskGroupSnapshotSpec(virtual_disks=sources))
                try:
                    existing = await self.kube.create_group_snapshot(group)
                    log.info(
                        "CreateVolumeGroupSnapshot %s: DiskGroupSnapshot %s of %s", name, group_name, sources
                    )
                except AlreadyExists:
                    existing = await self.kube.get_group_snapshot(group_name)
            if existing.metadata.annotations.get(NAME_ANNOTATION) != name:
                raise AlreadyExists(f"DiskGroupSnapshot {group_name} exists but was not made for {name!r}")
            if set(existing.spec.virtual_disks) != set(sources):
                have = sorted(existing.spec.virtual_disks)
                raise AlreadyExists(f"group snapshot {name!r} exists of {have}, not {sorted(sources)}")
            group_ready = await self._wait(group_name, False, context)
        assert group_ready is not None
        return csi_pb2.CreateVolumeGroupSnapshotResponse(group_snapshot=as_csi(group_ready))

    @handled
    async def DeleteVolumeGroupSnapshot(
        self, request: csi_pb2.DeleteVolumeGroupSnapshotRequest, context: Context
    ) -> csi_pb2.DeleteVolumeGroupSnapshotResponse:
        group_id = required(request.group_snapshot_id, "group_snapshot_id")
        if not is_object_name(group_id):
            return csi_pb2.DeleteVolumeGroupSnapshotResponse()  # no lunbridge group has such an id
        async with self.in_flight.hold(f"group/{group_id}"):
            group = await self._get(group_id)
            if group is None:
                return csi_pb2.DeleteVolumeGroupSnapshotResponse()
            self._check_members(group, list(request.snapshot_ids))
            if not group.metadata.deletion_timestamp:
                await self.kube.delete_group_snapshot(group_id)
            await self._wait(group_id, True, context)
        return csi_pb2.DeleteVolumeGroupSnapshotResponse()

    @handled
    async def GetVolumeGroupSnapshot(
        self, request: csi_pb2.GetVolumeGroupSnapshotRequest, context: Context
    ) -> csi_pb2.GetVolumeGroupSnapshotResponse:
        group_id = required(request.group_snapshot_id, "group_snapshot_id")
        group = await self._get(group_id) if is_object_name(group_id) else None
        if group is None:
            raise NotFound(f"group_snapshot_id {group_id!r}: no such group snapshot")
        self._check_members(group, list(request.snapshot_ids))
        return csi_pb2.GetVolumeGroupSnapshotResponse(group_snapshot=as_csi(group))
