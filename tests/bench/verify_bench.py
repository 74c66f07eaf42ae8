"""Verification and in-place restore times on the lab, for 1 GiB disks with ext4 and with XFS,
through the whole path: the operator, tgtd, libvirt and the node plugin in the KVM guest (its
node channel on), the guest running under TCG (so every guest-side figure is slow next to a
real VM's).

Each disk is attached to the guest, formatted, given 2,000 small files and one 128 MiB file,
snapshotted while mounted, then:
- verify: DiskVerification applied -> Completed (clone, attach, journal replay + check on the
  node, detach, delete), and the check alone as the node timed it (`durationSeconds`);
- restore: the disk unpublished, then DiskRestore applied -> Completed (the LUN reverted in
  place).
"""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path
from typing import Any

from lunbridge.api import API_VERSION
from tests.bench.kubewatch import apply
from tests.bench.snapshot_bench import _wait
from tests.integration.operator.guestdisk import find_in_guest
from tests.lab import lab, services
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

MKFS = {"ext4": "mkfs.ext4 -q -F -E nodiscard", "xfs": "mkfs.xfs -q -f -K"}
FILL = (
    "mkdir -p {m}/small && i=0 && while [ $i -lt 2000 ]; do echo $i > {m}/small/f$i; i=$((i+1)); done && "
    "dd if=/dev/urandom of={m}/big bs=1M count=128 2>/dev/null && sync"
)


def _done(status: dict[str, Any]) -> bool:
    return status.get("phase") in ("Completed", "Failed")


def measure_one(state: LabState, guest: libvirt_lab.LibvirtGuest, fs: str) -> str:
    disk = f"bench-verify-{fs}-{uuid.uuid4().hex[:6]}"
    apply(state, [{"apiVersion": API_VERSION, "kind": "VirtualDisk", "metadata": {"name": disk},
                    "spec": {"size": "1Gi", "nodeName": state.guest_node}}])  # fmt: skip
    _, made = _wait(state, "vdisk", disk, lambda s: s.get("phase") == "Ready")
    sd = find_in_guest(guest, made)
    mount = f"/mnt/{disk}"
    guest.run(f"{MKFS[fs]} /dev/{sd} && mkdir -p {mount} && mount /dev/{sd} {mount} && "
              + FILL.format(m=shlex.quote(mount)), timeout=900, check=True)  # fmt: skip
    snap = f"{disk}-snap"
    apply(state, [{"apiVersion": API_VERSION, "kind": "DiskSnapshot", "metadata": {"name": snap},
                    "spec": {"source": {"virtualDisk": disk}}}])  # fmt: skip
    _wait(state, "dsnap", snap, lambda s: s.get("readyToUse"))
    verification = f"{disk}-verify"
    apply(state, [{"apiVersion": API_VERSION, "kind": "DiskVerification", "metadata": {"name": verification},
                    "spec": {"snapshot": snap, "verifierNode": state.guest_node}}])  # fmt: skip
    verify_took, verified = _wait(state, "dverify", verification, _done, timeout=900)
    result = verified["status"]
    guest.run(f"umount {mount} && rmdir {mount} && echo 1 > /sys/block/{sd}/device/delete", timeout=120)
    kubectl(state, "patch", "vdisk", disk, "--type=merge", "-p", '{"spec":{"nodeName":null}}')
    _wait(state, "vdisk", disk, lambda s: s.get("phase") == "Ready" and not s.get("attachment"))
    restore = f"{disk}-restore"
    apply(state, [{"apiVersion": API_VERSION, "kind": "DiskRestore", "metadata": {"name": restore},
                    "spec": {"virtualDisk": disk, "snapshot": snap}}])  # fmt: skip
    restore_took, restored = _wait(state, "drestore", restore, _done)
    kubectl(state, "delete", "drestore", restore, "--wait=false")
    kubectl(state, "delete", "dverify", verification, "--timeout=300s")
    kubectl(state, "delete", "vdisk", disk, "--timeout=300s")
    kubectl(state, "delete", "dsnap", snap, "--timeout=300s")
    return (f"1 GiB {fs}: verify {result.get('result')} apply->Completed {verify_took:.1f}s (check on the "
            f"node {result.get('durationSeconds')}s: {result.get('checker')}); restore "
            f"{restored['status'].get('phase')} apply->Completed {restore_took:.2f}s")  # fmt: skip


def run(lab_dir: Path) -> None:
    state = services.up(lab_dir)
    guest = libvirt_lab.connect_guest(lab_dir)
    try:
        for fs in ("ext4", "xfs"):
            print(measure_one(state, guest, fs), flush=True)
    finally:
        guest.close()
        services.stop(state)
        lab.down(lab_dir)
