"""What a new disk's LUN is copied from (`spec.source`): a DiskSnapshot or another
VirtualDisk, each checked before anything is made (it exists, it is ready, it lives on the
new disk's backend, it is no larger than the new disk)."""

from __future__ import annotations

from lunbridge.api import DISK_SNAPSHOT_PLURAL, VIRTUAL_DISK_PLURAL
from lunbridge.errors import Busy, InvalidArgument, NotFound
from lunbridge.models import DiskSnapshot, VirtualDisk
from lunbridge_operator.reconcile.disk import Disk
from lunbridge_operator.reconcile.services import Services


async def snapshot(svc: Services, disk: Disk, backend: str, name: str) -> str:
    """The storage snapshot of DiskSnapshot `name`. NotFound when it does not exist; Busy
    until it is ready; InvalidArgument when it is on another backend than `backend` or its
    restoreSize exceeds the disk (a restore may grow, never shrink)."""
    try:
        snap = DiskSnapshot.from_dict(await svc.kube.get(DISK_SNAPSHOT_PLURAL, name))
    except NotFound:
        raise NotFound(f"spec.source.snapshot {name}: the DiskSnapshot does not exist") from None
    if not snap.ready or not snap.status.snapshot_name:
        raise Busy(f"spec.source.snapshot {name} is not ready to use yet ({snap.status.phase or 'Pending'})")
    where = svc.backends.recorded(snap.status.backend)
    if where != backend:
        raise InvalidArgument(
            f"spec.source.snapshot {name} is on storage backend {where}, this disk on "
            f"{backend}: a restore cannot cross backends (set spec.backend to {where})"
        )
    needed = snap.status.restore_size or 0
    if disk.spec.size_bytes < needed:
        raise InvalidArgument(
            f"spec.size {disk.spec.size} is smaller than the restoreSize of snapshot {name} "
            f"({needed} bytes): a restore can be larger than its snapshot, never smaller"
        )
    return snap.status.snapshot_name


async def origin(svc: Services, backend: str, name: str) -> VirtualDisk:
    """The disk a clone copies; NotFound when missing, InvalidArgument on another backend."""
    try:
        found = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
    except NotFound:
        raise NotFound(f"spec.source.virtualDisk {name} does not exist") from None
    recorded = found.status.lun.backend if found.status.lun else None
    where = svc.backends.recorded(recorded) or found.spec.backend or svc.backends.default
    if where != backend:
        raise InvalidArgument(
            f"spec.source.virtualDisk {name} is on storage backend {where}, this disk on "
            f"{backend}: a clone cannot cross backends (set spec.backend to {where})"
        )
    return found
