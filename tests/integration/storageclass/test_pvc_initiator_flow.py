"""A PVC on a lunbridge StorageClass used by a pod on a node that logs in with its own initiator,
through the real sidecars (see conftest.py): the guest's node plugin runs in `initiator` mode
(iscsid with the guest's own IQN, its LunbridgeNode published), and its CSINode carries the
node_id such a plugin reports, its Node name. The attach/detach controller's VolumeAttachment
→ ControllerPublishVolume → the LUN masked to the guest's IQN, the attachment metadata naming
the target, portal and LUN id; NodeStageVolume with that metadata (as the kubelet calls it)
logs in, scans the LUN id and mounts; the pod gone → unmapped; the PVC gone → nothing left."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from tests.integration.kubeobjects import get
from tests.integration.libvirt.guestscsi import nexus_initiators
from tests.integration.operator import observe
from tests.integration.storageclass.conftest import apply
from tests.integration.storageclass.test_pvc_flow import luns, wait
from tests.lab import csi, iscsi
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

MOUNT = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


def _csi_node_id(lab: LabState, node_id: str) -> None:
    """The guest's CSINode with the driver registered under `node_id` (a driver entry cannot
    change: the kubelet removes it and adds it again when a plugin re-registers)."""
    kubectl(lab, "delete", "csinode", lab.guest_node, "--ignore-not-found")
    csi_node = {"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": lab.guest_node},
                "spec": {"drivers": [{"name": CSI_DRIVER_NAME, "nodeID": node_id}]}}  # fmt: skip
    apply(lab, csi_node)


@pytest.fixture
def initiator_node(lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, plugin: Path) -> Iterator[str]:
    """The guest as a node that logs in itself, registered as its kubelet would register it."""
    iscsi.start_iscsid(kvm_guest)
    csi.start_initiator_node_service(kvm_guest, lab)
    _csi_node_id(lab, lab.guest_node)
    try:
        yield lab.guest_node
    finally:
        csi.stop_node_service(kvm_guest)
        kubectl(lab, "delete", "lbnode", lab.guest_node, "--ignore-not-found")
        _csi_node_id(lab, f"libvirt://{lab.guest_uuid}")
        iscsi.stop_iscsid(kvm_guest)


def test_a_pvc_on_an_initiator_node_is_masked_to_its_iqn_and_staged_by_its_own_login(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, initiator_node: str
) -> None:
    observe.wait_node_accepted(lab, initiator_node, iscsi.GUEST_IQN)
    suffix = uuid.uuid4().hex[:6]
    namespace, storage_class = f"sc-bare-{suffix}", f"lunbridge-bare-{suffix}"
    assert kubectl(lab, "create", "namespace", namespace).returncode == 0
    apply(
        lab,
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": storage_class},
         "provisioner": CSI_DRIVER_NAME, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
         "parameters": {"csi.storage.k8s.io/fstype": "ext4"}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "data", "namespace": namespace},
         "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "64Mi"}}}},
    )  # fmt: skip
    pvc = wait(lab, "the PVC was not Bound", lambda: (p := get(lab, "pvc", "data", "-n", namespace))
               and p["status"].get("phase") == "Bound" and p)  # fmt: skip
    pv_name = pvc["spec"]["volumeName"]
    wait(lab, "the pod's ServiceAccount", lambda: get(lab, "serviceaccount", "default", "-n", namespace))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": namespace},
           "spec": {"nodeName": initiator_node, "automountServiceAccountToken": False,
                    "containers": [{"name": "app", "image": "app",
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data",
                                 "persistentVolumeClaim": {"claimName": "data"}}]}}  # fmt: skip
    apply(lab, pod)

    def attachments() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (get(lab, "volumeattachments") or {}).get("items", [])
        return [va for va in items if va["spec"]["source"].get("persistentVolumeName") == pv_name]

    def attached() -> dict[str, Any] | None:
        found = attachments()
        return found[0] if found and found[0].get("status", {}).get("attached") else None

    va = wait(lab, "the VolumeAttachment was not attached", attached)
    metadata = va["status"]["attachmentMetadata"]
    assert metadata["mode"] == "initiator", metadata
    assert metadata["targetIqn"].endswith(f":node-{initiator_node}"), metadata
    assert "pciSlot" not in metadata, metadata
    assert metadata["lunId"].isdigit(), metadata
    pv = get(lab, "pv", pv_name)
    assert pv is not None
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    naa = metadata["naa"]
    assert naa in luns(lab)

    staging = str(csi.staging_dir(Path(lab.lab_dir)) / f"pvc-{suffix}")
    request = csi_pb2.NodeStageVolumeRequest(volume_id=volume_id, staging_target_path=staging,
                                             volume_capability=MOUNT, publish_context=metadata)  # fmt: skip
    with grpc.insecure_channel(lab.node_endpoint) as channel:
        node = csi_pb2_grpc.NodeStub(channel)  # type: ignore[no-untyped-call]
        node.NodeStageVolume(request, timeout=120)
        assert nexus_initiators(lab.tgt, metadata["targetIqn"]) == [iscsi.GUEST_IQN]
        kvm_guest.run(f"echo from-a-pod > {staging}/proof && sync && grep -q from-a-pod {staging}/proof",
                      timeout=60, check=True)  # fmt: skip
        unstage = csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging)
        node.NodeUnstageVolume(unstage, timeout=120)
    assert nexus_initiators(lab.tgt, metadata["targetIqn"]) == []

    kubectl(lab, "delete", "pod", "app", "-n", namespace, "--force", "--grace-period=0")
    wait(lab, "the VolumeAttachment was not deleted", lambda: not attachments())
    disk = get(lab, "vdisk", volume_id)
    assert disk is not None
    assert not disk["status"].get("attachment"), disk["status"]
    assert kubectl(lab, "delete", "pvc", "data", "-n", namespace, "--wait=false").returncode == 0
    wait(lab, "the VirtualDisk was not deleted", lambda: get(lab, "vdisk", volume_id) is None)
    assert naa not in luns(lab)
    kubectl(lab, "delete", "namespace", namespace, "--wait=false")
    kubectl(lab, "delete", "storageclass", storage_class)
