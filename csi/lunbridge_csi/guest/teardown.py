"""Taking a staged volume off the guest (NodeUnstageVolume), also when its disk is dead: the LUN
removed behind lunbridge's back, the SCSI device offline, I/O that fails or hangs.

- `unmount_staging`: a plain unmount; when it fails (or overruns its limit) while the mount is
  still there and the disk is `dead`, a lazy unmount (`umount -l`) as the last resort: nothing
  can be written to that disk any more, and the mount must not stay. A live disk whose unmount
  fails (the filesystem is busy) keeps its mount and the error is raised.
- `remove_disks`: a best-effort flush of each disk within its short limit (a failure is logged,
  never raised: a dead disk cannot be flushed), then the SCSI device is deleted (bounded).

So an unstage of a dead disk answers OK, and so does a retry after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from lunbridge.command import CommandTimedOut, NotInstalled, Runner
from lunbridge.errors import Unavailable
from lunbridge_csi.guest import mount, scsi
from lunbridge_csi.guest.limits import Limits

log = logging.getLogger(__name__)


async def dead(runner: Runner, limits: Limits, root: Path, dev_dir: str, device: str) -> bool:
    """The disk `device` (sdX) can do no I/O: its SCSI device is gone or not `running`
    (offline...), or a direct read of its first block fails or overruns `limits.io_check`."""
    if scsi.device_state(root, device) != "running":
        return True
    argv = [
        "dd",
        f"if={dev_dir}/{device}",
        "of=/dev/null",
        "bs=4096",
        "count=1",
        "iflag=direct",
        "status=none",
    ]
    try:
        result = await runner(argv, limits.io_check)
    except CommandTimedOut:
        return True
    except NotInstalled:
        return False  # cannot tell: the disk counts as alive, its mount is not forced away
    return result.returncode != 0


async def unmount_staging(runner: Runner, limits: Limits, root: Path, dev_dir: str, staging: str) -> set[str]:
    """Unmount everything at `staging` (lazily where the disk is dead); the disks (sdX) that
    were mounted there."""
    devices: set[str] = set()
    prefix = f"{dev_dir}/"

    async def gone(entry: mount.MountEntry) -> bool:
        device = entry.source.removeprefix(prefix)
        return entry.source.startswith(prefix) and await dead(runner, limits, root, dev_dir, device)

    for entry in mount.stack(root, staging):
        if entry.source.startswith(prefix):
            devices.add(entry.source.removeprefix(prefix))
    await mount.unmount(runner, limits, root, staging, lazy_if=gone)
    return devices


async def remove_disks(
    runner: Runner, limits: Limits, root: Path, dev_dir: str, devices: Iterable[str], within: float
) -> None:
    """Flush (best effort) and delete the SCSI device of each disk that is still there."""
    for device in sorted(set(devices)):
        if not (root / scsi.BLOCK / device).exists():
            continue
        try:
            await mount.flush(runner, limits, f"{dev_dir}/{device}")
        except Unavailable as exc:
            state = scsi.device_state(root, device) or "gone"
            log.warning("%s not flushed (SCSI device %s; its data may be lost): %s", device, state, exc)
        await scsi.delete_device(root, device, within=within)
