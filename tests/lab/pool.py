"""The lab's storage pool: a sparse XFS image made with `reflink=1`, loop-mounted at
`<lab_dir>/pool`, so that the tgt backend cuts snapshots as copy-on-write clones
(point-in-time under writes, O(1) in time and space), as a storage server would. A folder on
this machine's ext4 root could only copy, and the backend refuses to snapshot a mapped LUN on
such a pool.

The image is thin (`IMAGE_SIZE` is what the file system offers, not what it takes), lives next
to the mount point, and is unmounted and removed by `lab down` (the loop device goes with the
mount: `mount -o loop` sets autoclear)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.lab.procs import LabError

IMAGE_SIZE = 256 << 30


def mount_point(lab_dir: Path) -> Path:
    return lab_dir / "pool"


def image(lab_dir: Path) -> Path:
    return lab_dir / "pool.xfs"


def mounted(lab_dir: Path) -> bool:
    """The pool's mount point is a mount (of anything) right now."""
    target = str(mount_point(lab_dir).resolve())
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"{what}: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")


def start(lab_dir: Path) -> Path:
    """A fresh, empty reflink pool mounted at `mount_point` (any earlier one is removed first)."""
    stop(lab_dir)
    point, file = mount_point(lab_dir), image(lab_dir)
    point.mkdir(parents=True, exist_ok=True)
    with file.open("wb") as handle:
        handle.truncate(IMAGE_SIZE)
    _run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(file)], "making the pool's XFS file system")
    _run(["mount", "-o", "loop,discard", str(file), str(point)], "mounting the pool (a loop device)")
    return point


def stop(lab_dir: Path) -> None:
    """Unmount the pool (lazily if tgtd still holds a file) and remove its image."""
    if mounted(lab_dir):
        try:
            _run(["umount", str(mount_point(lab_dir))], "unmounting the pool")
        except LabError:
            _run(["umount", "-l", str(mount_point(lab_dir))], "unmounting the pool lazily")
    image(lab_dir).unlink(missing_ok=True)
