"""The guest containerd's images, unpacked natively here and handed to the guest as a disk.

Importing the lunbridge image inside the TCG guest took over 5 minutes (containerd digests and
unpacks a few hundred MB of small files at TCG speed; measured), against seconds here. So a
containerd here imports the OCI archives of `make image` into a folder laid out as the
overlayfs snapshotter lays it out (the one the guest's containerd uses), `mkfs.ext4 -d` makes
that folder a filesystem image (cached by the archives' image ids), and the guest gets a qcow2
overlay of it as a virtio disk that it mounts on /var/lib/containerd: its containerd starts
with every image present and unpacked, like a node whose images were preloaded, and what its
pods write goes to the overlay, which the next lab throws away.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.lab import libvirt as libvirt_lab
from tests.lab import paths
from tests.lab.guest import AgentGuest
from tests.lab.procs import LabError

DISK_SERIAL = "lab-containerd"  # how the guest finds the disk (/sys/block/vd*/serial)
DISK_TARGET = "vdb"
FILESYSTEM_SIZE = "4G"  # sparse: only what the images and the pods write takes space


def seed(archives: list[Path]) -> Path:
    """An ext4 image of a containerd root (overlayfs snapshotter, namespace k8s.io) holding
    `archives` imported and unpacked; built once per set of image ids."""
    ids = []
    for archive in archives:
        id_file = archive.with_name(archive.name + ".id")
        if not archive.is_file() or not id_file.is_file():
            raise LabError(f"{archive} is missing: run `make image` first")
        ids.append(id_file.read_text().strip())
    key = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
    image = paths.cache_dir() / "images" / f"containerd-seed-{key}.img"
    if image.exists():
        return image
    for old in image.parent.glob("containerd-seed-*.img"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="lab-seed-", dir=image.parent))
    try:
        _import(work, archives)
        tmp = image.with_suffix(".tmp")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", DISK_SERIAL, "-E", "root_owner=0:0",
                        "-d", str(work / "root"), str(tmp), FILESYSTEM_SIZE],
                       check=True, capture_output=True, timeout=600)  # fmt: skip
        tmp.rename(image)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return image


def _import(work: Path, archives: list[Path]) -> None:
    socket = Path(tempfile.mkdtemp(prefix="lab-seed-")) / "containerd.sock"  # a short path
    config = work / "containerd.toml"
    config.write_text(f"""version = 2
root = "{work / "root"}"
state = "{work / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{socket}"
""")
    log = (work / "containerd.log").open("wb")
    daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    ctr = ["ctr", "--address", str(socket), "-n", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise LabError(f"containerd for the guest's images did not start: see {work}/containerd.log")
            time.sleep(0.1)
        for archive in archives:
            result = subprocess.run([*ctr, "images", "import", str(archive)], capture_output=True,
                                    text=True, timeout=600, check=False)  # fmt: skip
            if result.returncode != 0:
                raise LabError(f"importing {archive.name} for the guest failed: {result.stderr.strip()}")
    finally:
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(timeout=15)
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(socket.parent, ignore_errors=True)


def attach(guest: AgentGuest, lab_dir: Path, archives: list[Path], mount_point: str) -> None:
    """`archives` (seeded) as the guest's disk on `mount_point` (kept if mounted already)."""
    if guest.run(["grep", "-q", f" {mount_point} ext4 ", "/proc/mounts"]).returncode == 0:
        return
    base = seed(archives)
    overlay = libvirt_lab.root(lab_dir) / "containerd-disk.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(overlay)],
                   check=True, capture_output=True)  # fmt: skip
    device = libvirt_lab.root(lab_dir) / "containerd-disk.xml"
    device.write_text(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{overlay}'/>"
        f"<target dev='{DISK_TARGET}' bus='virtio'/><serial>{DISK_SERIAL}</serial></disk>"
    )
    libvirt_lab.virsh(lab_dir, "attach-device", libvirt_lab.DOMAIN, str(device), "--live")
    script = f"""for i in $(seq 100); do
  for s in /sys/block/vd*/serial; do
    [ "$(cat "$s" 2>/dev/null)" = {DISK_SERIAL} ] && dev=/dev/$(basename "$(dirname "$s")") && break 2
  done
  sleep 0.1
done
[ -n "$dev" ] || {{ echo "the disk {DISK_SERIAL} did not appear" >&2; exit 1; }}
mount -t ext4 "$dev" {mount_point}"""
    result = guest.run(["/bin/sh", "-c", script], timeout=60)
    if result.returncode != 0:
        raise LabError(f"mounting the guest's image disk failed: {result.stderr.strip()}")
