"""How long each guest command may run before it is ended (`lunbridge.command.run`).

A command stuck on a dead SAN path (a `mount` or `mkfs` waiting on I/O that never completes)
would otherwise hold its CSI call, and the volume's in-flight guard, for good: every retry
of the CO would be ABORTED. At its limit a command is ended and the call fails UNAVAILABLE,
so the CO's next retry runs again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lunbridge.errors import InvalidArgument


@dataclass(frozen=True)
class Limits:
    """Seconds per guest command."""

    mount: float = 60.0  # mount, bind mount, read-only remount
    umount: float = 60.0
    probe: float = 30.0  # the blank probe: libblkid in process, or blkid -p
    flush: float = 10.0  # blockdev --flushbufs, best effort on unstage: a dead disk must not hold it
    io_check: float = 5.0  # dd of one block: can a disk whose unmount failed still do I/O?
    mkfs: float = 600.0  # mkfs.ext4, mkfs.xfs
    grow: float = 600.0  # resize2fs, xfs_growfs
    login: float = 60.0  # each iscsiadm call: a login waits on the network and the target

    def __post_init__(self) -> None:
        wrong = [
            f"{item.name}={getattr(self, item.name)}"
            for item in fields(self)
            if getattr(self, item.name) <= 0
        ]
        if wrong:
            raise InvalidArgument(f"guest command limits must be positive seconds: {', '.join(wrong)}")


DEFAULT_LIMITS = Limits()
