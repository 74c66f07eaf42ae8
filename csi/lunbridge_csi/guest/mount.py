"""Mounts in the guest: what is mounted (from mountinfo), whether a mount is the bind mount a
request asks for, mount, bind mount, unmount (lazily where the caller says so), flush, and
the publish targets (a folder, or a file for a block volume).

Mount state is read from `<root>/proc/self/mountinfo`; changes go through the injected runner
(`mount`, `umount`, `blockdev`), each within its limit, so tests feed a fixture mountinfo and a
fake runner.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lunbridge.command import Runner
from lunbridge.errors import Unavailable
from lunbridge_csi.guest.limits import Limits

log = logging.getLogger(__name__)

MOUNTINFO = Path("proc/self/mountinfo")


@dataclass(frozen=True)
class MountEntry:
    mount_point: str
    root: str  # the folder of the source filesystem this mount shows (bind mounts: not "/")
    fs_type: str
    source: str
    options: tuple[str, ...]  # per-mount options (ro/rw, nosuid, ...)
    super_options: tuple[str, ...]
    major_minor: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if separator < 6 or len(fields) < separator + 3:
            continue
        entries.append(
            MountEntry(
                mount_point=_unescape(fields[4]),
                root=_unescape(fields[3]),
                fs_type=fields[separator + 1],
                source=_unescape(fields[separator + 2]),
                options=tuple(fields[5].split(",")),
                super_options=tuple(fields[separator + 3].split(",")) if len(fields) > separator + 3 else (),
                major_minor=fields[2],
            )
        )
    return entries


def mounts(root: Path) -> list[MountEntry]:
    return parse_mountinfo((root / MOUNTINFO).read_text())


def stack(root: Path, path: str | Path) -> list[MountEntry]:
    """Every mount at `path`, the topmost last (later lines are mounted on top)."""
    wanted = str(path).rstrip("/") or "/"
    return [entry for entry in mounts(root) if entry.mount_point == wanted]


def mounted_at(root: Path, path: str | Path) -> MountEntry | None:
    """The topmost mount at `path`, or None when nothing is mounted there."""
    found = stack(root, path)
    return found[-1] if found else None


def bind_origin(root: Path, path: str) -> tuple[str, str]:
    """What a bind mount of `path` shows in mountinfo: (major:minor, root) of the filesystem that
    holds `path` (the mount over it with the longest mount point, the topmost of equals) and
    `path`'s folder in that filesystem. A bound device node shows its devtmpfs, e.g. ("0:5",
    "/sdb"); a bound mount point shows that mount, e.g. ("8:16", "/")."""
    wanted = posixpath.normpath(path)
    holder: MountEntry | None = None
    for entry in mounts(root):
        point = entry.mount_point
        inside = wanted == point or wanted.startswith(point.rstrip("/") + "/")
        if inside and (holder is None or len(point) >= len(holder.mount_point)):
            holder = entry
    if holder is None:
        return "", wanted
    rest = wanted[len(holder.mount_point) :].lstrip("/")
    return holder.major_minor, posixpath.join(holder.root, rest) if rest else holder.root


def bind_mismatch(root: Path, entry: MountEntry, source: str, read_only: bool) -> str | None:
    """Why the mount `entry` is not a bind mount of `source` with that read-only state, or None."""
    if (entry.major_minor, entry.root) != bind_origin(root, source):
        shown = f"{entry.root} of {entry.source} ({entry.major_minor})"
        return f"{entry.mount_point} shows {shown}, not a bind mount of {source}"
    if entry.read_only != read_only:
        have, asked = ("read-only", "read-write") if entry.read_only else ("read-write", "read-only")
        return f"{entry.mount_point} is mounted {have}, not {asked}"
    return None


def mount_argv(source: str, target: str, fs_type: str | None, options: Sequence[str]) -> list[str]:
    argv = ["mount"]
    if fs_type:
        argv += ["-t", fs_type]
    if options:
        argv += ["-o", ",".join(options)]
    return [*argv, source, target]


async def mount(
    runner: Runner, limits: Limits, source: str, target: str, fs_type: str, options: Sequence[str] = ()
) -> None:
    (await runner(mount_argv(source, target, fs_type, options), limits.mount)).check()


async def bind_mount(
    runner: Runner, limits: Limits, source: str, target: str, read_only: bool = False
) -> None:
    """Bind `source` onto `target`; read-only takes the second (remount) step a bind needs."""
    (await runner(["mount", "--bind", source, target], limits.mount)).check()
    if read_only:
        (await runner(["mount", "-o", "remount,bind,ro", target], limits.mount)).check()


async def unmount(
    runner: Runner,
    limits: Limits,
    root: Path,
    target: str,
    most: int = 8,
    *,
    lazy_if: Callable[[MountEntry], Awaitable[bool]] | None = None,
) -> int:
    """Unmount everything stacked at `target` (`most` mounts at the most); how many mounts went
    (0: nothing was mounted). A plain unmount that fails or overruns its limit is an error,
    unless the mount went anyway (a hung unmount takes the mount away before it writes the
    filesystem out) or `lazy_if(mount)` says to detach it lazily (`umount -l`) instead."""
    count = 0
    while (entry := mounted_at(root, target)) is not None and count < most:
        try:
            (await runner(["umount", target], limits.umount)).check()
        except Unavailable as exc:
            if mounted_at(root, target) == entry:
                if lazy_if is None or not await lazy_if(entry):
                    raise
                log.warning("unmounting %s (%s) failed, detaching it lazily: %s", target, entry.source, exc)
                (await runner(["umount", "-l", target], limits.umount)).check()
        count += 1
    return count


async def flush(runner: Runner, limits: Limits, device: str) -> None:
    """Write the device's dirty buffers out (`blockdev --flushbufs`)."""
    (await runner(["blockdev", "--flushbufs", device], limits.flush)).check()


def path_kind(path: str) -> str | None:
    """`dir`, `file` (anything else), or None when nothing is at `path`."""
    if not os.path.exists(path):
        return None
    return "dir" if os.path.isdir(path) else "file"


def make_file(path: str) -> None:
    """An empty file at `path` (a block volume's target), with its folders."""
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    if not os.path.exists(path):
        with open(path, "a"):
            pass


def remove_target(path: str) -> None:
    """Remove a publish target (an empty folder or a file); nothing there is fine."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
