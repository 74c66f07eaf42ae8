"""The snapshot RPCs of the CSI Controller service (CreateSnapshot, DeleteSnapshot,
ListSnapshots) and the lookup CreateVolume needs to restore from one: a translation into
DiskSnapshot objects, which the operator cuts, imports and deletes.

`snapshot_id` is the handle `<backend>/<storage snapshot name>` (`lunbridge.models.make_handle`):
it says which backend holds the snapshot and stays valid without the object, so a
VolumeSnapshotContent that names an existing snapshot (a pre-provisioned one, or one kept by
Retain in another cluster) is imported: the first call that needs it makes a DiskSnapshot
`import-<hash of the handle>` with `spec.source.{backend, snapshotName}`.

Idempotency, call by call:
- CreateSnapshot: the DiskSnapshot of that name (the request name when a DNS label, as
  `snapshot-<uid>` from the csi-snapshotter is) of that source is the same snapshot; another
  source -> ALREADY_EXISTS. It returns once the cut is made (ready_to_use=true): a tgt cut is a
  reflink clone, milliseconds long. A pool that cannot cut a mapped LUN point-in-time ->
  FAILED_PRECONDITION with the operator's reason; a missing source volume -> NOT_FOUND.
- DeleteSnapshot: an unknown or malformed id is deleted already (OK); a snapshot a restore
  still waits for -> the operator keeps it (the call waits, then DEADLINE_EXCEEDED).
- ListSnapshots: only snapshots that are cut; filters `snapshot_id` and `source_volume_id`
  (an unknown id -> an empty list); paging by `max_entries` and `next_token` (an index).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from lunbridge.api import DISK_SNAPSHOT_PLURAL
from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.models import (
    AutoVerification,
    DiskGroupSnapshot,
    DiskSnapshot,
    DiskSnapshotSpec,
    ObjectMeta,
    SnapshotPhase,
    SnapshotSource,
    parse_handle,
)
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.errors import InFlight, InvalidToken, OutOfRange, handled
from lunbridge_csi.kube import ControllerKube
from lunbridge_csi.volume_rules import (
    MANAGED_BY,
    NAME_ANNOTATION,
    RESERVED_PREFIX,
    Timeouts,
    known_volume,
    required,
    volume_id_for,
)
from lunbridge_csi.waiting import progress, wait_until, watched

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
IMPORT_PREFIX = "import-"
# on a DiskSnapshot this plugin imports: `handle_hash` of its handle, to find it by a label selector
HANDLE_LABEL = "csi.lunbridge.io/handle-hash"


def handle_hash(handle: str) -> str:
    """40 hex digits of the handle's SHA-256 (a label value, and part of an object name)."""
    return hashlib.sha256(handle.encode()).hexdigest()[:40]


def import_name(handle: str) -> str:
    """The DiskSnapshot that imports storage snapshot `handle` (one per handle)."""
    return IMPORT_PREFIX + handle_hash(handle)


VERIFIER_NODE_PARAMETER = "verifierNode"  # a VolumeSnapshotClass parameter: verify each snapshot there
VERIFY_CHECK_PARAMETER = "verifyCheck"  # with it: the configured check to run (spec.check)


def snapshot_verification(parameters: Mapping[str, str]) -> AutoVerification | None:
    """What a VolumeSnapshotClass's parameters ask for (`verifierNode`, `verifyCheck`): every
    snapshot verified on that node, or nothing; InvalidArgument naming an unknown parameter."""
    known = {VERIFIER_NODE_PARAMETER, VERIFY_CHECK_PARAMETER}
    unknown = sorted(k for k in parameters if k not in known and not k.startswith(RESERVED_PREFIX))
    if unknown:
        raise InvalidArgument(f"parameter(s) {', '.join(unknown)} are not known to lunbridge snapshots "
                              f"(known: {', '.join(sorted(known))})")  # fmt: skip
    node = parameters.get(VERIFIER_NODE_PARAMETER, "").strip()
    check = parameters.get(VERIFY_CHECK_PARAMETER, "").strip() or None
    if not node:
        if check:
            raise InvalidArgument(f"parameter {VERIFY_CHECK_PARAMETER} needs {VERIFIER_NODE_PARAMETER}")
        return None
    return AutoVerification(verifier_node=node, check=check)


def _handle_or_none(snapshot_id: str) -> tuple[str, str] | None:
    try:
        return parse_handle(snapshot_id)
    except InvalidArgument:
        return None


def snapshot_or_none(body: dict[str, Any] | None) -> DiskSnapshot | None:
    """A watched DiskSnapshot (None: deleted)."""
    return DiskSnapshot.from_dict(body) if body is not None else None


def snapshot_message(snap: DiskSnapshot) -> str:
    return progress(snap.status.phase, snap.status.message)


