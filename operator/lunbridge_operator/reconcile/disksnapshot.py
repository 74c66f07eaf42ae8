"""The DiskSnapshot lifecycle as plain async steps.

Up: find the source disk's LUN and backend -> record the storage snapshot's name (before the
cut, so a teardown after a crash knows what may exist) -> cut it on the backend -> Ready with
creation time and restore size. An import instead finds a storage snapshot that exists by name.
Down, behind the finalizer: wait while a VirtualDisk that restores from it has no LUN yet
(deleting the snapshot would leave that disk nothing to copy; a snapshot not cut yet is cut
first, so such a disk is not stuck) -> delete the storage snapshot, unless the deletion policy
is Retain. A ready snapshot whose spec.verification asks for it gets its DiskVerification.

The tgt backend's clones are independent copies, so a restored disk does not keep its
snapshot alive, and a snapshot outlives the disk it was cut from.
"""

from __future__ import annotations

from lunbridge.api import (
    API_VERSION,
    DISK_SNAPSHOT_PLURAL,
    DISK_VERIFICATION_KIND,
    DISK_VERIFICATION_PLURAL,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.errors import AlreadyExists, Busy, InvalidArgument, LunbridgeError, NotFound
from lunbridge.models import (
    DeletionPolicy,
    DiskSnapshotSpec,
    DiskSnapshotStatus,
    SnapshotPhase,
    VirtualDisk,
)
from lunbridge.storage.base import Snapshot, StorageBackend
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile.services import Events, Services
from lunbridge_operator.reconcile.tracked import Tracked

KIND = "DiskSnapshot"


class Snap(Tracked[DiskSnapshotSpec, DiskSnapshotStatus]):
    """One DiskSnapshot as a reconcile sees it."""

    plural = DISK_SNAPSHOT_PLURAL
    spec_model = DiskSnapshotSpec
    status_model = DiskSnapshotStatus

    def left_behind(self) -> list[str]:
        if self.status.snapshot_name:
            return [f"storage snapshot {self.status.snapshot_name} on backend {self.status.backend}"]
        return []


def _iso(snapshot: Snapshot) -> str:
    return snapshot.created.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _find(storage: StorageBackend, name: str) -> Snapshot | None:
    return next((s for s in await storage.list_snapshots() if s.name == name), None)


async def _source_disk(svc: Services, name: str) -> tuple[VirtualDisk, str, StorageBackend]:
    """The disk to snapshot, its backend's name and the backend; Busy until it has a LUN."""
    try:
        disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
    except NotFound:
        raise NotFound(f"spec.source.virtualDisk {name}: the VirtualDisk does not exist") from None
    lun = disk.status.lun
    if lun is None or not lun.name:
        raise Busy(
            f"spec.source.virtualDisk {name} has no LUN yet (phase {disk.status.phase or 'Pending'}); "
            "the snapshot is cut once it has"
        )
    backend = svc.backends.recorded(lun.backend) or disk.spec.backend or svc.backends.default
    return disk, *svc.backends.get(backend, f"VirtualDisk {name} status.lun.backend")


def _ready(snap: Snap, found: Snapshot, message: str) -> None:
    status = snap.status
    status.ready_to_use, status.phase = True, SnapshotPhase.READY
    status.creation_time, status.restore_size = _iso(found), found.size_bytes
    status.message, status.observed_generation = "", snap.generation
    snap.condition(True, "SnapshotReady", message)


async def reconcile(svc: Services, snap: Snap, events: Events) -> None:
    """Cut (or import) the storage snapshot once; a Ready snapshot is left as it is."""
    if snap.spec_error is not None or snap.spec is None:
        raise snap.spec_error or InvalidArgument("spec is missing")
    status = snap.status
    if status.ready_to_use and status.snapshot_name:
        if status.observed_generation != snap.generation:  # only deletionPolicy may change
            status.observed_generation = snap.generation
            await snap.save(svc)
        await _verify_when_asked(svc, snap, events)
        return
    source = snap.spec.source
    if source.imported:
        await _import(svc, snap, source.backend or "", source.snapshot_name or "", events)
        await _verify_when_asked(svc, snap, events)
        return
    disk, backend, storage = await _source_disk(svc, source.virtual_disk or "")
    lun = disk.status.lun
    assert lun is not None  # _source_disk checked that it has a name
    assert lun.name
    status.backend, status.snapshot_name = backend, naming.snapshot_name(snap.uid)
    status.source_lun, status.source_naa = lun.name, lun.naa
    status.phase, status.ready_to_use = SnapshotPhase.PENDING, False
    status.observed_generation = snap.generation
    await snap.save(svc)
    with measured(KIND, "cut"):
        cut = await storage.create_snapshot(lun.name, status.snapshot_name)
    _ready(snap, cut, f"cut from LUN {lun.name} ({lun.naa}) of VirtualDisk {disk.name} on backend {backend}")
    await snap.save(svc)
    events("SnapshotCut", f"cut storage snapshot {cut.name} of LUN {lun.name} ({lun.naa}) on backend "
                          f"{backend}: {cut.size_bytes} bytes at {_iso(cut)}")  # fmt: skip
    await _verify_when_asked(svc, snap, events)


async def _verify_when_asked(svc: Services, snap: Snap, events: Events) -> None:
    """A ready snapshot whose spec asks for it gets its DiskVerification (same name, owned by
    the snapshot), once: one that exists already is left as it is."""
    asked = snap.spec.verification if snap.spec is not None else None
    if asked is None:
        return
    body = {
        "apiVersion": API_VERSION,
        "kind": DISK_VERIFICATION_KIND,
        "metadata": {"name": snap.name, "ownerReferences": [
            {"apiVersion": API_VERSION, "kind": KIND, "name": snap.name, "uid": snap.uid}]},
        "spec": {"snapshot": snap.name, "verifierNode": asked.verifier_node,
                 **({"check": asked.check} if asked.check else {})},
    }  # fmt: skip
    try:
        await svc.kube.create(DISK_VERIFICATION_PLURAL, body)
    except AlreadyExists:
        return
    events("VerificationRequested", f"DiskVerification {snap.name} created: node {asked.verifier_node} "
                                    "checks a clone of this snapshot")  # fmt: skip


async def _import(svc: Services, snap: Snap, backend: str, name: str, events: Events) -> None:
    backend_name, storage = svc.backends.get(backend, "spec.source.backend")
    found = await _find(storage, name)
    if found is None:
        raise NotFound(f"spec.source.snapshotName {name}: no such snapshot on backend {backend_name}")
    status = snap.status
    status.backend, status.snapshot_name, status.source_lun = backend_name, found.name, found.lun
    _ready(
        snap, found, f"imported storage snapshot {found.name} of LUN {found.lun} on backend {backend_name}"
    )
    await snap.save(svc)
    events("SnapshotImported", f"imported storage snapshot {found.name} ({found.size_bytes} bytes) "
                               f"from backend {backend_name}")  # fmt: skip


async def restoring_from(svc: Services, name: str) -> list[str]:
    """VirtualDisks that restore from DiskSnapshot `name` and have no LUN yet."""
    waiting = []
    for raw in await svc.kube.list(VIRTUAL_DISK_PLURAL):
        try:
            disk = VirtualDisk.from_dict(raw)
        except InvalidArgument:
            continue
        source = disk.spec.source
        if source is None or source.snapshot != name or disk.metadata.deletion_timestamp:
            continue
        if disk.status.lun is None or not disk.status.lun.name:
            waiting.append(disk.name)
    return sorted(waiting)


async def delete(svc: Services, snap: Snap, events: Events) -> None:
    """Delete the storage snapshot (Delete) or keep it (Retain), once no disk waits for it."""
    waiting = await restoring_from(svc, snap.name)
    if waiting and not snap.status.ready_to_use:
        try:  # they wait for the cut: make it, then let them copy
            await reconcile(svc, snap, events)
        except LunbridgeError as exc:
            raise Busy(
                f"VirtualDisk(s) {', '.join(waiting)} restore from this snapshot, which cannot be cut "
                f"yet ({exc}); it is deleted once they have their LUNs (or are deleted)"
            ) from exc
    if waiting:
        raise Busy(
            f"VirtualDisk(s) {', '.join(waiting)} restore from this snapshot and have no LUN yet; "
            "it is deleted once they have theirs (or are deleted)"
        )
    status = snap.status
    if not status.snapshot_name:
        return  # nothing was ever cut or imported
    policy = snap.spec.deletion_policy if snap.spec is not None else DeletionPolicy.DELETE
    try:
        backend, storage = svc.backends.get(status.backend, "status.backend")
    except InvalidArgument:
        raise InvalidArgument(
            f"status.backend {status.backend!r} is not configured, so storage snapshot "
            f"{status.snapshot_name} cannot be deleted; configure it again, or let the object go "
            "with the lunbridge.io/forget annotation"
        ) from None
    if policy is DeletionPolicy.RETAIN:
        events("Retained", f"kept storage snapshot {status.snapshot_name} on backend {backend}: "
                           f"deletionPolicy is Retain (import it as {status.handle})")  # fmt: skip
        return
    with measured(KIND, "delete"):
        await storage.delete_snapshot(status.snapshot_name)
    events("Deleted", f"deleted storage snapshot {status.snapshot_name} from backend {backend}")
