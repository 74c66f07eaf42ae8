"""`make demo`'s second half: a volume all the way into the KVM guest through lunbridge's CSI
services, called as a container orchestrator calls them (CreateVolume, ControllerPublish,
NodeStage, NodePublish), then written and shown from inside the guest: its SCSI disk found
by the LUN's NAA, formatted, mounted, holding the file; and taken apart again in reverse.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from tests.lab import csi, lab
from tests.lab import libvirt as libvirt_lab

SIZE = 256 << 20
# each SCSI disk of the guest: name, H:C:T:L, size, the NAA its LUN reports (VPD page 0x83)
SAN_DISKS = (
    "for d in /sys/block/sd*; do [ -e $d/device/wwid ] || continue; "
    'echo "  ${d##*/}  $(basename $(readlink -f $d/device))  $(lsblk -dno SIZE /dev/${d##*/})'
    '  $(cat $d/device/wwid)"; done'
)


def _call(channel: grpc.Channel, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
    from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc

    stub = getattr(csi_pb2_grpc, f"{service}Stub")(channel)
    message = json_format.ParseDict(request, getattr(csi_pb2, f"{method}Request")())
    started = time.monotonic()
    response = getattr(stub, method)(message, timeout=240)
    print(f"== {service}.{method}: OK in {time.monotonic() - started:.1f}s")
    result: dict[str, Any] = json_format.MessageToDict(response)
    return result


def into_the_guest(state: lab.LabState) -> None:
    """A 256 MiB volume for the guest's Node, staged, published, written and shown inside the
    guest, then unpublished, unstaged, detached and deleted. The lab runs lunbridge's services
    (tests.lab.services.up)."""
    env = state.env()
    capability = {"mount": {"fsType": "ext4"}, "accessMode": {"mode": "SINGLE_NODE_WRITER"}}
    name = f"demo-{uuid.uuid4().hex[:6]}"
    staging = str(csi.staging_dir(Path(state.lab_dir)) / name)
    target = str(csi.mount_dir(Path(state.lab_dir)) / name)
    controller = grpc.insecure_channel(env["LUNBRIDGE_CSI_CONTROLLER_ENDPOINT"])
    node = grpc.insecure_channel(state.node_endpoint)
    guest = libvirt_lab.connect_guest(Path(state.lab_dir))
    try:
        node_id = _call(node, "Node", "NodeGetInfo", {})["nodeId"]
        created = _call(controller, "Controller", "CreateVolume", {
            "name": name, "capacityRange": {"requiredBytes": SIZE}, "volumeCapabilities": [capability],
        })["volume"]  # fmt: skip
        volume_id = created["volumeId"]
        print(f"   volume {volume_id}: a LUN on tgtd\n")
        published = _call(controller, "Controller", "ControllerPublishVolume", {
            "volumeId": volume_id, "nodeId": node_id, "volumeCapability": capability,
        })  # fmt: skip
        context = published.get("publishContext", {})
        print("   attached to the guest through libvirt; publish context:\n   " + json.dumps(context) + "\n")
        _call(node, "Node", "NodeStageVolume", {
            "volumeId": volume_id, "publishContext": context, "stagingTargetPath": staging,
            "volumeCapability": capability,
        })  # fmt: skip
        _call(node, "Node", "NodePublishVolume", {
            "volumeId": volume_id, "publishContext": context, "stagingTargetPath": staging,
            "targetPath": target, "volumeCapability": capability,
        })  # fmt: skip
        quoted = shlex.quote(target)
        script = (
            f"echo 'written by make demo at {time.strftime('%H:%M:%S')}' > {quoted}/hello.txt && sync\n"
            "echo '-- the guest sees the LUN as a SCSI disk (name, SCSI address, size, its NAA):'\n"
            f"{SAN_DISKS}\n"
            "echo '-- formatted and mounted by NodeStage/NodePublish:'\n"
            f"findmnt -T {quoted} -o TARGET,SOURCE,FSTYPE\n"
            f"df -h {quoted} | tail -1\necho '-- the file:'\ncat {quoted}/hello.txt\n"
        )
        print(guest.run(["/bin/sh", "-c", script], timeout=60).stdout)
        _call(node, "Node", "NodeUnpublishVolume", {"volumeId": volume_id, "targetPath": target})
        _call(node, "Node", "NodeUnstageVolume", {"volumeId": volume_id, "stagingTargetPath": staging})
        _call(
            controller, "Controller", "ControllerUnpublishVolume", {"volumeId": volume_id, "nodeId": node_id}
        )
        _call(controller, "Controller", "DeleteVolume", {"volumeId": volume_id})
        left = guest.run(["/bin/sh", "-c", SAN_DISKS], timeout=30).stdout.strip()
        print(f"   the guest's SAN disks afterwards: {left or '(none)'}\n")
    finally:
        guest.close()
        controller.close()
        node.close()
