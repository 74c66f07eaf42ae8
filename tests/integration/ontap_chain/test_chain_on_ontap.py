"""The whole chain on the ontap backend, as users drive it: `kubectl apply` of VirtualDisks with
`backend: netapp` → the operator → ONTAP's REST API (the lab's simulator) → tgtd → the vCenter
simulator's host rescan → an RDM on a vSphere VM; and into the KVM guest through libvirt, where
the disk is found by its 600a0980 NAA, formatted and mounted. Snapshots, clones (FlexClones),
restores (SnapRestore of the disk's own FlexVol) and verification run on ontap too, and a deleted
disk leaves nothing on the SVM."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest

from lunbridge.models import VirtualDiskStatus
from lunbridge_csi._proto import csi_pb2
from tests.integration.csi_controller.test_controller import MiB, code_of, create_request
from tests.integration.libvirt.guestscsi import delete_disk
from tests.integration.ontap_chain.conftest import BACKEND, on_ontap
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.integration.operator.guestdisk import Staged, mount_in_guest, read_digest, stage_in_guest, unstage
from tests.integration.operator.snapshotting import Snapshots, write_again
from tests.integration.operator.test_restore import restore
from tests.integration.operator.test_restore import wait_done as restore_done
from tests.integration.operator.verifying import verify
from tests.integration.operator.verifying import wait_done as verify_done
from tests.lab import libvirt as libvirt_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl, node_name
from tests.lab.ontap import lab as ontap_lab

pytestmark = [pytest.mark.peers, pytest.mark.usefixtures("operator")]
ONTAP_NAA = "naa.600a0980"


def _luns(sim: ontap_lab.OntapSim, lun: str) -> list[dict[str, Any]]:
    return on_ontap(sim, f"/api/storage/luns?name=/vol/*/{lun}&fields=serial_number,lun_maps")


def _detach(lab: LabState, name: str) -> None:
    kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", json.dumps({"spec": {"nodeName": None}}))
    observe.eventually(lambda: (d := observe.get(lab, "vdisk", name)) and observe.is_ready(d)
                       and not d["status"].get("attachment"), 120, f"{name} detached")  # fmt: skip


def test_a_disk_on_ontap_becomes_an_rdm_of_a_vsphere_vm_by_its_ontap_naa(
    lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer, ontap_sim: ontap_lab.OntapSim, disks: Disks
) -> None:
    vm = vcsim.inventory.vms[0]
    name = disks.make(node=node_name(vm.name), size="32Mi", backend=BACKEND)
    disk = observe.wait_ready(lab, name, timeout=120)
    lun = VirtualDiskStatus.from_dict(disk["status"]).lun
    assert lun is not None
    assert lun.naa is not None
    assert lun.name is not None
    naa, lun_name = lun.naa, lun.name
    assert naa.startswith(ONTAP_NAA)
    assert lun.backend == BACKEND
    [record] = _luns(ontap_sim, lun_name)
    assert naa == ONTAP_NAA + record["serial_number"].encode().hex()
    assert [m["igroup"]["name"] for m in record["lun_maps"]], "the LUN is masked to no igroup"
    rdms = [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa.removeprefix("naa."))]
    assert len(rdms) == 1, f"no RDM of {naa} on {vm.name}"
    served = observe.lus_with(lab.tgt, naa)  # on tgtd, under the simulator's own targets
    assert served
    assert all(target.startswith(ontap_sim.iqn_prefix) for target, _ in served)

    disks.delete_all()
    assert _luns(ontap_sim, lun_name) == []
    assert on_ontap(ontap_sim, f"/api/storage/volumes?name=k8s_{lun_name.replace('-', '_')}") == []
    assert not [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa.removeprefix("naa."))]
    assert observe.lus_with(lab.tgt, naa) == []


def test_in_the_guest_an_ontap_disk_mounts_snapshots_verifies_clones_and_restores(
    lab: LabState,
    kvm_guest: libvirt_lab.LibvirtGuest,
    ontap_sim: ontap_lab.OntapSim,
    disks: Disks,
    snapshots: Snapshots,
    verifier: str,
    guest_disks: list[Staged],
) -> None:
    name = disks.make(node=lab.guest_node, size="64Mi", backend=BACKEND)
    disk = observe.wait_ready(lab, name, timeout=180)
    naa = disk["status"]["lun"]["naa"]
    assert naa.startswith(ONTAP_NAA)
    staged = stage_in_guest(kvm_guest, disk)  # found by its NAA, formatted, mounted, data A
    guest_disks.append(staged)
    wwid = kvm_guest.run(f"cat /sys/block/{staged.sd}/device/wwid", timeout=30, check=True).stdout
    assert naa.removeprefix("naa.") in wwid

    snap = snapshots.wait_ready(snapshots.make({"virtualDisk": name}), timeout=120)
    snap_name = snap["metadata"]["name"]
    data_b = write_again(kvm_guest, staged)
    assert data_b != staged.digest

    checked = verify_done(lab, verify(lab, snap_name, verifier, disks.test_id))
    assert checked["status"]["phase"] == "Completed", checked["status"]

    clone = disks.make(node=lab.guest_node, size="64Mi", backend=BACKEND, source={"snapshot": snap_name})
    cloned = observe.wait_ready(lab, clone, timeout=180)
    assert cloned["status"]["lun"]["naa"].startswith(ONTAP_NAA)
    assert cloned["status"]["lun"]["naa"] != naa
    copy = mount_in_guest(kvm_guest, cloned)
    try:
        assert copy.digest == staged.digest, "the clone does not hold what the snapshot held"
    finally:
        kvm_guest.run(f"umount {copy.mount}; rmdir {copy.mount}", timeout=60)
        delete_disk(kvm_guest, copy.sd)

    guest_disks.remove(staged)
    unstage(kvm_guest, staged)
    _detach(lab, name)
    done = restore_done(lab, restore(lab, name, snap_name, disks.test_id), timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"]
    assert done["status"]["naa"] == naa
    kubectl(
        lab, "patch", "vdisk", name, "--type=merge", "-p", json.dumps({"spec": {"nodeName": lab.guest_node}})
    )
    again = observe.wait_ready(lab, name, timeout=180)
    assert again["status"]["lun"]["naa"] == naa
    back = mount_in_guest(kvm_guest, again)
    guest_disks.append(back)
    assert read_digest(kvm_guest, back.mount) == staged.digest, "the restore did not bring back A"


def test_a_storage_class_for_netapp_provisions_snapshots_and_clones_through_csi(
    lab: LabState, controller: Any, volumes: list[str]
) -> None:
    """What the StorageClass `lunbridge-netapp` (parameters.backend: netapp) gets from the
    controller service: volumes, snapshots and both kinds of clones on the SVM."""
    on_netapp = {"backend": BACKEND}
    origin, from_snapshot, from_volume = (f"pvc-{uuid.uuid4()}" for _ in range(3))
    volumes += [origin, from_snapshot, from_volume]
    made = controller.CreateVolume(create_request(origin, 16 * MiB, parameters=on_netapp), timeout=120).volume
    assert made.capacity_bytes >= 16 * MiB
    disk = observe.get(lab, "vdisk", origin)
    assert disk is not None
    assert disk["spec"]["backend"] == BACKEND
    assert disk["status"]["lun"]["naa"].startswith(ONTAP_NAA)

    snapshot = controller.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=origin, name=f"snapshot-{uuid.uuid4()}"), timeout=120
    ).snapshot
    try:
        assert snapshot.ready_to_use
        naas = {disk["status"]["lun"]["naa"]}
        for name, source in (
            (from_snapshot, csi_pb2.VolumeContentSource(
                snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id))),
            (from_volume, csi_pb2.VolumeContentSource(
                volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=origin))),
        ):  # fmt: skip
            request = create_request(name, 16 * MiB, parameters=on_netapp, volume_content_source=source)
            controller.CreateVolume(request, timeout=180)
            clone = observe.get(lab, "vdisk", name)
            assert clone is not None
            assert clone["status"]["lun"]["backend"] == BACKEND
            naas.add(clone["status"]["lun"]["naa"])
        assert len(naas) == 3
        assert all(naa.startswith(ONTAP_NAA) for naa in naas)
    finally:
        controller.DeleteSnapshot(
            csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=120
        )

    code, details = code_of(
        controller.CreateVolume, create_request(f"pvc-{uuid.uuid4()}", parameters={"backend": "nas"})
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "netapp" in details
