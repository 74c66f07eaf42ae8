"""Several virtualization layers behind one `Hypervisor`.

A cluster may run nodes on vSphere and on KVM hosts at once. The scheme of a Node's
providerID (`vsphere://`, `libvirt://`) picks the layer that finds its VM; every VM or host a
layer returned is remembered, so later calls about it go back to the same layer. The operator
talks to this router and never needs to know which hypervisor a node runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from lunbridge.errors import InvalidArgument, NotFound
from lunbridge.hypervisor.base import (
    Attachment,
    Host,
    Hypervisor,
    Initiator,
    LunDisk,
    LunDiskLister,
    PlacementFollower,
    Scope,
    Vm,
)


class Router:
    """`Hypervisor` over layers keyed by providerID scheme, e.g. {"vsphere": ..., "libvirt": ...}."""

    def __init__(self, layers: Mapping[str, Hypervisor]) -> None:
        if not layers:
            raise InvalidArgument("no hypervisor is configured: give at least one (vSphere or libvirt)")
        self.layers = dict(layers)
        self._owners: dict[tuple[str, str], Hypervisor] = {}

    def _remember(self, layer: Hypervisor, *, vm: Vm | None = None, hosts: Sequence[Host] = ()) -> None:
        if vm is not None:
            self._owners[("vm", vm.id)] = layer
            self._owners[("host", vm.host.id)] = layer
        for host in hosts:
            self._owners[("host", host.id)] = layer

    def _owner(self, kind: str, ident: str, name: str) -> Hypervisor:
        layer = self._owners.get((kind, ident))
        if layer is None:
            raise NotFound(
                f"{kind} {name} ({ident}) was not found through any configured hypervisor; look it up first"
            )
        return layer

    async def find_vm(self, ref: str) -> Vm:
        scheme, sep, _ = ref.partition("://")
        if sep:
            layer = self.layers.get(scheme.lower())
            if layer is None:
                raise NotFound(
                    f"providerID {ref!r} is for {scheme!r}, but only {', '.join(sorted(self.layers))} "
                    "is configured; configure that hypervisor or fix the Node's providerID"
                )
            candidates = [layer]
        else:
            candidates = list(self.layers.values())
        last: NotFound | None = None
        for layer in candidates:
            try:
                vm = await layer.find_vm(ref)
            except NotFound as exc:
                last = exc
                continue
            self._remember(layer, vm=vm)
            return vm
        assert last is not None
        raise last

    async def find_host(self, name: str) -> Host:
        last: NotFound | None = None
        for layer in self.layers.values():
            try:
                host = await layer.find_host(name)
            except NotFound as exc:
                last = exc
                continue
            self._remember(layer, hosts=[host])
            return host
        assert last is not None
        raise last

    async def cluster_hosts(self, host: Host) -> list[Host]:
        layer = self._owner("host", host.id, host.name)
        hosts = await layer.cluster_hosts(host)
        self._remember(layer, hosts=hosts)
        return hosts

    async def host_initiators(self, host: Host) -> list[Initiator]:
        return await self._owner("host", host.id, host.name).host_initiators(host)

    async def vm_initiators(self, vm: Vm, scope: Scope) -> list[Initiator]:
        return await self._owner("vm", vm.id, vm.name).vm_initiators(vm, scope)

    async def ensure_iscsi_portal(self, hosts: list[Host], portal: str) -> None:
        for host in hosts:
            await self._owner("host", host.id, host.name).ensure_iscsi_portal([host], portal)

    async def rescan(self, host: Host, adapter: str | None = None) -> None:
        await self._owner("host", host.id, host.name).rescan(host, adapter)

    async def sees_lun(self, host: Host, naa: str, *, within: float = 0.0) -> bool:
        return await self._owner("host", host.id, host.name).sees_lun(host, naa, within=within)

    async def attach_rdm(self, vm: Vm, naa: str) -> Attachment:
        return await self._owner("vm", vm.id, vm.name).attach_rdm(vm, naa)

    async def detach_rdm(self, vm: Vm, naa: str) -> None:
        await self._owner("vm", vm.id, vm.name).detach_rdm(vm, naa)

    async def list_lun_disks(self) -> list[LunDisk]:
        """The LUN disks of every layer's VMs (each VM remembered, so a detach finds its layer);
        InvalidArgument if a configured layer cannot list them."""
        found: list[LunDisk] = []
        for name, layer in self.layers.items():
            if not isinstance(layer, LunDiskLister):
                raise InvalidArgument(f"the {name} hypervisor layer cannot list the LUN disks of its VMs")
            disks = await layer.list_lun_disks()
            for disk in disks:
                self._remember(layer, vm=disk.vm)
            found += disks
        return found

    def follow_placement(self, changed: Callable[[], None]) -> None:
        """`PlacementFollower`: every layer that can tell."""
        for layer in self.layers.values():
            if isinstance(layer, PlacementFollower):
                layer.follow_placement(changed)

    async def close(self) -> None:
        for layer in self.layers.values():
            await layer.close()
