"""The router sends each call to the layer that knows the VM or host (fake layers: this is a
unit test of the routing alone; the layers are proven against their real peers elsewhere)."""

from __future__ import annotations

import pytest

from lunbridge.errors import InvalidArgument, NotFound
from lunbridge.hypervisor.base import Attachment, Host, Initiator, Scope, Vm
from lunbridge.hypervisor.router import Router
from lunbridge.hypervisor.vsphere.slots import RdmAttachment
from lunbridge.san import Transport


class FakeLayer:
    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.host = Host(name=f"{scheme}-host", id=f"{scheme}:h1", cluster=None)
        self.vm = Vm(
            name=f"{scheme}-vm", id=f"{scheme}:vm1", bios_uuid="u", instance_uuid=None, host=self.host
        )
        self.calls: list[str] = []

    async def find_vm(self, ref: str) -> Vm:
        if ref.endswith(self.scheme + "-vm") or ref.lower().startswith(self.scheme + "://"):
            return self.vm
        raise NotFound(f"{self.scheme} has no VM {ref}")

    async def find_host(self, name: str) -> Host:
        if name == self.host.name:
            return self.host
        raise NotFound(f"{self.scheme} has no host {name}")

    async def cluster_hosts(self, host: Host) -> list[Host]:
        return [host]

    async def host_initiators(self, host: Host) -> list[Initiator]:
        self.calls.append("host_initiators")
        return [Initiator(Transport.ISCSI, f"iqn.2024-01.test:{self.scheme}", host.name, "vmhba64")]

    async def vm_initiators(self, vm: Vm, scope: Scope) -> list[Initiator]:
        return await self.host_initiators(vm.host)

    async def ensure_iscsi_portal(self, hosts: list[Host], portal: str) -> None:
        self.calls.append("portal")

    async def rescan(self, host: Host, adapter: str | None = None) -> None:
        self.calls.append("rescan")

    async def sees_lun(self, host: Host, naa: str, *, within: float = 0.0) -> bool:
        self.calls.append("sees_lun")
        return True

    async def attach_rdm(self, vm: Vm, naa: str) -> Attachment:
        self.calls.append("attach")
        return RdmAttachment(
            vm.id, naa, None, controller_key=1000, bus_number=0, unit_number=1, disk_key=2000
        )

    async def detach_rdm(self, vm: Vm, naa: str) -> None:
        self.calls.append("detach")

    async def close(self) -> None:
        self.calls.append("close")


async def test_provider_scheme_picks_the_layer_and_later_calls_follow_the_vm() -> None:
    vsphere, libvirt = FakeLayer("vsphere"), FakeLayer("libvirt")
    router = Router({"vsphere": vsphere, "libvirt": libvirt})
    vm = await router.find_vm("LIBVIRT://1234")
    assert vm is libvirt.vm
    await router.rescan(vm.host)
    assert (await router.attach_rdm(vm, "naa.6001")).vm == "libvirt:vm1"
    assert (await router.vm_initiators(vm, Scope.HOST))[0].address == "iqn.2024-01.test:libvirt"
    assert libvirt.calls == ["rescan", "attach", "host_initiators"]
    assert vsphere.calls == []


async def test_unconfigured_scheme_is_a_clear_not_found() -> None:
    router = Router({"vsphere": FakeLayer("vsphere")})
    with pytest.raises(NotFound, match="is for 'libvirt', but only vsphere is configured"):
        await router.find_vm("libvirt://1234")


async def test_plain_names_and_hosts_are_tried_on_every_layer() -> None:
    vsphere, libvirt = FakeLayer("vsphere"), FakeLayer("libvirt")
    router = Router({"vsphere": vsphere, "libvirt": libvirt})
    assert await router.find_vm("libvirt-vm") is libvirt.vm
    host = await router.find_host("vsphere-host")
    await router.ensure_iscsi_portal([host], "127.0.0.1:3260")
    assert vsphere.calls == ["portal"]
    with pytest.raises(NotFound, match="libvirt has no host nowhere"):
        await router.find_host("nowhere")


async def test_objects_it_never_returned_are_refused() -> None:
    router = Router({"vsphere": FakeLayer("vsphere")})
    stranger = Host(name="h", id="x", cluster=None)
    with pytest.raises(NotFound, match="look it up first"):
        await router.rescan(stranger)
    with pytest.raises(InvalidArgument, match="no hypervisor is configured"):
        Router({})
