"""The tgt backend's backing files: sparse LUN files in pool folders, and the copies that
snapshots and clones are made of.

A snapshot of a LUN that initiators may be writing must be a point-in-time image: every write
completed before the cut and none after. A copy-on-write clone of the file (the FICLONE ioctl,
on XFS made with `reflink=1` or on btrfs) is one atomic operation inside the file system and
gives exactly that, in constant time and space. A read-and-write copy does not: blocks copied
early are older than blocks copied late (measured: 30 of 30 copies under a running writer
broke the order of its writes). So `cut` refuses, on a pool that cannot clone, a copy that has
to be point-in-time, and falls back to a plain sparse copy only where nothing writes.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
from pathlib import Path

from lunbridge.command import NotInstalled, Runner
from lunbridge.errors import Conflict, InvalidArgument, LimitExceeded, Unavailable
from lunbridge.storage.base import Pool

# linux/fs.h: _IOW(0x94, 9, int); Python's fcntl names it only from 3.12
FICLONE = 0x40049409
# what a file system without shared extents answers to FICLONE
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}


class NoReflink(Exception):
    """The pool's file system cannot clone a file (no shared extents)."""


def make_sparse(path: Path, size: int) -> None:
    """A fresh, all-zero sparse file (an orphan left by a crash is emptied first)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.truncate(size)
    except OSError as exc:
        if exc.errno in (errno.EFBIG, errno.EINVAL):
            raise InvalidArgument(f"cannot make a {size}-byte file at {path}: {exc}") from exc
        raise Unavailable(f"cannot create backing file {path}: {exc}") from exc


def grow_file(path: Path, size: int) -> None:
    """Make a backing file `size` bytes long (the new part is a hole)."""
    try:
        os.truncate(path, size)
    except OSError as exc:
        if exc.errno in (errno.EFBIG, errno.EINVAL):
            raise InvalidArgument(f"cannot grow {path} to {size} bytes: {exc}") from exc
        raise Unavailable(f"cannot grow backing file {path}: {exc}; is the pool folder there?") from exc


def pool_usage(name: str, folder: Path) -> Pool:
    """Size and free space of a pool folder's file system (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(folder)
    except OSError as exc:
        raise Unavailable(f"pool {name} folder {folder} is not usable: {exc}") from exc
    return Pool(name, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def clone_file(source: Path, target: Path) -> None:
    """`target` becomes a copy-on-write clone of `source` (FICLONE), made under a temporary
    name and renamed when complete. NoReflink when the file system cannot; LimitExceeded when
    it is full; Unavailable for any other failure."""
    tmp = _tmp_of(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        src = os.open(source, os.O_RDONLY)
        try:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                fcntl.ioctl(dst, FICLONE, src)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in _NO_REFLINK:
            raise NoReflink(str(exc)) from exc
        if exc.errno == errno.ENOSPC:
            raise LimitExceeded(f"no space to clone {source}: {exc.strerror}") from exc
        raise Unavailable(f"cannot clone {source} to {target}: {exc.strerror}") from exc


async def copy_file(runner: Runner, source: Path, target: Path, pool: str, time_limit: float) -> None:
    """A plain sparse copy of a backing file, made under a temporary name and renamed when
    complete. Not point-in-time: only for a file nothing writes while it runs."""
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    tmp = _tmp_of(target)
    try:
        result = await runner(["cp", "--reflink=never", "--sparse=always", str(source), str(tmp)], time_limit)
    except NotInstalled as exc:
        raise NotInstalled(exc.program, "coreutils") from None
    if result.returncode != 0:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        if "No space left" in result.stderr:
            raise LimitExceeded(f"pool {pool} is full: copying {source} failed ({result.stderr.strip()})")
        raise Unavailable(f"copying {source} to {tmp} failed: {result.stderr.strip()}")
    await asyncio.to_thread(os.replace, tmp, target)


async def cut(
    runner: Runner, source: Path, target: Path, pool: str, time_limit: float, *, in_use: str | None
) -> bool:
    """Copy `source` to `target`: a clone where the pool's file system can make one, else a
    plain copy. `in_use` says who may be writing the source (e.g. "mapped to igroup x"); such
    a source is only cloned, and a pool that cannot clone refuses with Conflict, naming the
    pool and the way out. True if the copy is a clone (point-in-time and O(1))."""
    try:
        await asyncio.to_thread(clone_file, source, target)
        return True
    except NoReflink:
        if in_use is not None:
            raise Conflict(
                f"pool {pool} cannot cut a point-in-time snapshot (its file system has no reflink: "
                f"use XFS made with reflink=1, or btrfs), and the LUN is {in_use}, so a copy "
                "could mix writes from before and after the cut; unmap it first, or move the "
                "pool to a file system with reflink"
            ) from None
    await copy_file(runner, source, target, pool, time_limit)
    return False


def _tmp_of(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp")
