"""The CSI node service's speed in the lab's KVM guest (TCG: absolute times are slow, ratios
are what to read), through the whole chain (`make lab-up LAB_SERVICES=1`'s services).

(c) NodeStage of a blank disk, as the CO sees it (targeted rescan, NAA check, blkid, mkfs,
    mount, over gRPC), and NodeStage of the same disk again (formatted: no mkfs), against a
    plain `mkfs.ext4` + `mount` of the same disk timed inside the guest.
(d) A targeted rescan (one channel/target/LUN, what NodeStage does) against a wildcard rescan
    ("- - -") of the same SCSI host, both until the same disk is there, timed inside the guest.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from tests.lab import csi
from tests.lab.lab import LabState
from tests.lab.libvirt import LibvirtGuest, connect_guest

MOUNT = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)

# Runs in the guest: find the disk's SCSI host by the published PCI slot, then time one way
# of making the disk appear ("plain": it is there; mkfs + mount; "targeted"/"wildcard": scans).
IN_GUEST = r"""
import json, subprocess, sys, time
from pathlib import Path
from lunbridge_csi.guest import scsi
ctx, what, folder = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
root = Path("/")
host = scsi.host_for_pci_slot(root, int(ctx["pciSlot"]))
address = scsi.Address.parse(ctx["guestAddress"])
hctl = scsi.hctl(host, address)
scan = root / scsi.SCSI_HOSTS / host / "scan"
def wait_disk():
    while scsi.block_device_at(root, hctl) is None:
        time.sleep(0.005)
    return scsi.block_device_at(root, hctl)
if what == "plain":
    scan.write_text(f"{address.channel} {address.target} {address.lun}")
    dev = wait_disk()
    Path(folder).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run(["mkfs.ext4", "-F", "-q", "/dev/" + dev], check=True, capture_output=True)
    subprocess.run(["mount", "-t", "ext4", "/dev/" + dev, folder], check=True)
    took = time.perf_counter() - started
    subprocess.run(["umount", folder], check=True)
else:
    started = time.perf_counter()
    scan.write_text("- - -" if what == "wildcard" else f"{address.channel} {address.target} {address.lun}")
    dev = wait_disk()
    took = time.perf_counter() - started
(root / scsi.BLOCK / dev / "device" / "delete").write_text("1")
print(json.dumps({"seconds": took}))
"""


def _guest_time(guest: LibvirtGuest, context: dict[str, str], what: str, folder: str) -> float:
    done = guest.run(
        [sys.executable, "-c", IN_GUEST, json.dumps(context), what, folder], timeout=300, env=csi.GUEST_ENV
    )
    if done.returncode != 0:
        raise RuntimeError(f"in-guest timing ({what}) failed: {done.stderr[-2000:]}")
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def _one_volume(state: LabState, guest: LibvirtGuest, controller: Any, node: Any) -> dict[str, float]:
    name = f"bench-node-{uuid.uuid4().hex[:8]}"
    created = controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=256 << 20),
            volume_capabilities=[MOUNT],
        ),
        timeout=300,
    )
    volume_id = created.volume.volume_id
    node_id = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=60).node_id
    times: dict[str, float] = {}
    staging = f"/mnt/lunbridge-bench/{name}"  # the guest's own tmpfs
    try:
        published = controller.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_id, node_id=node_id, volume_capability=MOUNT
            ),
            timeout=300,
        )
        context = dict(published.publish_context)
        stage = csi_pb2.NodeStageVolumeRequest(
            volume_id=volume_id, staging_target_path=staging, volume_capability=MOUNT, publish_context=context
        )
        unstage = csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging)
        for key in ("stage_blank", "stage_formatted"):
            started = time.monotonic()
            node.NodeStageVolume(stage, timeout=300)
            times[key] = time.monotonic() - started
            node.NodeUnstageVolume(unstage, timeout=300)
        times["plain"] = _guest_time(guest, context, "plain", staging)
        times["targeted"] = _guest_time(guest, context, "targeted", staging)
        times["wildcard"] = _guest_time(guest, context, "wildcard", staging)
    finally:
        controller.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id), timeout=300
        )
        controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=300)
    return times


def run(state: LabState, rounds: int) -> None:
    env = state.env()
    samples: list[dict[str, float]] = []
    with (
        grpc.insecure_channel(env["LUNBRIDGE_CSI_CONTROLLER_ENDPOINT"]) as controller_channel,
        grpc.insecure_channel(env["LUNBRIDGE_CSI_NODE_ENDPOINT"]) as node_channel,
    ):
        controller = csi_pb2_grpc.ControllerStub(controller_channel)  # type: ignore[no-untyped-call]
        node = csi_pb2_grpc.NodeStub(node_channel)  # type: ignore[no-untyped-call]
        guest = connect_guest(Path(state.lab_dir))
        try:
            for _ in range(rounds):
                samples.append(_one_volume(state, guest, controller, node))
        finally:
            guest.close()
    med = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    print(
        f"(c) NodeStage over gRPC, median of {rounds}: blank disk {med['stage_blank']:.3f}s, "
        f"formatted disk {med['stage_formatted']:.3f}s; plain mkfs.ext4 + mount in the guest "
        f"{med['plain']:.3f}s (NodeStage adds {med['stage_blank'] - med['plain']:+.3f}s)"
    )
    print(
        f"(d) rescan until the disk is there, median of {rounds}: targeted {med['targeted'] * 1000:.1f}ms, "
        f"wildcard {med['wildcard'] * 1000:.1f}ms ({med['wildcard'] / med['targeted']:.1f}x)"
    )
