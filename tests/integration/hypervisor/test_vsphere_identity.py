"""A VM is found by its Node's providerID in any letter case (vcsim's FindByUuid is
case-sensitive), by BIOS UUID, instance UUID or name; its initiators are exactly its host's
FC WWPNs and iSCSI IQN as the simulator holds them, or its cluster's."""

from __future__ import annotations

import pytest

from lunbridge import san
from lunbridge.errors import NotFound
from lunbridge.hypervisor.base import Initiator, Scope
from lunbridge.hypervisor.vsphere import VSphere
from lunbridge.san import Transport
from tests.lab import vcsim as vcsim_lab


def expected(host: vcsim_lab.Host) -> set[tuple[Transport, str, str, str | None]]:
    fc = {(Transport.FCP, san.wwn(p.wwpn), p.device, san.wwn(p.wwnn)) for p in host.fc}
    return fc | {(Transport.ISCSI, host.iqn, host.iscsi_device, None)}


def seen(initiators: list[Initiator]) -> set[tuple[Transport, str, str, str | None]]:
    return {(i.transport, i.address, i.adapter, i.node_name) for i in initiators}


async def test_find_vm_by_provider_id_in_any_case_uuids_and_name(
    vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer
) -> None:
    info = vcsim.inventory.vms[0]
    host = vcsim.inventory.host(info.host)
    refs = [
        f"vsphere://{info.bios_uuid}",
        f"vsphere://{info.bios_uuid.upper()}",
        f"VSphere://{info.bios_uuid[:9].upper()}{info.bios_uuid[9:]}",
        info.bios_uuid.upper(),
        info.instance_uuid,
        info.name,
    ]
    for ref in refs:
        vm = await vsphere.find_vm(ref)
        assert (vm.name, vm.id, vm.bios_uuid) == (info.name, info.moref, info.bios_uuid), ref
        assert vm.instance_uuid == info.instance_uuid
        assert (vm.host.name, vm.host.id, vm.host.cluster) == (host.name, host.moref, host.cluster)


async def test_standalone_host_has_no_cluster(vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer) -> None:
    standalone = next(h for h in vcsim.inventory.hosts if h.cluster is None)
    info = next(vm for vm in vcsim.inventory.vms if vm.host == standalone.name)
    vm = await vsphere.find_vm(f"vsphere://{info.bios_uuid}")
    assert (vm.host.name, vm.host.cluster) == (standalone.name, None)


async def test_unknown_vm_is_not_found(vsphere: VSphere) -> None:
    missing = "4230ffff-0000-1111-2222-333344445555"
    with pytest.raises(NotFound, match=rf"no VM with BIOS UUID {missing} in vCenter https://"):
        await vsphere.find_vm(f"vsphere://{missing.upper()}")
    with pytest.raises(NotFound, match="named 'no-such-vm'"):
        await vsphere.find_vm("no-such-vm")


async def test_host_initiators_are_the_inventorys(vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer) -> None:
    for info in vcsim.inventory.vms:
        if info.name.endswith("_VM0"):
            vm = await vsphere.find_vm(info.name)
            got = await vsphere.host_initiators(vm.host)
            assert seen(got) == expected(vcsim.inventory.host(info.host))
            assert {i.host for i in got} == {info.host}


async def test_vm_initiators_with_host_scope_are_exactly_its_hosts(
    vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer
) -> None:
    info = next(vm for vm in vcsim.inventory.vms if vcsim.inventory.host(vm.host).cluster is not None)
    vm = await vsphere.find_vm(f"vsphere://{info.bios_uuid}")
    got = await vsphere.vm_initiators(vm, Scope.HOST)
    assert len(got) == 3
    assert seen(got) == expected(vcsim.inventory.host(info.host))


async def test_vm_initiators_with_cluster_scope_are_exactly_its_clusters(
    vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer
) -> None:
    info = next(vm for vm in vcsim.inventory.vms if vcsim.inventory.host(vm.host).cluster is not None)
    cluster = vcsim.inventory.host(info.host).cluster
    members = [h for h in vcsim.inventory.hosts if h.cluster == cluster]
    assert len(members) == 3
    vm = await vsphere.find_vm(f"vsphere://{info.bios_uuid}")
    got = await vsphere.vm_initiators(vm, Scope.CLUSTER)
    assert seen(got) == set().union(*(expected(h) for h in members))
    assert len(got) == 3 * len(members)
    assert {i.host for i in got} == {h.name for h in members}


async def test_vm_on_a_standalone_host_gets_only_its_host_in_cluster_scope(
    vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer
) -> None:
    standalone = next(h for h in vcsim.inventory.hosts if h.cluster is None)
    info = next(vm for vm in vcsim.inventory.vms if vm.host == standalone.name)
    vm = await vsphere.find_vm(info.name)
    got = await vsphere.vm_initiators(vm, Scope.CLUSTER)
    assert seen(got) == expected(standalone)


async def test_find_host_and_its_cluster(vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer) -> None:
    clustered = [h for h in vcsim.inventory.hosts if h.cluster]
    standalone = next(h for h in vcsim.inventory.hosts if not h.cluster)
    host = await vsphere.find_host(clustered[0].name)
    assert (host.name, host.cluster) == (clustered[0].name, clustered[0].cluster)
    assert [h.name for h in await vsphere.cluster_hosts(host)] == sorted(h.name for h in clustered)
    alone = await vsphere.find_host(standalone.name)
    assert await vsphere.cluster_hosts(alone) == [alone]
    with pytest.raises(NotFound, match="no host named 'nowhere'"):
        await vsphere.find_host("nowhere")
