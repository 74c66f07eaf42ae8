"""The LUN's life through the real reconcile and delete steps on the fakes: an unattached disk,
growth, reclaim policies, clones (and clones across backends), a backend that does not exist,
and a disk whose status an earlier release wrote."""

from __future__ import annotations

import pytest

from lunbridge.models import ConditionType, DiskSource, LunStatus, Phase, ReclaimPolicy
from lunbridge_operator import naming
from tests.fakes import Lab

GiB = 1 << 30


async def test_an_unattached_disk_becomes_ready_with_a_provisioned_lun() -> None:
    lab = Lab.build()
    disk = await lab.create_disk("d1", size="2Gi")
    lun = lab.lun("d1")
    status = disk.status
    assert status.phase is Phase.READY
    assert status.is_true(ConditionType.PROVISIONED, generation=1)
    assert status.is_true(ConditionType.READY, generation=1)
    assert [(c.type, c.reason) for c in status.conditions if c.type == ConditionType.READY] == [
        (ConditionType.READY, "Provisioned")
    ]
    assert not status.is_true(ConditionType.ATTACHED)
    assert status.lun == LunStatus(
        backend="lab", name=lun.name, serial=lun.serial, naa=lun.naa, size_bytes=2 * GiB
    )
    assert status.attachment is None
    assert lun.name == naming.lun_name(disk.metadata.uid or "")
    assert lab.storage.maps == []
    assert lab.hypervisor.all_rdms() == []
    assert lab.operator.reasons("d1") == ["Provisioned"]
    assert lab.operator.failures == []


async def test_a_larger_size_grows_the_same_lun() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", size="1Gi", node_name="node-a")
    naa = lab.lun("d1").naa
    grown = await lab.patch("d1", size="3Gi")
    assert lab.lun("d1").size_bytes == 3 * GiB
    assert lab.lun("d1").naa == naa
    assert grown.status.lun is not None
    assert grown.status.lun.size_bytes == 3 * GiB
    assert grown.status.phase is Phase.READY
    assert grown.current
    assert "Resized" in lab.operator.reasons("d1")
    assert lab.rdms("node-a")[0].naa == naa  # still attached, nothing re-made


@pytest.mark.parametrize(("policy", "kept"), [(ReclaimPolicy.RETAIN, True), (ReclaimPolicy.DELETE, False)])
async def test_delete_removes_the_lun_unless_retained_and_unmaps_it_either_way(
    policy: ReclaimPolicy, kept: bool
) -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a", reclaim_policy=policy)
    lun = lab.lun("d1")
    await lab.delete("d1")
    assert "d1" not in lab.kube.disks
    assert (lun.name in lab.storage.luns) is kept
    assert lab.storage.maps == []
    assert lab.rdms("node-a") == []
    assert lab.operator.reasons("d1")[-1] == ("Retained" if kept else "Deleted")


async def test_a_clone_of_another_disk_is_a_new_lun_and_its_snapshot_is_scaffolding() -> None:
    lab = Lab.build()
    await lab.create_disk("origin", size="2Gi", node_name="node-a")
    clone = await lab.create_disk("copy", size="3Gi", source=DiskSource(virtual_disk="origin"))
    origin_lun, clone_lun = lab.lun("origin"), lab.lun("copy")
    assert clone.status.phase is Phase.READY
    assert clone_lun.naa != origin_lun.naa
    assert clone_lun.serial != origin_lun.serial
    assert clone_lun.source_snapshot is not None
    assert lab.storage.called("create_snapshot") == [(origin_lun.name, clone_lun.source_snapshot)]
    assert lab.storage.snapshots == {}
    assert clone_lun.size_bytes == 3 * GiB
    assert clone.status.lun is not None
    assert clone.status.lun.naa == clone_lun.naa


