"""`VSphere`: the `Hypervisor` protocol on vCenter.

This is where the steps of `inventory` and `rdm` are put in order and guarded against
concurrency: one asyncio lock per VM around every device change (devices are read inside
it, so two attaches never pick the same unit), and one rescan at a time per host, shared by
every caller that asked while it was queued (a rescan of a host costs seconds per hundred
LUNs, so twenty attaches must not cause twenty rescans). Attaches that queue on a VM's lock
go in together: the next holder adds them all in one reconfigure (twenty disks applied to a
VM at once: one task and two device reads where one each took one task and three reads).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from lunbridge import san
from lunbridge.concurrency import Coalescer, KeyedLocks
from lunbridge.errors import Conflict, LimitExceeded, LunbridgeError, NotFound, Unavailable
from lunbridge.hypervisor.base import Host, Initiator, LunDisk, Scope, Vm
from lunbridge.hypervisor.vsphere import inventory, rdm
from lunbridge.hypervisor.vsphere.config import VSphereConfig
from lunbridge.hypervisor.vsphere.host_luns import HostLunLists
from lunbridge.hypervisor.vsphere.mirror import InventoryMirror
from lunbridge.hypervisor.vsphere.refs import parse_portal, parse_vm_ref
from lunbridge.hypervisor.vsphere.session import Session, TaskStillRunning
from lunbridge.hypervisor.vsphere.slots import (
    RdmAttachment,
    Slot,
    VmDevices,
    describe_slot,
    next_slot,
    plan_slots,
    rdm_naa,
    rdms_of,
    summarize,
)
from lunbridge.pooled import SessionClient

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Attach:
    """One caller's RDM attach, waiting for its VM's next reconfigure: the LUN as the VM's host
    lists it, or why the host does not (raised unless the RDM exists already)."""

    naa: str
    lun: rdm.HostLun | None
    refused: Conflict | None
    result: asyncio.Future[RdmAttachment] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _unheard(result: asyncio.Future[RdmAttachment]) -> None:
    """Take the answer of an attach whose caller was cancelled (asyncio would log it as lost)."""
    if not result.cancelled():
        result.exception()


class VSphere(SessionClient):
    """vCenter through pyvmomi. Make it with `await VSphere.connect(config)` (which logs in,
    so bad credentials fail at once) and `await close()` it."""

    def __init__(
        self, config: VSphereConfig, *, workers: int = 8, task_timeout: float = 600.0, mirror: bool = True
    ) -> None:
        self.session: Session = Session(config, workers=workers, task_timeout=task_timeout)
        # answers the identity questions without a SOAP call while it is current (None: ask vCenter)
        self.mirror: InventoryMirror | None = InventoryMirror(self.session) if mirror else None
        self._vm_locks = KeyedLocks[str]()
        self._rescans = Coalescer[str]()  # per host id
        self._host_luns = HostLunLists(self.session)  # per host: its LUN list and SCSI topology
        self._attaches: dict[str, list[_Attach]] = {}  # per VM id: attaches waiting for its lock

    def __repr__(self) -> str:
        return f"VSphere({self.session!r})"

    @classmethod
    async def connect(
        cls, config: VSphereConfig, *, workers: int = 8, task_timeout: float = 600.0, mirror: bool = True
    ) -> VSphere:
        """Log in (errors at once on a wrong address or credentials), then start following the
        inventory (`mirror`; without it every identity question is a SOAP call)."""
        client = await cls(config, workers=workers, task_timeout=task_timeout, mirror=mirror)._connected()
        if client.mirror is not None:
            client.mirror.start()
        return client

    async def _prove(self) -> None:
        await self.session.run("log in", lambda api: None)

    async def close(self) -> None:
        if self.mirror is not None:
            await asyncio.to_thread(self.mirror.close)
        await super().close()

    # --- identity ---
    async def find_vm(self, ref: str) -> Vm:
        query = parse_vm_ref(ref)
        if query.uuid is not None and self.mirror is not None:
            found = self.mirror.vm_by_uuid(query.uuid, query.bios_only)
            if found is not None:
                return found
        url = self.session.config.url
        return await self.session.run(
            f"find the VM {query.describe()}", lambda api: inventory.find_vm(api, query, url)
        )

    async def _refresh(self, vm: Vm) -> Vm:
        if self.mirror is not None and (found := self.mirror.vm(vm.id)) is not None:
            return found
        return await self.session.run(f"read VM {vm.name}", lambda api: inventory.current_vm(api, vm.id))

    async def find_host(self, name: str) -> Host:
        if self.mirror is not None and (found := self.mirror.host_named(name)) is not None:
            return found
        url = self.session.config.url
        return await self.session.run(f"find host {name}", lambda api: inventory.find_host(api, name, url))

    def follow_placement(self, changed: Callable[[], None]) -> None:
        """`PlacementFollower`: through the inventory mirror (nothing without one)."""
        if self.mirror is not None:
            self.mirror.listeners.append(changed)

    async def cluster_hosts(self, host: Host) -> list[Host]:
        if self.mirror is not None and (found := self.mirror.cluster_hosts(host.id)) is not None:
            return found
        return await self.session.run(
            f"list the hosts of {host.name}'s cluster", lambda api: inventory.cluster_hosts(api, host)
        )

    # --- initiators ---
    async def host_initiators(self, host: Host) -> list[Initiator]:
        if self.mirror is not None and (adapters := self.mirror.adapters(host.id)) is not None:
            return inventory.initiators_of(host, adapters)
        return await self.session.run(
            f"read the storage adapters of host {host.name}", lambda api: inventory.host_initiators(api, host)
        )

    async def vm_initiators(self, vm: Vm, scope: Scope) -> list[Initiator]:
        host = (await self._refresh(vm)).host
        hosts = await self.cluster_hosts(host) if scope is Scope.CLUSTER else [host]
        found = await asyncio.gather(*(self.host_initiators(h) for h in hosts))
        return [initiator for per_host in found for initiator in per_host]

    # --- iSCSI discovery and rescans ---
    async def ensure_iscsi_portal(self, hosts: list[Host], portal: str) -> None:
        target = parse_portal(portal)

        async def one(host: Host) -> None:
            known = self.mirror.adapters(host.id) if self.mirror is not None else None
            if known is not None and inventory.has_send_target(known, target):
                return
            changed = await self.session.run(
                f"add send target {target} to host {host.name}",
                lambda api: inventory.ensure_send_target(api, host, target),
            )
            if changed:
                log.info("host %s: added iSCSI send target %s to %s", host.name, target, ", ".join(changed))

        await asyncio.gather(*(one(host) for host in hosts))

    async def rescan(self, host: Host, adapter: str | None = None) -> None:
        if adapter is not None:
            await self.session.run(
                f"rescan adapter {adapter} of host {host.name}",
                lambda api: inventory.rescan(api, host, adapter),
            )
        else:
            system = self.mirror.storage_system(host.id) if self.mirror is not None else None
            what = f"rescan the HBAs of host {host.name}"
            await self._rescans.run(
                host.id, lambda: self.session.run(what, lambda api: inventory.rescan(api, host, None, system))
            )
        self._host_luns.rescanned(host.id)

    # --- raw device mappings ---
    def _lock(self, vm: Vm) -> AbstractAsyncContextManager[None]:
        return self._vm_locks.hold(vm.id)

    async def _devices(self, vm: Vm) -> VmDevices:
        model, _ = await self.session.run(
            f"read the devices of VM {vm.name}", lambda api: rdm.read_devices(api, vm.id)
        )
        return model

    def _attachment(self, vm: Vm, devices: VmDevices, naa: str) -> RdmAttachment | None:
        found = rdms_of(devices, naa)
        if not found:
            return None
        disk = min(found, key=lambda r: r.key)
        controller = devices.controller(disk.controller_key)
        if controller is None:
            raise Conflict(
                f"VM {vm.name}: RDM disk {disk.key} of {naa} sits on unknown controller {disk.controller_key}"
            )
        return RdmAttachment(
            vm=vm.id,
            naa=naa,
            pci_slot=controller.pci_slot,
            controller_key=controller.key,
            bus_number=controller.bus,
            unit_number=disk.unit,
            disk_key=disk.key,
        )

    async def sees_lun(self, host: Host, naa: str, *, within: float = 0.0) -> bool:
        return await self._host_luns.sees(host, san.naa(naa), within)

    async def _visible_lun(self, host: Host, naa: str) -> rdm.HostLun:
        lun = await self._host_luns.lun(host, naa)
        if lun is None:
            await self.rescan(host)
            lun = await self._host_luns.lun(host, naa)
        if lun is None:
            raise Conflict(
                f"LUN {naa} is not visible to host {host.name} even after a rescan of its HBAs: the LUN "
                f"is not mapped (masked) to an initiator group holding this host's initiators; fix the "
                f"igroup/LUN mapping on the storage server (and the host's iSCSI send targets)"
            )
        return lun

    async def attach_rdm(self, vm: Vm, naa: str) -> RdmAttachment:
        naa = san.naa(naa)
        current = await self._refresh(vm)  # the host now, not when `vm` was looked up
        try:
            request = _Attach(naa, await self._visible_lun(current.host, naa), None)
        except Conflict as exc:  # unless the RDM exists already
            request = _Attach(naa, None, exc)
        self._attaches.setdefault(vm.id, []).append(request)
        try:
            async with self._lock(vm):
                if not request.result.done():
                    await self._attach_waiting(vm)
        except asyncio.CancelledError:
            waiting = self._attaches.get(vm.id, [])
            if request in waiting:  # not taken yet: nobody attaches it
                waiting.remove(request)
                if not waiting:
                    del self._attaches[vm.id]
            else:  # taken: it is answered later, to nobody
                request.result.add_done_callback(_unheard)
            raise
        return request.result.result()

    async def _attach_waiting(self, vm: Vm) -> None:
        """Attach every request waiting for `vm` (under its lock): one device read, then one
        reconfigure for as many as one can add, then one read that tells each where it went.
        Each request gets its attachment or its own error; one that nothing answered (this
        coroutine cancelled) gets Unavailable, so its caller retries."""
        batch = self._attaches.pop(vm.id, [])
        try:
            todo = [r for r in batch if not r.result.done()]
            devices = await self._devices(vm)
            while todo:
                for request in todo:
                    if not self._settle(vm, devices, request) and request.refused is not None:
                        request.result.set_exception(request.refused)
                todo = [r for r in todo if not r.result.done()]
                if not todo:
                    return
                try:
                    slots = plan_slots(devices, len(todo), vm.name)
                except LimitExceeded as exc:
                    for request in todo:
                        request.result.set_exception(exc)
                    return
                placed = todo[: len(slots)]
                devices = await self._add_rdms(vm, list(zip(slots, placed, strict=False)))
                todo = todo[len(slots) :]
        except LunbridgeError as exc:  # the VM's devices cannot be read: every waiting attach says so
            for request in batch:
                if not request.result.done():
                    request.result.set_exception(exc)
        finally:
            for request in batch:
                if not request.result.done():
                    request.result.set_exception(
                        Unavailable(f"the attach of {request.naa} to VM {vm.name} was interrupted; retry")
                    )

    async def _add_rdms(self, vm: Vm, placed: list[tuple[Slot, _Attach]]) -> VmDevices:
        """One reconfigure adding every placed LUN; each placed request gets its attachment, or
        the error of its own reconfigure when the shared one failed (vCenter applies a
        reconfigure whole or not at all, so one bad LUN must not fail the others). The VM's
        devices after it."""
        if len(placed) == 1:
            what = f"attach LUN {placed[0][1].naa} to VM {vm.name} at {describe_slot(placed[0][0])}"
        else:
            where = ", ".join(f"{r.naa} at {describe_slot(slot)}" for slot, r in placed)
            what = f"attach {len(placed)} LUNs to VM {vm.name} ({where})"
        luns = [(slot, r.lun) for slot, r in placed if r.lun is not None]  # all: refused ones are answered
        try:
            task = await self.session.run(what, lambda api: rdm.add_rdms(api, vm.id, luns))
            await self.session.wait_task(task, what)
        except LunbridgeError as exc:
            if len(placed) == 1 or isinstance(exc, TaskStillRunning):  # (it may yet add them all)
                for _, request in placed:
                    request.result.set_exception(exc)
                return await self._devices(vm)
            devices = await self._devices(vm)
            for _, request in placed:  # one by one: each gets its own answer
                if self._settle(vm, devices, request):
                    continue
                try:
                    slot = next_slot(devices, vm.name)
                except LimitExceeded as full:
                    request.result.set_exception(full)
                    continue
                devices = await self._add_rdms(vm, [(slot, request)])
            return devices
        devices = await self._devices(vm)
        for _, request in placed:
            if not self._settle(vm, devices, request):
                request.result.set_exception(
                    Conflict(f"cannot {what}: the task succeeded but the VM shows no RDM of {request.naa}")
                )
            elif request.result.exception() is None:
                where = request.result.result().describe()
                log.info("attached %s to VM %s at %s", request.naa, vm.name, where)
        return devices

    def _settle(self, vm: Vm, devices: VmDevices, request: _Attach) -> bool:
        """Answer `request` when `devices` hold its LUN's RDM (its attachment, or the Conflict
        of an RDM on an unknown controller); False when they do not hold it."""
        try:
            existing = self._attachment(vm, devices, request.naa)
        except Conflict as exc:
            request.result.set_exception(exc)
            return True
        if existing is not None:
            request.result.set_result(existing)
        return existing is not None

    async def list_lun_disks(self) -> list[LunDisk]:
        """Every RDM of every VM vCenter shows this account, by the NAA of its LUN."""
        found = await self.session.run("list the RDMs of every VM", rdm.list_rdms)
        disks: dict[tuple[str, str], LunDisk] = {}
        for vm, disk in found:
            naa = rdm_naa(disk)
            if naa is not None and (vm.id, naa) not in disks:
                where = f"RDM disk {disk.key} on controller {disk.controller_key} unit {disk.unit}"
                disks[(vm.id, naa)] = LunDisk(vm, naa, where)
        return list(disks.values())

    async def detach_rdm(self, vm: Vm, naa: str) -> None:
        naa = san.naa(naa)
        async with self._lock(vm):
            try:
                model, raw = await self.session.run(
                    f"read the devices of VM {vm.name}", lambda api: rdm.read_devices(api, vm.id)
                )
            except NotFound:
                log.info("VM %s (%s) no longer exists: nothing to detach %s from", vm.name, vm.id, naa)
                return  # a deleted VM holds no disk; its host is rescanned when the LUN is unmapped
            found = rdms_of(model, naa)
            if found:
                what = f"detach LUN {naa} ({summarize(found)}) from VM {vm.name}"
                devices = [raw[r.key] for r in found]
                task = await self.session.run(what, lambda api: rdm.remove_rdms(api, vm.id, devices))
                await self.session.wait_task(task, what)
                log.info("detached %s from VM %s (%s)", naa, vm.name, summarize(found))
        await self.rescan((await self._refresh(vm)).host)
