"""The libvirt layer names the lab's KVM guest and host the way the rest of lunbridge needs:
found by providerID in any case (the SMBIOS UUID the guest itself reads), ids a router can
tell from vSphere's, one host with the configured IQN, portals checked before they are kept."""

from __future__ import annotations

import uuid

import pytest

from lunbridge.errors import NotFound, Unavailable
from lunbridge.hypervisor.base import Initiator, Scope
from lunbridge.hypervisor.libvirt import Libvirt, is_libvirt_id
from lunbridge.san import Transport
from tests.lab import procs
from tests.lab.lab import LabState
from tests.lab.libvirt import DOMAIN, LibvirtGuest


async def test_find_vm_by_upper_case_provider_id_is_the_guest_it_names(
    kvm: Libvirt, lab: LabState, kvm_guest: LibvirtGuest
) -> None:
    vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid.upper()}")
    assert (vm.name, vm.bios_uuid, vm.id) == (DOMAIN, lab.guest_uuid, f"libvirt:{lab.guest_uuid}")
    assert is_libvirt_id(vm.id)
    assert is_libvirt_id(vm.host.id)
    assert vm.host.cluster is None
    # the UUID lunbridge matched is what the guest reads from DMI (its node plugin's providerID)
    product_uuid = kvm_guest.run("cat /sys/class/dmi/id/product_uuid", timeout=30, check=True).stdout
    assert product_uuid.strip().lower() == vm.bios_uuid
    assert await kvm.find_vm(DOMAIN) == vm
    assert await kvm.find_vm(vm.id) == vm


async def test_unknown_vm_is_not_found(kvm: Libvirt) -> None:
    with pytest.raises(NotFound, match=r"no domain with UUID .*libvirt://<domain UUID>"):
        await kvm.find_vm(f"libvirt://{uuid.uuid4()}")
    with pytest.raises(NotFound):
        await kvm.find_vm("no-such-domain")


async def test_the_host_and_its_initiators(kvm: Libvirt, lab: LabState) -> None:
    vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid}")
    host = vm.host
    assert host.id == f"libvirt:{lab.libvirt_uri}"
    assert await kvm.find_host(host.name) == host
    assert await kvm.cluster_hosts(host) == [host]
    initiators = await kvm.host_initiators(host)
    assert initiators[0] == Initiator(Transport.ISCSI, lab.host_iqn, host.name, adapter="iscsi")
    assert all(i.transport is Transport.FCP for i in initiators[1:])  # FC ports only if the host has any
    assert await kvm.vm_initiators(vm, Scope.CLUSTER) == initiators
    await kvm.rescan(host)  # nothing to do on a KVM host, and no error
    with pytest.raises(NotFound, match="no host named"):
        await kvm.find_host("not-this-host")


async def test_a_portal_is_kept_only_when_it_answers(kvm: Libvirt, lab: LabState) -> None:
    host = (await kvm.find_vm(f"libvirt://{lab.guest_uuid}")).host
    dead = f"127.0.0.1:{procs.free_port()}"
    with pytest.raises(Unavailable, match=f"portal {dead} cannot be reached"):
        await kvm.ensure_iscsi_portal([host], dead)
    await kvm.ensure_iscsi_portal([host], lab.tgt.portal)
    await kvm.ensure_iscsi_portal([host], lab.tgt.portal)
    assert kvm.portals == [lab.tgt.portal]