async def test_a_clone_across_backends_is_refused_naming_both_and_nothing_is_made() -> None:
    lab = Lab.build(("lab", "fast"))
    await lab.create_disk("origin", size="2Gi")
    disk = await lab.create_disk("copy", backend="fast", source=DiskSource(virtual_disk="origin"))
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.reason == "InvalidArgument"
    assert "lab" in ready.message
    assert "fast" in ready.message
    assert disk.status.phase is Phase.FAILED
    assert lab.storages["fast"].luns == {}
    assert lab.storage.called("create_snapshot") == []
    assert len(lab.storage.luns) == 1
    assert not lab.operator.failures_of("copy")[-1].retryable


async def test_an_unknown_backend_fails_naming_the_known_ones_and_its_delete_succeeds() -> None:
    lab = Lab.build(("lab", "fast"))
    disk = await lab.create_disk("d1", backend="gold", node_name="node-a")
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert not ready.true
    assert ready.reason == "InvalidArgument"
    assert "'gold'" in ready.message
    assert "fast, lab" in ready.message
    assert disk.status.phase is Phase.FAILED
    assert disk.current
    assert all(storage.luns == {} and storage.igroups == {} for storage in lab.storages.values())
    assert lab.hypervisor.all_rdms() == []
    assert lab.operator.events_of("d1")[-1].type == "Warning"
    await lab.delete("d1")
    assert "d1" not in lab.kube.disks
    assert all(storage.calls == [] for storage in lab.storages.values())


async def test_a_status_of_the_previous_release_is_kept_and_rewritten_in_todays_keys() -> None:
    """The earlier release named its only backend `tgt` and wrote the RDM's vSphere coordinates
    beside pciSlot/guestAddress without a `mode`; the default backend is now called `lab`."""
    lab = Lab.build(("lab",), running=False)
    await lab.create_disk("old", node_name="node-a")
    uid = lab.kube.disks["old"]["metadata"]["uid"]
    storage, vm = lab.storage, lab.vms["node-a"]
    lun = await storage.create_lun(naming.lun_name(uid), GiB)
    initiators = ["iqn.1998-01.com.vmware:esx-1", "iqn.1998-01.com.vmware:esx-2"]
    await storage.create_igroup("cluster-c1", lab.services.transport, initiators)
    mapping = await storage.map_lun(lun.name, "cluster-c1")
    await lab.hypervisor.attach_rdm(vm, lun.naa)
    [rdm] = lab.rdms("node-a")
    legacy = {
        "phase": "Ready", "observedGeneration": 1, "initiatorGroup": "cluster-c1",
        "lun": {"backend": "tgt", "name": lun.name, "id": mapping.lun_id, "serial": lun.serial,
                "naa": lun.naa, "sizeBytes": GiB},
        "attachment": {"node": "node-a", "providerID": lab.provider_id("node-a"), "vm": vm.name,
                       "vmId": vm.id, "host": "esx-1", "controllerKey": rdm.controller_key,
                       "busNumber": rdm.bus_number, "unitNumber": rdm.unit_number,
                       "diskKey": rdm.disk_key, "guestAddress": f"0:{rdm.unit_number}:0",
                       "pciSlot": rdm.pci_slot},
    }  # fmt: skip
    await lab.kube.patch_status("virtualdisks", "old", legacy)
    storage.calls.clear()
    lab.hypervisor.calls.clear()
    await lab.operator.start()  # the new release starts and resumes the disk
    written = lab.kube.disks["old"]["status"]
    assert written["lun"]["backend"] == "lab"
    assert written["attachment"]["mode"] == "hypervisor"
    for key in ("controllerKey", "busNumber", "unitNumber", "diskKey"):
        assert key not in written["attachment"]
    assert written["attachment"]["detail"] == rdm.detail()
    assert written["attachment"]["guestAddress"] == f"0:{rdm.unit_number}:0"
    assert lab.disk("old").status.phase is Phase.READY
    assert list(storage.luns.values()) == [lun]
    assert storage.maps == [mapping]
    assert lab.rdms("node-a") == [rdm]
    assert storage.called("create_lun") == []
    assert storage.called("unmap_lun") == []
    assert lab.hypervisor.called("detach_rdm") == []
