"""The DiskRestore action as plain async steps: check -> record the restore (phase Restoring,
the LUN and the storage snapshot) -> revert the LUN in place on its backend -> Completed.

Checks, before anything is touched: the disk and the snapshot exist; the snapshot is ready, on
the disk's backend, and was cut from this disk's LUN (by NAA; a snapshot of another disk is
restored with a new VirtualDisk, spec.source.snapshot); the disk is not published: a restore
under a mounted file system would corrupt it. A disk whose nodeName was just cleared is waited
for until its detach and unmap are done. The revert itself is atomic in the backend (the old
content or the snapshot's, never a mix), so an operator killed at any step runs it again and
ends the same way; a done action is never run again.
"""

from __future__ import annotations

from lunbridge.api import DISK_RESTORE_PLURAL, DISK_SNAPSHOT_PLURAL, VIRTUAL_DISK_PLURAL
from lunbridge.errors import Busy, InvalidArgument, NotFound
from lunbridge.models import (
    DiskRestoreSpec,
    DiskRestoreStatus,
    DiskSnapshot,
    Phase,
    RestorePhase,
    VirtualDisk,
)
from lunbridge.models.conditions import now
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile.services import Events, Services
from lunbridge_operator.reconcile.tracked import Tracked

KIND = "DiskRestore"


class Refused(InvalidArgument):
    """A restore that must not run as asked (permanent: the action fails), with its reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Action(Tracked[DiskRestoreSpec, DiskRestoreStatus]):
    """One DiskRestore as a reconcile sees it."""

    plural = DISK_RESTORE_PLURAL
    spec_model = DiskRestoreSpec
    status_model = DiskRestoreStatus


async def _objects(svc: Services, spec: DiskRestoreSpec) -> tuple[VirtualDisk, DiskSnapshot]:
    try:
        disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, spec.virtual_disk))
    except NotFound:
        raise Refused(
            "DiskNotFound", f"spec.virtualDisk {spec.virtual_disk}: the VirtualDisk does not exist"
        ) from None
    try:
        snap = DiskSnapshot.from_dict(await svc.kube.get(DISK_SNAPSHOT_PLURAL, spec.snapshot))
    except NotFound:
        raise Refused(
            "SnapshotNotFound", f"spec.snapshot {spec.snapshot}: the DiskSnapshot does not exist"
        ) from None
    return disk, snap


def _check(svc: Services, disk: VirtualDisk, snap: DiskSnapshot) -> None:
    """Refused (permanent) or Busy (wait) unless the restore may run now."""
    name, lun = disk.name, disk.status.lun
    if disk.metadata.deletion_timestamp:
        raise Refused("DiskDeleting", f"VirtualDisk {name} is being deleted")
    if disk.spec.node_name:
        raise Refused(
            "DiskPublished",
            f"VirtualDisk {name} is published to node {disk.spec.node_name}: a restore under a "
            "mounted file system would corrupt it; unpublish it (stop its pod, or clear "
            "spec.nodeName) and create the DiskRestore again",
        )
    if disk.status.attachment is not None or disk.status.initiator_group:
        raise Busy(f"VirtualDisk {name} is still being detached and unmapped; the restore waits for it")
    if lun is None or not lun.name or not lun.naa:
        raise Busy(f"VirtualDisk {name} has no LUN yet")
    if not snap.ready or not snap.status.snapshot_name:
        raise Busy(f"spec.snapshot {snap.name} is not ready to use yet")
    if snap.status.source_naa != lun.naa:
        raise Refused(
            "OtherDisk",
            f"spec.snapshot {snap.name} was cut from LUN {snap.status.source_lun} "
            f"({snap.status.source_naa or 'no NAA recorded'}), not from VirtualDisk {name}'s LUN "
            f"{lun.name} ({lun.naa}); restore it into a new VirtualDisk (spec.source.snapshot)",
        )
    if svc.backends.recorded(snap.status.backend) != svc.backends.recorded(lun.backend):
        raise Refused("OtherBackend", f"spec.snapshot {snap.name} is on backend {snap.status.backend}, "
                                      f"the disk on {lun.backend}")  # fmt: skip


async def reconcile(svc: Services, action: Action, events: Events) -> None:
    """Run the restore once; a done action is left as it is."""
    if action.status.done:
        return
    if action.spec is None:
        raise action.spec_error or InvalidArgument("spec is missing")
    disk, snap = await _objects(svc, action.spec)
    _check(svc, disk, snap)
    lun = disk.status.lun
    assert lun is not None  # _check
    assert lun.name
    status = action.status
    if status.phase is not RestorePhase.RESTORING:
        status.phase, status.start_time = RestorePhase.RESTORING, now()
    status.lun, status.naa, status.snapshot_name = lun.name, lun.naa, snap.status.snapshot_name
    status.observed_generation = action.generation
    action.condition(
        False, "Restoring", f"reverting LUN {lun.name} to storage snapshot {status.snapshot_name}"
    )
    await action.save(svc)
    if svc.after_step is not None:
        await svc.after_step(KIND, "restoring")
    _, storage = svc.backends.get(svc.backends.recorded(lun.backend), "VirtualDisk status.lun.backend")
    with measured(KIND, "revert"):
        restored = await storage.revert_lun(lun.name, snap.status.snapshot_name or "")
    status.phase, status.completion_time, status.size_bytes = (
        RestorePhase.COMPLETED,
        now(),
        restored.size_bytes,
    )
    status.message = ""
    action.condition(True, "Restored", f"LUN {lun.name} ({lun.naa}) holds snapshot {snap.name} as of "
                                       f"{snap.status.creation_time}")  # fmt: skip
    await action.save(svc)
    events("Restored", f"restored VirtualDisk {disk.name} (LUN {lun.name}, {lun.naa}) in place from "
                       f"DiskSnapshot {snap.name}")  # fmt: skip
    if disk.status.phase is not Phase.READY:
        events("DiskNotReady", f"VirtualDisk {disk.name} is {disk.status.phase}", warning=True)
