"""A PVC on a lunbridge StorageClass, end to end through the real sidecars (see conftest.py):
PVC → CreateVolume → a VirtualDisk and a tgtd LUN → PV bound by kube-controller-manager; the
PVC asks for more → ControllerExpandVolume → the LUN grows, the PV says so; a pod
on the guest's Node → the attach/detach controller's VolumeAttachment → ControllerPublish → the
LUN attached to the KVM guest; pod gone → detached; PVC deleted → PV, VirtualDisk and LUN gone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge.hypervisor.libvirt.domain import parse_domain
from tests.integration import kubeobjects
from tests.integration.kubeobjects import get
from tests.integration.operator.observe import backend_state, served
from tests.integration.storageclass.conftest import apply, sidecar_logs
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl


def wait(lab: LabState, what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    """`kubeobjects.wait`, explained by the sidecars' logs."""
    return kubeobjects.wait(what, check, timeout, explain=lambda: sidecar_logs(lab), every=0.5)


def guest_naas(lab: LabState) -> set[str]:
    xml = libvirt_lab.virsh(Path(lab.lab_dir), "dumpxml", libvirt_lab.DOMAIN).stdout
    return {disk.naa for disk in parse_domain(xml).scsi if disk.naa}


def lun_sizes(lab: LabState) -> dict[str, int]:
    """NAA → size in bytes of every LUN the tgt backend holds, mapped or not."""
    return {f"naa.{lun['naa']}": lun["size_bytes"] for lun in backend_state(lab)["luns"].values()}


def luns(lab: LabState) -> set[str]:
    return set(lun_sizes(lab))


def test_a_pvc_becomes_a_disk_attached_to_the_pods_node_and_goes_away_with_the_pvc(
    lab: LabState, plugin: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    namespace, storage_class = f"sc-flow-{suffix}", f"lunbridge-{suffix}"
    assert kubectl(lab, "create", "namespace", namespace).returncode == 0
    apply(
        lab,
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": storage_class},
            "provisioner": CSI_DRIVER_NAME,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
            "parameters": {"csi.storage.k8s.io/fstype": "ext4"},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": namespace},
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "64Mi"}},
            },
        },
    )
    # PVC → CreateVolume → VirtualDisk + LUN → PV, bound by kube-controller-manager
    pvc = wait(lab, "the PVC was not Bound", lambda: (p := get(lab, "pvc", "data", "-n", namespace))
               and p["status"].get("phase") == "Bound" and p)  # fmt: skip
    pv_name = pvc["spec"]["volumeName"]
    pv = get(lab, "pv", pv_name)
    assert pv is not None
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    assert pv["spec"]["csi"]["driver"] == CSI_DRIVER_NAME
    assert pv["spec"]["csi"]["fsType"] == "ext4"
    disk = wait(lab, "the VirtualDisk was not Provisioned", lambda: (d := get(lab, "vdisk", volume_id))
                and d.get("status", {}).get("lun", {}).get("naa") and d)  # fmt: skip
    naa = disk["status"]["lun"]["naa"]
    assert naa in luns(lab)
    assert naa not in guest_naas(lab)

    # the PVC asks for more → the resizer's ControllerExpandVolume → a bigger LUN and PV
    grow = json.dumps({"spec": {"resources": {"requests": {"storage": "128Mi"}}}})
    assert kubectl(lab, "patch", "pvc", "data", "-n", namespace, "-p", grow).returncode == 0
    wait(lab, "the PV did not grow", lambda: (v := get(lab, "pv", pv_name))
         and v["spec"]["capacity"]["storage"] == "128Mi")  # fmt: skip
    assert lun_sizes(lab)[naa] == 128 << 20
    resized = get(lab, "pvc", "data", "-n", namespace)
    assert resized is not None
    conditions = {c["type"] for c in resized["status"].get("conditions", [])}
    assert "FileSystemResizePending" in conditions  # the node grows the filesystem at the next stage

    # a pod on the guest's Node → VolumeAttachment → ControllerPublish → attached to the guest
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "nodeName": lab.guest_node,
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "app", "image": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    wait(
        lab,
        "the pod's ServiceAccount did not appear",
        lambda: get(lab, "serviceaccount", "default", "-n", namespace),
    )
    apply(lab, pod)

    def attachments() -> list[dict[str, Any]]:
        listed = get(lab, "volumeattachments") or {}
        items: list[dict[str, Any]] = listed.get("items", [])
        return [va for va in items if va["spec"]["source"].get("persistentVolumeName") == pv_name]

    def attachment() -> dict[str, Any] | None:
        found = attachments()
        return found[0] if found and found[0].get("status", {}).get("attached") else None

    va = wait(lab, "the VolumeAttachment was not attached", attachment)
    assert va["spec"]["attacher"] == CSI_DRIVER_NAME
    assert va["spec"]["nodeName"] == lab.guest_node
    metadata = va["status"]["attachmentMetadata"]
    assert metadata["naa"] == naa
    assert metadata["pciSlot"]
    assert metadata["guestAddress"]
    assert naa in guest_naas(lab)
    assert naa in served(lab.tgt)
    disk = get(lab, "vdisk", volume_id)
    assert disk is not None
    assert disk["status"]["attachment"]["node"] == lab.guest_node

    # pod gone → the attach/detach controller detaches → ControllerUnpublish → not in the guest
    kubectl(lab, "delete", "pod", "app", "-n", namespace, "--force", "--grace-period=0")
    wait(lab, "the VolumeAttachment was not deleted", lambda: not attachments())
    wait(lab, "the disk stayed in the guest", lambda: naa not in guest_naas(lab))

    # PVC deleted → PV deleted → DeleteVolume → VirtualDisk and LUN gone
    assert kubectl(lab, "delete", "pvc", "data", "-n", namespace, "--wait=false").returncode == 0
    wait(lab, "the PV was not deleted", lambda: get(lab, "pv", pv_name) is None)
    wait(lab, "the VirtualDisk was not deleted", lambda: get(lab, "vdisk", volume_id) is None)
    assert naa not in luns(lab)
    assert naa not in served(lab.tgt)
    kubectl(lab, "delete", "namespace", namespace, "--wait=false")
    kubectl(lab, "delete", "storageclass", storage_class)
