"""A VolumeGroupSnapshot of two lunbridge PVCs through the real snapshot-controller and
csi-snapshotter (group snapshots on, as in v8.7.0) and lunbridge's GroupController service: the
group becomes ready with a DiskGroupSnapshot behind it, the snapshot-controller makes one
VolumeSnapshot per PVC whose handle is a lunbridge member snapshot, a PVC restores from such a
member, and deleting the group removes the DiskGroupSnapshot, its members and their storage
snapshots."""

from __future__ import annotations

from typing import Any

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge.models import parse_handle
from tests.integration.kubeobjects import get
from tests.integration.operator.snapshotting import storage_snapshots
from tests.integration.storageclass.conftest import apply
from tests.integration.storageclass.flow import Flow, field, from_snapshot, obj
from tests.integration.storageclass.test_pvc_flow import wait
from tests.lab.lab import LabState, kubectl

GROUP_API = "groupsnapshot.storage.k8s.io/v1beta2"


def test_a_volume_group_snapshot_cuts_both_pvcs_and_its_members_restore(lab: LabState, flow: Flow) -> None:
    for name in ("db-data", "db-log"):
        flow.pvc(name)
        kubectl(lab, "label", "pvc", name, "-n", flow.namespace, "app=db")
    group_class = f"{flow.delete_class}-group"
    apply(lab, obj(GROUP_API, "VolumeGroupSnapshotClass", group_class, driver=CSI_DRIVER_NAME,
                   deletionPolicy="Delete"),
          obj(GROUP_API, "VolumeGroupSnapshot", "db", flow.namespace,
              spec={"volumeGroupSnapshotClassName": group_class,
                    "source": {"selector": {"matchLabels": {"app": "db"}}}}))  # fmt: skip
    try:
        wait(
            lab,
            "the VolumeGroupSnapshot readyToUse",
            lambda: field(lab, "volumegroupsnapshot", "db", flow.namespace, "status", "readyToUse"),
        )
        group = get(lab, "volumegroupsnapshot", "db", "-n", flow.namespace)
        assert group is not None
        content = get(
            lab, "volumegroupsnapshotcontent", group["status"]["boundVolumeGroupSnapshotContentName"]
        )
        assert content is not None
        handle = content["status"]["volumeGroupSnapshotHandle"]
        dgsnap = get(lab, "dgsnap", handle)
        assert dgsnap is not None, f"no DiskGroupSnapshot {handle} behind the group"
        assert len(dgsnap["status"]["members"]) == 2

        def members() -> list[dict[str, Any]] | None:
            listed = (get(lab, "volumesnapshot", "-n", flow.namespace) or {}).get("items", [])
            ready = [s for s in listed if (s.get("status") or {}).get("readyToUse")]
            return ready if len(ready) == 2 else None

        snapshots = wait(lab, "two member VolumeSnapshots ready", members)
        names = {m["snapshotName"] for m in dgsnap["status"]["members"]}
        assert names <= set(storage_snapshots(lab))
        for snapshot in snapshots:
            member_content = get(
                lab, "volumesnapshotcontent", snapshot["status"]["boundVolumeSnapshotContentName"]
            )
            assert member_content is not None
            assert parse_handle(member_content["status"]["snapshotHandle"])[1] in names

        restored = flow.pvc("restored", from_snapshot(snapshots[0]["metadata"]["name"]))
        disk = get(lab, "vdisk", flow.volume_id(restored))
        assert disk is not None
        assert disk["spec"]["source"]["snapshot"] in {m["diskSnapshot"] for m in dgsnap["status"]["members"]}
    finally:
        kubectl(lab, "delete", "volumegroupsnapshot", "db", "-n", flow.namespace, "--wait=false")
    wait(lab, "the DiskGroupSnapshot deleted", lambda: get(lab, "dgsnap", handle) is None)
    wait(lab, "the member storage snapshots deleted", lambda: not names & set(storage_snapshots(lab)))
    kubectl(lab, "delete", "volumegroupsnapshotclass", group_class)
