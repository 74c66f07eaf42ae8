"""VolumeSnapshots of lunbridge PVCs through the real external-snapshotter (snapshot-controller
and the csi-snapshotter sidecar, see conftest.py) and the real provisioner and attacher, with
the data checked in the KVM guest: write A, snapshot, write B; a PVC restored from the
snapshot holds A, a PVC cloned from the PVC holds B. Deleting a VolumeSnapshot of a Delete
class removes its content, its DiskSnapshot and the storage snapshot; one of a Retain class
keeps the storage snapshot, which a pre-provisioned VolumeSnapshotContent (its handle) then
imports and restores from."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge.models import parse_handle
from tests.integration.operator import observe
from tests.integration.operator.guestdisk import Staged, mount_in_guest, read_digest, stage_in_guest, unstage
from tests.integration.storageclass.conftest import apply
from tests.integration.storageclass.test_pvc_flow import get, wait
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


@pytest.fixture
def flow(lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, snapshots: None) -> Iterator[Flow]:
    made = Flow(lab, kvm_guest)
    made.setup()
    yield made
    made.cleanup()


def storage_snapshots(lab: LabState) -> dict[str, Any]:
    found: dict[str, Any] = observe.backend_state(lab).get("snapshots", {})
    return found


def test_snapshot_restore_and_clone_through_the_real_sidecars_hold_the_right_data(
    lab: LabState, flow: Flow, kvm_guest: libvirt_lab.LibvirtGuest
) -> None:
    source = flow.pvc("source")
    staged = stage_in_guest(kvm_guest, flow.attach(source))  # data A
    flow.staged.append(staged)

    snap = flow.snapshot("before-b", "source", flow.delete_class)
    content = flow.content(snap)
    handle = content["status"]["snapshotHandle"]
    backend, storage_name = parse_handle(handle)
    assert storage_name in storage_snapshots(lab)
    assert content["status"]["restoreSize"] == 64 << 20
    assert snap["status"]["restoreSize"] == "64Mi"
    dsnap = get(lab, "dsnap", f"snapshot-{snap['metadata']['uid']}")
    assert dsnap is not None, "no DiskSnapshot behind the VolumeSnapshot"
    assert dsnap["status"]["snapshotName"] == storage_name
    assert dsnap["spec"]["source"]["virtualDisk"] == flow.volume_id(source)

    kvm_guest.run(f"dd if=/dev/urandom of={staged.mount}/data bs=64k count=32 conv=fsync 2>/dev/null",
                  timeout=120, check=True)  # fmt: skip
    data_b = read_digest(kvm_guest, staged.mount)
    assert data_b != staged.digest

    restored = flow.pvc("restored", from_snapshot("before-b"), size="96Mi")
    restored_disk = get(lab, "vdisk", flow.volume_id(restored))
    assert restored_disk is not None
    assert restored_disk["spec"]["source"] == {"snapshot": dsnap["metadata"]["name"]}
    again = mount_in_guest(kvm_guest, flow.attach(restored))
    flow.staged.append(again)
    assert again.digest == staged.digest, (
        "the restored PVC does not hold what was written before the snapshot"
    )

    clone = flow.pvc("clone", {"kind": "PersistentVolumeClaim", "name": "source"})
    copied = mount_in_guest(kvm_guest, flow.attach(clone))
    flow.staged.append(copied)
    assert copied.digest == data_b, "the cloned PVC does not hold the source's data"

    # Delete class: the content, the DiskSnapshot and the storage snapshot all go
    assert kubectl(lab, "delete", "volumesnapshot", "before-b", "-n", flow.namespace).returncode == 0
    wait(
        lab,
        "the content deleted",
        lambda: get(lab, "volumesnapshotcontent", content["metadata"]["name"]) is None,
    )
    wait(lab, "the DiskSnapshot deleted", lambda: get(lab, "dsnap", dsnap["metadata"]["name"]) is None)
    assert storage_name not in storage_snapshots(lab)
    assert backend == dsnap["status"]["backend"]


def test_a_retained_snapshot_is_imported_by_a_pre_provisioned_content_and_restored(
    lab: LabState, flow: Flow, kvm_guest: libvirt_lab.LibvirtGuest
) -> None:
    source = flow.pvc("source")
    staged = stage_in_guest(kvm_guest, flow.attach(source))
    flow.staged.append(staged)
    snap = flow.snapshot("kept", "source", flow.retain_class)
    content = flow.content(snap)
    handle = content["status"]["snapshotHandle"]
    storage_name = parse_handle(handle)[1]
    dsnap_name = f"snapshot-{snap['metadata']['uid']}"

    # Retain: deleting the VolumeSnapshot keeps the content, the DiskSnapshot and the storage snapshot
    assert kubectl(lab, "delete", "volumesnapshot", "kept", "-n", flow.namespace).returncode == 0
    assert get(lab, "volumesnapshotcontent", content["metadata"]["name"]) is not None
    assert get(lab, "dsnap", dsnap_name) is not None
    assert storage_name in storage_snapshots(lab)
    # the cluster forgets it (content and DiskSnapshot, storage snapshot kept): only the handle is left
    kubectl(lab, "delete", "volumesnapshotcontent", content["metadata"]["name"])
    patch = json.dumps({"spec": {"deletionPolicy": "Retain"}})
    assert kubectl(lab, "patch", "dsnap", dsnap_name, "--type=merge", "-p", patch).returncode == 0
    assert kubectl(lab, "delete", "dsnap", dsnap_name).returncode == 0
    assert storage_name in storage_snapshots(lab)

    name = f"imported-{uuid.uuid4().hex[:6]}"
    content_spec = {"deletionPolicy": "Delete", "driver": CSI_DRIVER_NAME,
                    "source": {"snapshotHandle": handle},
                    "volumeSnapshotRef": {"name": "imported", "namespace": flow.namespace}}  # fmt: skip
    apply(lab, obj(SNAPSHOT_API, "VolumeSnapshotContent", name, spec=content_spec),
          obj(SNAPSHOT_API, "VolumeSnapshot", "imported", flow.namespace,
              spec={"source": {"volumeSnapshotContentName": name}}))  # fmt: skip
    imported = flow.ready("imported")
    assert imported["status"]["restoreSize"] == "64Mi"
    restored = flow.pvc("from-import", from_snapshot("imported"))
    again = mount_in_guest(kvm_guest, flow.attach(restored))
    flow.staged.append(again)
    assert again.digest == staged.digest

    # its content's policy is Delete: the import and the storage snapshot go with it
    assert kubectl(lab, "delete", "volumesnapshot", "imported", "-n", flow.namespace).returncode == 0
    wait(lab, "the imported content deleted", lambda: get(lab, "volumesnapshotcontent", name) is None)
    assert storage_name not in storage_snapshots(lab)
