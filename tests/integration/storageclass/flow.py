"""One namespace of the StorageClass snapshot tests: a StorageClass, two VolumeSnapshotClasses
(Delete, Retain), PVCs bound through the real provisioner, pods whose VolumeAttachments attach
the LUNs to the KVM guest (no kubelet runs them), VolumeSnapshots; and their cleanup."""

from __future__ import annotations

import uuid
from typing import Any

from lunbridge.api import CSI_DRIVER_NAME
from tests.integration.kubeobjects import get
from tests.integration.operator import observe
from tests.integration.operator.guestdisk import Staged, unstage
from tests.integration.storageclass.conftest import apply
from tests.integration.storageclass.test_pvc_flow import wait
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


def obj(api: str, kind: str, name: str, namespace: str | None = None, **fields: Any) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta, **fields}


def pod_using(claim: str, namespace: str, node: str) -> dict[str, Any]:
    container = {"name": "app", "image": "app", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}
    spec = {"nodeName": node, "automountServiceAccountToken": False, "containers": [container],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}  # fmt: skip
    return obj("v1", "Pod", f"use-{claim}", namespace, spec=spec)


def from_snapshot(name: str) -> dict[str, str]:
    return {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name}


def field(lab: LabState, kind: str, name: str, namespace: str | None, *path: str) -> Any:
    """`get` of one object (of the list of all with `name` empty) and a walk down `path`
    (None when any part is missing)."""
    found: Any = get(lab, kind, *([name] if name else []), *(["-n", namespace] if namespace else []))
    for key in path:
        found = found.get(key) if isinstance(found, dict) else None
    return found


class Flow:
    """One namespace, one StorageClass and two VolumeSnapshotClasses (Delete, Retain)."""

    def __init__(self, lab: LabState, guest: libvirt_lab.LibvirtGuest) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.lab, self.guest = lab, guest
        self.namespace, self.storage_class = f"snap-flow-{suffix}", f"lunbridge-{suffix}"
        self.delete_class, self.retain_class = f"lunbridge-delete-{suffix}", f"lunbridge-retain-{suffix}"
        self.staged: list[Staged] = []

    def setup(self) -> None:
        assert kubectl(self.lab, "create", "namespace", self.namespace).returncode == 0
        sc = obj("storage.k8s.io/v1", "StorageClass", self.storage_class, provisioner=CSI_DRIVER_NAME,
                 reclaimPolicy="Delete", volumeBindingMode="Immediate",
                 parameters={"csi.storage.k8s.io/fstype": "ext4"})  # fmt: skip
        classes = [
            obj(SNAPSHOT_API, "VolumeSnapshotClass", name, driver=CSI_DRIVER_NAME, deletionPolicy=policy)
            for name, policy in ((self.delete_class, "Delete"), (self.retain_class, "Retain"))
        ]
        apply(self.lab, sc, *classes)
        wait(self.lab, "the namespace's ServiceAccount",
             lambda: get(self.lab, "serviceaccount", "default", "-n", self.namespace))  # fmt: skip

    def pvc(self, name: str, source: dict[str, str] | None = None, size: str = "64Mi") -> dict[str, Any]:
        spec: dict[str, Any] = {"storageClassName": self.storage_class, "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": size}}}  # fmt: skip
        if source is not None:
            spec["dataSource"] = source
        apply(self.lab, obj("v1", "PersistentVolumeClaim", name, self.namespace, spec=spec))
        wait(self.lab, f"PVC {name} Bound",
             lambda: field(self.lab, "pvc", name, self.namespace, "status", "phase") == "Bound")  # fmt: skip
        bound = get(self.lab, "pvc", name, "-n", self.namespace)
        assert bound is not None
        return bound

    def volume_id(self, pvc: dict[str, Any]) -> str:
        pv = get(self.lab, "pv", pvc["spec"]["volumeName"])
        assert pv is not None
        handle: str = pv["spec"]["csi"]["volumeHandle"]
        return handle

    def attach(self, pvc: dict[str, Any]) -> dict[str, Any]:
        """A pod on the guest's Node: the attach/detach controller's VolumeAttachment attaches
        the LUN to the guest (no kubelet runs the pod); the attached VirtualDisk."""
        apply(self.lab, pod_using(pvc["metadata"]["name"], self.namespace, self.lab.guest_node))
        volume_id = self.volume_id(pvc)

        def attached() -> dict[str, Any] | None:
            disk = get(self.lab, "vdisk", volume_id)
            return disk if observe.is_ready(disk) and disk and disk["status"].get("attachment") else None

        found: dict[str, Any] = wait(self.lab, f"{volume_id} attached to the guest", attached)
        return found

    def snapshot(self, name: str, pvc: str, snapshot_class: str) -> dict[str, Any]:
        spec = {"volumeSnapshotClassName": snapshot_class, "source": {"persistentVolumeClaimName": pvc}}
        apply(self.lab, obj(SNAPSHOT_API, "VolumeSnapshot", name, self.namespace, spec=spec))
        return self.ready(name)

    def ready(self, name: str) -> dict[str, Any]:
        wait(
            self.lab,
            f"VolumeSnapshot {name} readyToUse",
            lambda: field(self.lab, "volumesnapshot", name, self.namespace, "status", "readyToUse"),
        )
        found = get(self.lab, "volumesnapshot", name, "-n", self.namespace)
        assert found is not None
        return found

    def content(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        content = get(self.lab, "volumesnapshotcontent", snapshot["status"]["boundVolumeSnapshotContentName"])
        assert content is not None
        return content

    def cleanup(self) -> None:
        for staged in reversed(self.staged):
            unstage(self.guest, staged)
        kubectl(self.lab, "delete", "pod", "--all", "-n", self.namespace, "--force", "--grace-period=0")
        kubectl(self.lab, "delete", "volumesnapshot", "--all", "-n", self.namespace, "--wait=false")
        kubectl(self.lab, "delete", "pvc", "--all", "-n", self.namespace, "--wait=false")
        wait(self.lab, "the flow's volumes deleted",
             lambda: not field(self.lab, "pvc", "", self.namespace, "items"))  # fmt: skip
        kubectl(self.lab, "delete", "namespace", self.namespace, "--wait=false")
        kubectl(self.lab, "delete", "storageclass", self.storage_class)
        kubectl(self.lab, "delete", "volumesnapshotclass", self.delete_class, self.retain_class)
