"""The CSI Controller service: a translation of CSI calls into VirtualDisk operations (create,
patch `spec.nodeName` or `spec.size`, delete) and bounded waits on the status the operator
writes. It never talks to the hypervisor or the storage server itself.

`volume_id` is the VirtualDisk's name: the request name when it is already a DNS label
(`pvc-<uuid>` from the external-provisioner), else `csi-` and a hash of it; the request name
is kept in an annotation, so a second CreateVolume of the same name finds the same disk.

Idempotency, call by call:
- CreateVolume: a disk of that name with the same parameters and a size inside the requested
  range is the same volume (waited for until Provisioned); different ones -> ALREADY_EXISTS.
  A volume content source (CLONE_VOLUME) becomes spec.source.virtualDisk: the operator copies
  the source's LUN; the clone is at least the source's size. A snapshot source becomes
  spec.source.snapshot (its DiskSnapshot, `snapshots.py`), at least the snapshot's size.
- DeleteVolume: a missing disk is deleted already (OK); a published one -> FAILED_PRECONDITION.
- ControllerPublishVolume: already published to that node -> the same publish_context;
  published to another node -> FAILED_PRECONDITION. A VM with no room for the disk (the
  operator's Ready=False LimitExceeded for the current generation) -> the publication is undone
  (spec.nodeName cleared) and the answer is RESOURCE_EXHAUSTED at once. No capability is
  stored: the disk's spec is the truth (volumeMode Filesystem = mount, Block = block; a mount
  fs_type = its fsType).
  A capability that contradicts it -> ALREADY_EXISTS when the disk is published to that node
  already, else INVALID_ARGUMENT (nothing patched). `readonly` -> INVALID_ARGUMENT, published
  or not: PUBLISH_READONLY is not advertised (a raw device mapping cannot be attached
  read-only), and the spec says "CO MUST set this field to false if SP does not have the
  PUBLISH_READONLY controller capability", so true is a field value the plugin does not allow
  (the spec's general INVALID_ARGUMENT case). Read-only access modes are the node's to keep:
  NodePublishVolume mounts them read-only.
- ControllerUnpublishVolume: the publication (spec.nodeName) is node_id's when that Node does
  not exist any more (no existing node can own it: a publish the operator never attached,
  then the Node deleted), or its providerID is node_id, or the operator's attachment for that
  Node records node_id; then it is cleared and the detach awaited. Another existing node's
  publication is left alone (OK once the disk is not attached under node_id any more). A
  missing disk, or a second unpublish -> OK.
- ControllerExpandVolume: a disk at least that large already -> OK with its size.

Every wait is a watch of the disk from the version the call's create, patch or read returned
(`lunbridge_csi.waiting`), so a call answers as soon as the operator's status does, and is
bounded (`Timeouts`, and never past the call's own deadline); when the bound passes the call
ends with DEADLINE_EXCEEDED and the CO's retry carries on where it stopped.
GetCapacity answers the capacity given with --capacity-bytes (the controller cannot ask the
storage server); GET_CAPACITY is advertised only when one is given. ControllerGetVolume and
ListVolumes give each volume's node and condition (`volume_status`); a volume that does not
exist -> NOT_FOUND.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc.aio

from lunbridge.api import FINALIZER, VIRTUAL_DISK_PLURAL
from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, LimitExceeded, NotFound
from lunbridge.models import DiskSource, ObjectMeta, PublishContext, VirtualDisk, VirtualDiskSpec, VolumeMode
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.errors import InFlight, InvalidToken, OutOfRange, handled
from lunbridge_csi.feed import Following
from lunbridge_csi.kube import ControllerKube
from lunbridge_csi.snapshots import SnapshotRpcs
from lunbridge_csi.volume_rules import (
    BLOCK,
    MANAGED_BY,
    NAME_ANNOTATION,
    RPC,
    Timeouts,
    attached_to,
    capability_mode,
    capacity_bounds,
    capacity_of,
    check_capabilities,
    check_parameters,
    check_same_volume,
    content_source,
    contradiction,
    detached,
    detached_from,
    disk_or_gone,
    gave_up,
    known_volume,
    provisioned,
    publication_of,
    quantity,
    required,
    size_for,
    unsupported,
    volume_id_for,
)
from lunbridge_csi.volume_status import published_node_ids, volume_condition, volume_of
from lunbridge_csi.waiting import progress, wait_until, watched

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]


class ControllerService(SnapshotRpcs, csi_pb2_grpc.ControllerServicer):
    def __init__(
        self, kube: ControllerKube, timeouts: Timeouts | None = None, capacity_bytes: int = 0
    ) -> None:
        self.kube = kube
        self.timeouts = timeouts or Timeouts()
        self.capacity_bytes = capacity_bytes
        self.in_flight = InFlight()

    async def _wait(
        self,
        name: str,
        what: str,
        done: Callable[[VirtualDisk], bool],
        bound: float,
        context: Context | None,
        attach: bool = False,
        first: VirtualDisk | None = None,
        following: Following | None = None,
    ) -> VirtualDisk:
        """Watch the disk from `first` (what a create or patch returned; else a read) until
        `done`; NotFound if it vanishes, `gave_up`'s error when the operator gave up (or, for an
        `attach`, the VM is full), TimedOut after `bound` (or just before the call's deadline).
        With `following` (registered before the write that returned `first`) the versions come
        from the shared feed, else from a watch of this disk alone."""
        alone = watched(self.kube, VIRTUAL_DISK_PLURAL, name, disk_or_gone(name))
        if following is not None and first is not None:
            changes = following.after(first.metadata.resource_version, disk_or_gone(name), alone)
        else:
            changes = alone
        return await wait_until(
            "VirtualDisk",
            name,
            what,
            lambda: self.kube.get(name),
            done,
            gave_up=lambda disk: gave_up(disk, attach),
            said=lambda disk: progress(disk.status.phase, disk.status.message),
            bound=bound,
            context=context,
            changes=changes,
            first=first,
        )

    # --- create / delete ------------------------------------------------------------------
    @handled
    async def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: Context
    ) -> csi_pb2.CreateVolumeResponse:
        name = required(request.name, "name")
        mode, fs_type = check_capabilities(request.volume_capabilities)
        fields: dict[str, Any] = check_parameters(request.parameters)
        source = content_source(request)
        if fs_type and fields.setdefault("fs_type", fs_type) != fs_type:
            raise InvalidArgument(f"parameter fsType {fields['fs_type']} contradicts fs_type {fs_type}")
        capacity_range = request.capacity_range if request.HasField("capacity_range") else None
        low, high = capacity_bounds(capacity_range)
        size = size_for(capacity_range)
        volume_id = volume_id_for(name)
        async with self.in_flight.hold(volume_id):
            if source is not None and source[0] == "volume":
                size = await self._clone_size(source[1], mode, size, high)
                fields["source"] = DiskSource(virtual_disk=source[1])
            elif source is not None:
                snapshot, size = await self.restore_source(source[1], size, high, context)
                fields["source"] = DiskSource(snapshot=snapshot)
            spec = VirtualDiskSpec(size=quantity(size), volume_mode=VolumeMode(mode), **fields)
            # made with the operator's finalizer, which it would otherwise add in a round of its own
            meta = ObjectMeta(
                name=volume_id,
                labels=dict(MANAGED_BY),
                annotations={NAME_ANNOTATION: name},
                finalizers=[FINALIZER],
            )
            with self.kube.following(VIRTUAL_DISK_PLURAL, volume_id) as following:
                wrote = True
                try:
                    made = await self.kube.create(VirtualDisk(metadata=meta, spec=spec))
                    log.info("CreateVolume %s: created VirtualDisk %s (%s)", name, volume_id, spec.to_dict())
                except AlreadyExists:
                    made = await self.kube.get(volume_id)
                    check_same_volume(made, name, spec, low, high)
                    wrote = False  # no write of this call's own to find in the feed
                bound = self.timeouts.provision
                disk = await self._wait(
                    volume_id, "provisioned", provisioned, bound, context, first=made,
                    following=following if wrote else None,
                )  # fmt: skip
        volume = volume_of(disk)
        if source is not None:
            volume.content_source.CopyFrom(request.volume_content_source)
        return csi_pb2.CreateVolumeResponse(volume=volume)

    async def _clone_size(self, source_id: str, mode: str, size: int, high: int) -> int:
        """A clone is at least as large as its source (it may grow, never shrink)."""
        try:
            origin = await self.kube.get(source_id)
        except NotFound:
            raise NotFound(f"source volume {source_id} does not exist") from None
        if origin.spec.volume_mode.value != mode:
            raise InvalidArgument(
                f"source volume {source_id} is a {origin.spec.volume_mode} volume, not {mode}"
            )
        origin_size = max(origin.spec.size_bytes, capacity_of(origin))
        if high and origin_size > high:
            raise OutOfRange(f"source volume {source_id} has {origin_size} bytes, above limit_bytes {high}")
        return max(size, origin_size)

    @handled
    async def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: Context
    ) -> csi_pb2.DeleteVolumeResponse:
        volume_id = required(request.volume_id, "volume_id")
        async with self.in_flight.hold(volume_id):
            try:
                disk = await self.kube.get(known_volume(volume_id))
                node = disk.spec.node_name
                if node:
                    raise Conflict(f"volume {volume_id} is published to node {node}; unpublish it first")
                if not disk.metadata.deletion_timestamp:
                    await self.kube.delete(volume_id)
                await self._wait(volume_id, "deleted", lambda _: False, self.timeouts.delete, context)
            except NotFound:
                pass
        return csi_pb2.DeleteVolumeResponse()

    # --- publish / unpublish ----------------------------------------------------------------
    @handled
    async def ControllerPublishVolume(
        self, request: csi_pb2.ControllerPublishVolumeRequest, context: Context
    ) -> csi_pb2.ControllerPublishVolumeResponse:
        volume_id = known_volume(required(request.volume_id, "volume_id"))
        node_id = required(request.node_id, "node_id")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        check_capabilities([request.volume_capability], "volume_capability")
        if request.readonly:
            raise InvalidArgument(
                "readonly is not supported (no PUBLISH_READONLY capability): a read-only access mode "
                "is mounted read-only by the node"
            )
        async with self.in_flight.hold(volume_id):
            disk = await self.kube.get(volume_id)
            node = await self.kube.node_by_id(node_id)
            published = disk.spec.node_name
            reason = contradiction(disk, request.volume_capability)
            if reason is not None:
                if published == node:
                    raise AlreadyExists(f"volume {volume_id} is published to node {node}, but {reason}")
                raise InvalidArgument(reason)
            if published and published != node:
                raise Conflict(
                    f"volume {volume_id} is published to node {published}; unpublish it before {node}"
                )
            with self.kube.following(VIRTUAL_DISK_PLURAL, volume_id) as following:
                if not published:
                    disk = await self.kube.patch_spec(volume_id, VirtualDiskSpec.patch(node_name=node))
                    log.info("ControllerPublishVolume: VirtualDisk %s -> node %s", volume_id, node)
                bound, what, done = self.timeouts.attach, f"attached to {node}", attached_to(node)
                try:
                    disk = await self._wait(
                        volume_id, what, done, bound, context, attach=True, first=disk,
                        following=None if published else following,
                    )  # fmt: skip
                except LimitExceeded:  # the VM is full: nothing may stay half-published
                    await self.kube.patch_spec(volume_id, VirtualDiskSpec.patch(node_name=None))
                    log.info("ControllerPublishVolume: VirtualDisk %s <- node %s (VM full)", volume_id, node)
                    raise
        context_ = PublishContext.from_status(disk.status).to_dict()
        return csi_pb2.ControllerPublishVolumeResponse(publish_context=context_)

    @handled
    async def ControllerUnpublishVolume(
        self, request: csi_pb2.ControllerUnpublishVolumeRequest, context: Context
    ) -> csi_pb2.ControllerUnpublishVolumeResponse:
        volume_id = required(request.volume_id, "volume_id")
        node_id = request.node_id  # optional: none means from every node
        async with self.in_flight.hold(volume_id):
            try:
                disk = await self.kube.get(known_volume(volume_id))
                published = disk.spec.node_name
                if published and node_id and not await self._published_to(disk, published, node_id):
                    # another existing node's publication: left alone, once the disk left node_id
                    what, left = f"detached from {node_id}", detached_from(node_id)
                    await self._wait(volume_id, what, left, self.timeouts.detach, context, first=disk)
                    return csi_pb2.ControllerUnpublishVolumeResponse()
                with self.kube.following(VIRTUAL_DISK_PLURAL, volume_id) as following:
                    if published:
                        disk = await self.kube.patch_spec(volume_id, VirtualDiskSpec.patch(node_name=None))
                        log.info("ControllerUnpublishVolume: VirtualDisk %s <- node %s", volume_id, published)
                    await self._wait(
                        volume_id, "detached", detached, self.timeouts.detach, context, first=disk,
                        following=following if published else None,
                    )  # fmt: skip
            except NotFound:
                pass
        return csi_pb2.ControllerUnpublishVolumeResponse()

    async def _published_to(self, disk: VirtualDisk, published: str, node_id: str) -> bool:
        """Whether the publication to Node `published` is node_id's (`publication_of`); a Node
        that does not exist any more owns nothing, so its publication is anyone's to clear."""
        try:
            provider_id = await self.kube.node_provider_id(published)
        except NotFound:
            return True
        return publication_of(disk, node_id, provider_id)

    # --- questions ------------------------------------------------------------------------
    @handled
    async def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: Context
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        volume_id = known_volume(required(request.volume_id, "volume_id"))
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities is required")
        for capability in request.volume_capabilities:
            capability_mode(capability)
        disk = await self.kube.get(volume_id)
        found = [unsupported(c) or contradiction(disk, c) for c in request.volume_capabilities]
        reasons = list(dict.fromkeys(r for r in found if r))
        try:
            check_parameters(request.parameters)
        except InvalidArgument as exc:
            reasons.append(str(exc))
        if reasons:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message="; ".join(reasons))
        confirmed = csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context,
            volume_capabilities=request.volume_capabilities,
            parameters=request.parameters,
        )
        return csi_pb2.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    @handled
    async def ListVolumes(
        self, request: csi_pb2.ListVolumesRequest, context: Context
    ) -> csi_pb2.ListVolumesResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries cannot be negative")
        disks = sorted(await self.kube.list(), key=lambda d: d.name)
        token = request.starting_token
        if token and (not (token.isascii() and token.isdigit()) or int(token) > len(disks)):
            raise InvalidToken(f"starting_token {token!r} was not handed out by ListVolumes (or is stale)")
        start = int(token or 0)
        end = start + request.max_entries if request.max_entries else len(disks)
        Response = csi_pb2.ListVolumesResponse
        entries = [
            Response.Entry(
                volume=volume_of(disk),
                status=Response.VolumeStatus(
                    published_node_ids=published_node_ids(disk), volume_condition=volume_condition(disk)
                ),
            )
            for disk in disks[start:end]
        ]
        return Response(entries=entries, next_token=str(end) if end < len(disks) else "")

    @handled
    async def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: Context
    ) -> csi_pb2.ControllerGetVolumeResponse:
        disk = await self.kube.get(known_volume(required(request.volume_id, "volume_id")))
        Response = csi_pb2.ControllerGetVolumeResponse
        status = Response.VolumeStatus(
            published_node_ids=published_node_ids(disk), volume_condition=volume_condition(disk)
        )
        return Response(volume=volume_of(disk), status=status)

    @handled
    async def GetCapacity(
        self, request: csi_pb2.GetCapacityRequest, context: Context
    ) -> csi_pb2.GetCapacityResponse:
        for capability in request.volume_capabilities:
            capability_mode(capability)
        check_parameters(request.parameters)
        return csi_pb2.GetCapacityResponse(available_capacity=self.capacity_bytes)

    @handled
    async def ControllerGetCapabilities(
        self, request: csi_pb2.ControllerGetCapabilitiesRequest, context: Context
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        rpcs = [
            RPC.CREATE_DELETE_VOLUME,
            RPC.PUBLISH_UNPUBLISH_VOLUME,
            RPC.LIST_VOLUMES,
            RPC.EXPAND_VOLUME,
            RPC.CLONE_VOLUME,
            RPC.CREATE_DELETE_SNAPSHOT,
            RPC.LIST_SNAPSHOTS,
            RPC.GET_VOLUME,
            RPC.LIST_VOLUMES_PUBLISHED_NODES,
            RPC.VOLUME_CONDITION,
        ]
        if self.capacity_bytes:
            rpcs.append(RPC.GET_CAPACITY)
        return csi_pb2.ControllerGetCapabilitiesResponse(
            capabilities=[csi_pb2.ControllerServiceCapability(rpc=RPC(type=rpc)) for rpc in rpcs]
        )

    # --- expand ---------------------------------------------------------------------------
    @handled
    async def ControllerExpandVolume(
        self, request: csi_pb2.ControllerExpandVolumeRequest, context: Context
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        volume_id = known_volume(required(request.volume_id, "volume_id"))
        if not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range is required")
        block = False
        if request.HasField("volume_capability"):
            block = check_capabilities([request.volume_capability], "volume_capability")[0] == BLOCK
        size = size_for(request.capacity_range)
        async with self.in_flight.hold(volume_id):
            disk = await self.kube.get(volume_id)
            block = block or disk.spec.volume_mode is VolumeMode.BLOCK

            def grown(disk: VirtualDisk) -> bool:
                return disk.current and capacity_of(disk) >= size and provisioned(disk)

            what, growing = f"grown to {size} bytes", disk.spec.size_bytes < size
            with self.kube.following(VIRTUAL_DISK_PLURAL, volume_id) as following:
                if growing:
                    disk = await self.kube.patch_spec(volume_id, VirtualDiskSpec.patch(size=quantity(size)))
                    log.info("ControllerExpandVolume: VirtualDisk %s -> %s", volume_id, quantity(size))
                disk = await self._wait(
                    volume_id, what, grown, self.timeouts.expand, context, first=disk,
                    following=following if growing else None,
                )  # fmt: skip
        return csi_pb2.ControllerExpandVolumeResponse(
            capacity_bytes=capacity_of(disk), node_expansion_required=not block
        )

    # --- not offered (and not advertised) -------------------------------------------------
    async def _unimplemented(self, what: str, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{what} is not supported by lunbridge")

    async def GetSnapshot(self, request: Any, context: Context) -> Any:
        return await self._unimplemented("GetSnapshot", context)

    async def ControllerModifyVolume(self, request: Any, context: Context) -> Any:
        return await self._unimplemented("ControllerModifyVolume", context)
