"""Deleting a VirtualDisk through the running operator never orphans a LUN (issue 12, case 1),
checked on tgtd: a disk on a Node whose providerID names no VM is deleted with its LUN; a
teardown the storage server refuses (its backing file made immutable, so tgtd's host cannot
remove it) keeps the finalizer, and the condition and a Warning say why until it can finish;
the forget annotation lets such a disk go and an Event names the LUN it leaves behind."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.api import FORGET_ANNOTATION
from lunbridge.models import ConditionType, VirtualDiskStatus
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")


def backing_file(lab: LabState, lun: str) -> Path:
    return Path(lab.env()["LUNBRIDGE_TGT_POOL_DIR"]) / "luns" / f"{lun}.img"


@pytest.fixture
def immutable(lab: LabState) -> Iterator[list[Path]]:
    """Backing files a test made immutable (chattr +i: not even root removes them); made
    mutable again afterwards."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def make_immutable(made: list[Path], path: Path) -> None:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    made.append(path)


def lun_of(lab: LabState, name: str) -> dict[str, Any]:
    def provisioned() -> dict[str, Any] | None:
        disk = observe.get(lab, "vdisk", name)
        lun = ((disk or {}).get("status") or {}).get("lun") or {}
        return lun if lun.get("name") else None

    return observe.eventually(provisioned, 60, f"the LUN of {name} recorded")


def blocked(lab: LabState, name: str) -> dict[str, Any] | None:
    disk = observe.get(lab, "vdisk", name)
    if disk is None:
        return None
    ready = VirtualDiskStatus.from_dict(disk.get("status")).condition(ConditionType.READY)
    return disk if ready is not None and ready.reason == "DeleteBlocked" else None


def stuck_deletion(
    lab: LabState, disks: Disks, immutable: list[Path]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A Ready disk being deleted whose LUN file tgtd's host cannot remove: name, LUN, object."""
    name = disks.make()
    lun = lun_of(lab, name)
    observe.wait_ready(lab, name)
    make_immutable(immutable, backing_file(lab, lun["name"]))
    kubectl(lab, "delete", "vdisk", name, "--wait=false")
    return name, lun, observe.eventually(lambda: blocked(lab, name), 60, f"{name} DeleteBlocked")


def test_a_disk_on_a_node_whose_provider_id_names_no_vm_is_deleted_with_its_lun(
    lab: LabState, disks: Disks, nodes: list[str]
) -> None:
    node = f"it-bad-{disks.test_id}"
    made = kubectl(lab, "create", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
         "spec": {"providerID": "vsphere://not-a-uuid"}}))  # fmt: skip
    assert made.returncode == 0, made.stderr
    nodes.append(node)
    name = disks.make(node)
    lun = lun_of(lab, name)
    assert lun["name"] in observe.backend_state(lab)["luns"]

    def not_ready() -> dict[str, Any] | None:
        disk = observe.get(lab, "vdisk", name)
        ready = observe.condition(disk or {}, "Ready")
        return disk if ready.get("status") == "False" and "UUID" in ready.get("message", "") else None

    disk = observe.eventually(not_ready, 30, f"{name} not Ready, naming the Node's providerID")
    # the Node's fault, not the disk's: tried again (a fixed providerID is taken up), not Failed
    assert observe.condition(disk, "Ready")["reason"] == "NotFound"
    kubectl(lab, "delete", "vdisk", name, "--wait=false")
    observe.wait_gone(lab, "vdisk", name, timeout=60)
    assert lun["name"] not in observe.backend_state(lab)["luns"], "the LUN was orphaned on tgtd"
    assert f"{lun['name']}.img" not in observe.pool_files(lab)


@pytest.mark.timeout(300)
def test_a_teardown_the_storage_refuses_keeps_the_finalizer_until_it_can_finish(
    lab: LabState, disks: Disks, immutable: list[Path]
) -> None:
    name, lun, disk = stuck_deletion(lab, disks, immutable)
    message = observe.condition(disk, "Ready")["message"]
    assert "cannot remove the backing file" in message
    assert lun["name"] in message
    observe.wait_events(lab, disk, {"DeleteFailed"}, timeout=20)
    assert disk["status"]["phase"] == "Deleting"
    assert lun["name"] in observe.backend_state(lab)["luns"]

    subprocess.run(["chattr", "-i", str(backing_file(lab, lun["name"]))], check=True)
    observe.wait_gone(lab, "vdisk", name, timeout=120)  # the next retry finishes it
    assert lun["name"] not in observe.backend_state(lab)["luns"]
    assert f"{lun['name']}.img" not in observe.pool_files(lab)


