"""The fakes the reconcile tests run on keep their protocols' promises; a fake that drifted
would let those tests pass for the wrong reason."""

from __future__ import annotations

import pytest

from lunbridge.api import VIRTUAL_DISK_PLURAL
from lunbridge.errors import Conflict, LimitExceeded, NotFound, Unavailable
from lunbridge.san import Transport
from tests.fakes import FakeHypervisor, FakeKube, FakeStorage

IQN = "iqn.1998-01.com.vmware:esx-1"


async def test_storage_ids_are_never_reused_and_deletes_follow_the_protocol() -> None:
    storage = FakeStorage()
    first = await storage.create_lun("a", 1024)
    await storage.create_igroup("g", Transport.ISCSI, [IQN])
    assert (await storage.map_lun("a", "g")).lun_id == 0
    with pytest.raises(Conflict):
        await storage.delete_lun("a")
    with pytest.raises(Conflict):
        await storage.delete_igroup("g")
    await storage.unmap_lun("a", "g")
    await storage.unmap_lun("a", "g")
    await storage.delete_lun("a")
    await storage.delete_lun("a")
    await storage.delete_snapshot("nothing")
    again = await storage.create_lun("a", 1024)
    assert (again.naa, again.serial) != (first.naa, first.serial)
    with pytest.raises(NotFound):
        await storage.get_igroup("nothing")
    relabelled = await storage.create_igroup("g", Transport.ISCSI, [IQN], "linux")
    assert relabelled.os_type == "linux"


async def test_storage_faults_fail_one_call_and_change_nothing() -> None:
    storage = FakeStorage()
    storage.fail_next("create_lun", Unavailable("down"))
    with pytest.raises(Unavailable):
        await storage.create_lun("a", 1024)
    assert storage.luns == {}
    await storage.create_lun("a", 1024)
    assert storage.called("create_lun") == [("a", 1024, None), ("a", 1024, None)]


async def test_hypervisor_units_are_per_vm_and_limited() -> None:
    hypervisor = FakeHypervisor(max_disks=1)
    hypervisor.add_host("esx-1")
    vm = hypervisor.add_vm("vm", "esx-1")
    assert await hypervisor.find_vm(hypervisor.provider_id(vm).upper().replace("VSPHERE", "vsphere")) == vm
    with pytest.raises(NotFound):
        await hypervisor.find_vm("vsphere://4231ffff-0000-0000-0000-000000000000")
    first = await hypervisor.attach_rdm(vm, "naa.60000000000000000000000000000001")
    assert await hypervisor.attach_rdm(vm, "naa.60000000000000000000000000000001") == first
    with pytest.raises(LimitExceeded):
        await hypervisor.attach_rdm(vm, "naa.60000000000000000000000000000002")


async def test_kube_merge_patches_counts_generations_and_honours_finalizers() -> None:
    kube = FakeKube()
    body = {"apiVersion": "v", "kind": "VirtualDisk", "metadata": {"name": "d"}, "spec": {"size": "1Gi"},
            "status": {"phase": "Ready"}}  # fmt: skip
    created = await kube.create(VIRTUAL_DISK_PLURAL, body)
    assert "status" not in created
    assert created["metadata"]["generation"] == 1
    await kube.patch_status(VIRTUAL_DISK_PLURAL, "d", {"lun": {"id": 1, "naa": "n"}})
    await kube.patch_status(VIRTUAL_DISK_PLURAL, "d", {"lun": {"id": None}})
    assert kube.disks["d"]["status"] == {"lun": {"naa": "n"}}
    assert kube.disks["d"]["metadata"]["generation"] == 1
    assert (await kube.patch_spec("d", {"nodeName": "n1"})).metadata.generation == 2
    kube.add_finalizer(VIRTUAL_DISK_PLURAL, "d", "f")
    await kube.delete("d")
    assert (await kube.get("d")).metadata.deletion_timestamp
    kube.remove_finalizer(VIRTUAL_DISK_PLURAL, "d", "f")
    assert await kube.list() == []
    kube.add_node("n1", "vsphere://x")
    assert (await kube.node("n1"))["spec"]["provider_id"] == "vsphere://x"
    assert await kube.node_by_id("vsphere://x") == "n1"