def gave_up(snap: DiskSnapshot | DiskGroupSnapshot) -> Exception | None:
    """The error a wait on a snapshot (or a group of them) ends with: Failed (a spec the
    operator refused), or the operator's Conflict (a pool that cannot cut a mapped LUN
    point-in-time)."""
    ready = snap.status.condition("Ready")
    if snap.status.phase is SnapshotPhase.FAILED:
        return InvalidArgument(f"{snap.kind} {snap.name} failed: {snap.status.message or ''}")
    if ready is not None and not ready.true and ready.reason == "Conflict":
        return Conflict(f"{snap.kind} {snap.name}: {ready.message}")
    return None


def entry(snap: DiskSnapshot) -> csi_pb2.Snapshot:
    status = snap.status
    created = Timestamp()
    if status.creation_time:
        created.FromJsonString(status.creation_time)
    return csi_pb2.Snapshot(
        size_bytes=status.restore_size or 0,
        snapshot_id=status.handle or "",
        source_volume_id=snap.source_disk or "",
        creation_time=created,
        ready_to_use=snap.ready,
    )


class SnapshotRpcs:
    """Mixed into ControllerService; shares its `kube`, `timeouts` and `in_flight`."""

    kube: ControllerKube
    timeouts: Timeouts
    in_flight: InFlight

    async def _wait_snapshot(
        self, name: str, what: str, done: Callable[[DiskSnapshot | None], bool], context: Context | None
    ) -> DiskSnapshot | None:
        async def read() -> DiskSnapshot | None:
            try:
                return await self.kube.get_snapshot(name)
            except NotFound:
                return None

        return await wait_until(
            "DiskSnapshot",
            name,
            what,
            read,
            done,
            gave_up=lambda snap: gave_up(snap) if snap is not None else None,
            said=lambda snap: snapshot_message(snap) if snap is not None else "gone",
            bound=self.timeouts.snapshot,
            context=context,
            changes=watched(self.kube, DISK_SNAPSHOT_PLURAL, name, snapshot_or_none),
        )

    async def _by_handle(self, handle: str, context: Context | None) -> DiskSnapshot | None:
        """The ready DiskSnapshot of `handle`; an existing storage snapshot without one is
        imported; None when the backend has no such snapshot (or the handle is malformed)."""
        parsed = _handle_or_none(handle)
        if parsed is None:
            return None
        snap = await self._find(handle)
        if snap is not None:
            return snap if snap.ready else await self._wait_ready(snap.name, context)
        backend, storage_name = parsed
        name = import_name(handle)
        labels = {**MANAGED_BY, HANDLE_LABEL: handle_hash(handle)}
        meta = ObjectMeta(name=name, labels=labels, annotations={NAME_ANNOTATION: handle})
        spec = DiskSnapshotSpec(source=SnapshotSource(backend=backend, snapshot_name=storage_name))
        try:
            await self.kube.create_snapshot(DiskSnapshot(metadata=meta, spec=spec))
            log.info("importing storage snapshot %s as DiskSnapshot %s", handle, name)
        except AlreadyExists:
            pass
        try:
            return await self._wait_ready(name, context, imported=True)
        except (_NotThere, InvalidArgument):  # no such snapshot, or no such backend
            await self.kube.delete_snapshot(name)
            return None

    async def _find(self, handle: str) -> DiskSnapshot | None:
        """The DiskSnapshot (not being deleted) that holds storage snapshot `handle`: among those
        labelled with its hash (this plugin's imports), else among all (a CreateSnapshot's, a
        group's member, an import made before the label)."""

        def holder(snaps: list[DiskSnapshot]) -> DiskSnapshot | None:
            return next(
                (s for s in snaps if s.status.handle == handle and not s.metadata.deletion_timestamp), None
            )

        selector = f"{HANDLE_LABEL}={handle_hash(handle)}"
        found = holder(await self.kube.list_snapshots(label_selector=selector))
        return found if found is not None else holder(await self.kube.list_snapshots())

    async def _wait_ready(self, name: str, context: Context | None, imported: bool = False) -> DiskSnapshot:
        def done(snap: DiskSnapshot | None) -> bool:
            if snap is None:
                raise NotFound(f"DiskSnapshot {name} is gone")
            if imported and not snap.ready and "no such snapshot" in (snap.status.message or ""):
                raise _NotThere()
            return snap.ready

        found = await self._wait_snapshot(name, "ready to use", done, context)
        assert found is not None
        return found

    async def restore_source(
        self, snapshot_id: str, size: int, high: int, context: Context
    ) -> tuple[str, int]:
        """(DiskSnapshot name, size) of a CreateVolume that restores `snapshot_id`: at least the
        snapshot's restore size (a restore may grow, never shrink). NotFound naming the field;
        OutOfRange when the snapshot exceeds `limit_bytes`."""
        snap = await self._by_handle(snapshot_id, context)
        if snap is None:
            raise NotFound(f"volume_content_source.snapshot.snapshot_id {snapshot_id!r}: no such snapshot")
        needed = snap.status.restore_size or 0
        if high and needed > high:
            raise OutOfRange(f"snapshot {snapshot_id} needs {needed} bytes, above limit_bytes {high}")
        return snap.name, max(size, needed)

    # --- the RPCs ----------------------------------------------------------------------------
    @handled
    async def CreateSnapshot(
        self, request: csi_pb2.CreateSnapshotRequest, context: Context
    ) -> csi_pb2.CreateSnapshotResponse:
        name = required(request.name, "name")
        source = known_volume(required(request.source_volume_id, "source_volume_id"))
        verification = snapshot_verification(request.parameters)
        snapshot_name = volume_id_for(name)
        async with self.in_flight.hold(f"snapshot/{snapshot_name}"):
            try:
                existing: DiskSnapshot | None = await self.kube.get_snapshot(snapshot_name)
            except NotFound:
                existing = None
            if existing is None:
                await self.kube.get(source)  # NotFound: the source volume does not exist
                meta = ObjectMeta(
                    name=snapshot_name, labels=dict(MANAGED_BY), annotations={NAME_ANNOTATION: name}
                )
                spec = DiskSnapshotSpec(source=SnapshotSource(virtual_disk=source), verification=verification)
                try:
                    existing = await self.kube.create_snapshot(DiskSnapshot(metadata=meta, spec=spec))
                    log.info("CreateSnapshot %s: created DiskSnapshot %s of %s", name, snapshot_name, source)
                except AlreadyExists:
                    existing = await self.kube.get_snapshot(snapshot_name)
            if existing.metadata.annotations.get(NAME_ANNOTATION) != name:
                raise AlreadyExists(
                    f"DiskSnapshot {snapshot_name} exists but was not made for snapshot {name!r}"
                )
            if existing.spec.source.virtual_disk != source:
                raise AlreadyExists(
                    f"snapshot {name!r} exists for source volume "
                    f"{existing.spec.source.virtual_disk}, not {source}"
                )
            if existing.metadata.deletion_timestamp:
                raise AlreadyExists(f"snapshot {name!r} is being deleted; create it again afterwards")
            snap = await self._wait_ready(snapshot_name, context)
        return csi_pb2.CreateSnapshotResponse(snapshot=entry(snap))

    @handled
    async def DeleteSnapshot(
        self, request: csi_pb2.DeleteSnapshotRequest, context: Context
    ) -> csi_pb2.DeleteSnapshotResponse:
        snapshot_id = required(request.snapshot_id, "snapshot_id")
        if _handle_or_none(snapshot_id) is None:
            return csi_pb2.DeleteSnapshotResponse()  # no lunbridge snapshot has such an id
        async with self.in_flight.hold(f"snapshot-id/{snapshot_id}"):
            snap = await self._by_handle(snapshot_id, context)
            if snap is None:
                return csi_pb2.DeleteSnapshotResponse()
            if not snap.metadata.deletion_timestamp:
                await self.kube.delete_snapshot(snap.name)
                log.info("DeleteSnapshot %s: deleting DiskSnapshot %s", snapshot_id, snap.name)
            await self._wait_snapshot(snap.name, "deleted", lambda s: s is None, context)
        return csi_pb2.DeleteSnapshotResponse()

    @handled
    async def ListSnapshots(
        self, request: csi_pb2.ListSnapshotsRequest, context: Context
    ) -> csi_pb2.ListSnapshotsResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries cannot be negative")
        if request.snapshot_id:
            found = await self._by_handle(request.snapshot_id, context)
            snaps = [found] if found is not None else []
        else:
            snaps = [s for s in await self.kube.list_snapshots() if s.ready and s.status.handle]
        if request.source_volume_id:
            snaps = [s for s in snaps if s.source_disk == request.source_volume_id]
        snaps.sort(key=lambda s: s.status.handle or "")
        token = request.starting_token
        if token and (not (token.isascii() and token.isdigit()) or int(token) > len(snaps)):
            raise InvalidToken(f"starting_token {token!r} was not handed out by ListSnapshots (or is stale)")
        start = int(token or 0)
        end = start + request.max_entries if request.max_entries else len(snaps)
        entries = [csi_pb2.ListSnapshotsResponse.Entry(snapshot=entry(s)) for s in snaps[start:end]]
        return csi_pb2.ListSnapshotsResponse(entries=entries, next_token=str(end) if end < len(snaps) else "")


class _NotThere(Exception):
    """An import whose storage snapshot the backend does not have."""