@pytest.mark.timeout(300)
def test_the_forget_annotation_lets_a_stuck_disk_go_and_names_what_it_leaves(
    lab: LabState, disks: Disks, immutable: list[Path]
) -> None:
    name, lun, disk = stuck_deletion(lab, disks, immutable)
    annotated = kubectl(lab, "annotate", "vdisk", name, f"{FORGET_ANNOTATION}=true")
    assert annotated.returncode == 0, annotated.stderr
    observe.wait_gone(lab, "vdisk", name, timeout=120)
    observe.wait_events(lab, disk, {"Forgotten"}, timeout=20)
    [forgotten] = [e for e in observe.events(lab, disk) if e["reason"] == "Forgotten"]
    assert forgotten["type"] == "Warning"
    assert lun["name"] in forgotten["message"]
    assert lun["name"] in observe.backend_state(lab)["luns"], "forget must not delete"

    subprocess.run(["chattr", "-i", str(backing_file(lab, lun["name"]))], check=True)
    observe.delete_lun(lab, lun["name"])


def _manifest(kind: str, name: str, spec: dict[str, Any], api: str = "v1", **meta: Any) -> str:
    return json.dumps({"apiVersion": api, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec})


@pytest.mark.timeout(300)
def test_a_disk_a_bound_volume_or_an_attachment_uses_is_deleted_only_once_free(
    lab: LabState, disks: Disks
) -> None:
    """Issue 12, case 8: `kubectl delete vdisk` of a disk a pod may be using waits for it."""
    name = disks.make()
    lun = lun_of(lab, name)
    observe.wait_ready(lab, name)
    pv, claim, attachment = f"pv-{name}", f"claim-{name}", f"va-{name}"
    objects = [
        _manifest("PersistentVolume", pv, {
            "capacity": {"storage": "64Mi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "claimRef": {"namespace": "default", "name": claim},
            "csi": {"driver": "csi.lunbridge.io", "volumeHandle": name}}),
        _manifest("PersistentVolumeClaim", claim, {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
            "resources": {"requests": {"storage": "64Mi"}}}, namespace="default"),
        _manifest("VolumeAttachment", attachment, {
            "attacher": "csi.lunbridge.io", "nodeName": "dc0-c0-h0-vm0",
            "source": {"persistentVolumeName": pv}}, api="storage.k8s.io/v1"),
    ]  # fmt: skip
    try:
        for text in objects:
            made = kubectl(lab, "create", "-f", "-", input_text=text)
            assert made.returncode == 0, made.stderr
        observe.eventually(
            lambda: (observe.get(lab, "pv", pv) or {}).get("status", {}).get("phase") == "Bound",
            60,
            f"{pv} Bound",
        )
        kubectl(lab, "delete", "vdisk", name, "--wait=false")
        disk = observe.eventually(lambda: blocked(lab, name), 60, f"{name} DeleteBlocked")
        message = observe.condition(disk, "Ready")["message"]
        assert f"PersistentVolume {pv} (Bound)" in message
        assert f"VolumeAttachment {attachment}" in message
        assert lun["name"] in observe.backend_state(lab)["luns"]

        kubectl(lab, "delete", "volumeattachment", attachment)
        kubectl(lab, "delete", "pvc", claim, "-n", "default")
        observe.eventually(
            lambda: (observe.get(lab, "pv", pv) or {}).get("status", {}).get("phase") == "Released",
            60,
            f"{pv} Released",
        )
        observe.wait_gone(lab, "vdisk", name, timeout=150)
        assert lun["name"] not in observe.backend_state(lab)["luns"]
    finally:
        kubectl(lab, "delete", "volumeattachment", attachment, "--ignore-not-found")
        kubectl(lab, "delete", "pvc", claim, "-n", "default", "--ignore-not-found")
        kubectl(lab, "delete", "pv", pv, "--ignore-not-found")
