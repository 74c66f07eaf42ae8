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

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge.models import parse_handle
from tests.integration.kubeobjects import get
from tests.integration.operator.guestdisk import mount_in_guest, stage_in_guest
from tests.integration.operator.snapshotting import storage_snapshots, write_again
from tests.integration.storageclass.conftest import apply
from tests.integration.storageclass.flow import SNAPSHOT_API, Flow, from_snapshot, obj
from tests.integration.storageclass.test_pvc_flow import wait
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl


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

    data_b = write_again(kvm_guest, staged)
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
