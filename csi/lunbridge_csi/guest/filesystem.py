"""Filesystems on a guest disk: probe, format only when blank, grow.

The format decision belongs to `blkid -p` alone (a low-level probe that bypasses blkid's
cache): exit 0 = some signature (a filesystem, a partition table, RAID, LVM...) → never
format; exit 2 = no signature at all → the disk is blank and may be formatted; any other
exit is an error and nothing is written.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from lunbridge.command import CommandFailed, Runner
from lunbridge.errors import Conflict, InvalidArgument
from lunbridge_csi.guest.limits import Limits

SUPPORTED = ("ext4", "xfs")
DEFAULT_FS = "ext4"
BLKID_NOTHING_FOUND = 2


class Content(enum.Enum):
    BLANK = "blank"
    SIGNATURE = "signature"


@dataclass(frozen=True)
class Probe:
    content: Content
    fields: dict[str, str]  # blkid's export: TYPE, UUID, PTTYPE, ...

    @property
    def blank(self) -> bool:
        return self.content is Content.BLANK

    @property
    def fs_type(self) -> str | None:
        return self.fields.get("TYPE")

    def describe(self) -> str:
        if self.blank:
            return "no signature"
        return ", ".join(f"{key}={value}" for key, value in sorted(self.fields.items())) or "a signature"


def fs_type(requested: str) -> str:
    """The filesystem to use for a requested fsType ('' means the default)."""
    chosen = (requested or DEFAULT_FS).strip().lower()
    if chosen not in SUPPORTED:
        raise InvalidArgument(f"fsType {requested!r} is not supported (supported: {', '.join(SUPPORTED)})")
    return chosen


def parse_export(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


async def probe(runner: Runner, limits: Limits, device: str) -> Probe:
    """What blkid finds on `device` (a /dev path), probing the device itself."""
    result = await runner(["blkid", "-p", "-o", "export", device], limits.probe)
    if result.returncode == BLKID_NOTHING_FOUND:
        return Probe(Content.BLANK, {})
    if result.returncode != 0:
        raise CommandFailed(result)
    return Probe(Content.SIGNATURE, parse_export(result.stdout))


def mkfs_argv(fstype: str, device: str) -> list[str]:
    if fstype == "ext4":  # nodiscard: a SAN LUN is blank by contract here, discard can take minutes
        return ["mkfs.ext4", "-F", "-q", "-E", "nodiscard", device]
    if fstype == "xfs":
        return ["mkfs.xfs", "-q", "-K", device]
    raise InvalidArgument(f"cannot make a {fstype!r} filesystem (supported: {', '.join(SUPPORTED)})")


async def ensure_filesystem(runner: Runner, limits: Limits, device: str, fstype: str) -> bool:
    """Make `fstype` on `device` only if blkid finds no signature there; True if it formatted.

    A disk with a filesystem of another type, or with any other signature (a partition
    table, LVM, RAID), is refused with Conflict and left untouched.
    """
    found = await probe(runner, limits, device)
    if found.blank:
        (await runner(mkfs_argv(fstype, device), limits.mkfs)).check()
        return True
    if found.fs_type != fstype:
        raise Conflict(
            f"{device} is not blank ({found.describe()}) and holds no {fstype} filesystem; "
            "it is left untouched (lunbridge formats only disks without any signature)"
        )
    return False


def grow_argv(fstype: str, device: str, mount_path: str) -> Sequence[str]:
    if fstype.startswith("ext"):
        return ["resize2fs", device]
    if fstype == "xfs":
        return ["xfs_growfs", mount_path]
    raise InvalidArgument(f"cannot grow a {fstype!r} filesystem")


async def grow(runner: Runner, limits: Limits, device: str, fstype: str, mount_path: str) -> None:
    """Grow the mounted filesystem on `device` to the device's size."""
    (await runner(grow_argv(fstype, device, mount_path), limits.grow)).check()
