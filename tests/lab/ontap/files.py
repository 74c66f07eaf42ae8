"""The LUN files behind the simulated volumes: sparse files, and their point-in-time copies.

Layout under the state folder: `volumes/<volume uuid>/<lun uuid>.img` for the live LUNs and
`volumes/<volume uuid>/.snapshots/<snapshot uuid>/<lun uuid>.img` for a snapshot's copies.
A snapshot, a FlexClone, a LUN clone and a restore are copy-on-write clones of a file (the
FICLONE ioctl, as on the lab's XFS pool made with `reflink=1`), atomic and O(1) like
ONTAP's own. On a file system without reflink the simulator falls back to a plain sparse
copy, which is not point-in-time under writes; it logs that once (README "Differences").
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path

FICLONE = 0x40049409  # linux/fs.h _IOW(0x94, 9, int); Python's fcntl names it only from 3.12
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}
log = logging.getLogger("ontap-sim")


class LunFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._warned = False

    def lun(self, volume: str, lun: str) -> Path:
        return self.root / "volumes" / volume / f"{lun}.img"

    def snapshot_dir(self, volume: str, snapshot: str) -> Path:
        return self.root / "volumes" / volume / ".snapshots" / snapshot

    def snapshot_lun(self, volume: str, snapshot: str, lun: str) -> Path:
        return self.snapshot_dir(volume, snapshot) / f"{lun}.img"

    def free_bytes(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def make_sparse(self, path: Path, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.truncate(size)

    def grow(self, path: Path, size: int) -> None:
        os.truncate(path, size)

    def copy(self, source: Path, target: Path) -> None:
        """`target` becomes a point-in-time copy of `source` (a clone where possible), made
        under a temporary name and renamed when complete."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            src = os.open(source, os.O_RDONLY)
            try:
                dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    fcntl.ioctl(dst, FICLONE, src)
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        except OSError as exc:
            if exc.errno not in _NO_REFLINK:
                tmp.unlink(missing_ok=True)
                raise
            if not self._warned:
                log.warning("the state folder's file system has no reflink: snapshots are plain copies")
                self._warned = True
            self._sparse_copy(source, tmp)
        os.replace(tmp, target)

    def _sparse_copy(self, source: Path, target: Path) -> None:
        size = source.stat().st_size
        with source.open("rb") as src, target.open("wb") as dst:
            dst.truncate(size)
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                if block.count(0) == len(block):
                    dst.seek(len(block), os.SEEK_CUR)
                else:
                    dst.write(block)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
