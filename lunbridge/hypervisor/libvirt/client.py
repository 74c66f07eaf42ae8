"""`Libvirt`: the `Hypervisor` protocol on one KVM host, through libvirt.

How the protocol's vSphere-shaped steps map onto a KVM host:

- one libvirt URI is one host (`Host.id` = `libvirt:<uri>`, no cluster); VMs are its domains
  (`Vm.id` = `libvirt:<domain uuid>`, found by providerID `libvirt://<uuid>`, UUID or name);
- the host's initiators are the iSCSI IQN it is configured with (QEMU's initiator logs in with
  it) and the WWPNs of its FC `scsi_host` node devices;
- `ensure_iscsi_portal` remembers the portal (after checking it is reachable from here, where
  discoveries run): libvirt has no send-target list, each disk names its portal;
- `rescan` has nothing to do: the host never holds a list of LUNs to refresh, QEMU logs in
  per disk when it is attached;
- `attach_rdm` finds the target and LUN that carry the NAA by an iSCSI discovery as the host
  (see `discovery`), then hot-plugs a `<disk type='network' device='lun'>` (SCSI passthrough:
  the guest sees the LUN's own NAA and serial, like a physical-mode RDM) at an explicit
  address on a virtio-scsi controller (see `slots`).

Concurrency: one asyncio lock per VM around every device change (the domain is re-read inside
it, so two attaches never pick the same address); one discovery at a time, shared by every
caller that asked while it was queued; blocking calls run in the session's bounded pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from contextlib import AbstractAsyncContextManager

from lunbridge import san
from lunbridge.concurrency import Coalescer, KeyedLocks
from lunbridge.errors import Busy, Conflict, NotFound, Unavailable
from lunbridge.hypervisor.base import Host, Initiator, LunDisk, Scope, Vm
from lunbridge.hypervisor.libvirt import inventory
from lunbridge.hypervisor.libvirt.config import LibvirtConfig
from lunbridge.hypervisor.libvirt.discovery import Libiscsi, LunAddress
from lunbridge.hypervisor.libvirt.domain import (
    DomainDevices,
    controller_xml,
    disk_xml,
    disks_of,
    free_disk_name,
)
from lunbridge.hypervisor.libvirt.refs import Portal, VmQuery, host_id, parse_portal, parse_vm_ref
from lunbridge.hypervisor.libvirt.session import Session
from lunbridge.hypervisor.libvirt.slots import Limits, PassthroughAttachment, next_slot
from lunbridge.pooled import SessionClient
from lunbridge.san import Transport

log = logging.getLogger(__name__)

ISCSI_ADAPTER = "iscsi"  # Initiator.adapter of the host's (QEMU's) iSCSI initiator


class Libvirt(SessionClient):
    """One KVM host through libvirt. Make it with `await Libvirt.connect(config)` (which
    connects, so a wrong URI fails at once) and `await close()` it."""

    def __init__(
        self,
        config: LibvirtConfig,
        *,
        workers: int = 4,
        detach_timeout: float = 30.0,
        iscsi: Libiscsi | None = None,
    ) -> None:
        self.config = config
        self.session: Session = Session(config.uri, workers=workers)
        self.limits = Limits(config.max_controllers, config.targets_per_controller, config.units_per_target)
        self.iscsi = iscsi or Libiscsi(
            config.host_iqn, config.tool_timeout, ls=config.iscsi_ls, inq=config.iscsi_inq
        )
        self.detach_timeout = detach_timeout
        self._portals: dict[str, Portal] = {}
        for text in config.portals:
            portal = parse_portal(text)
            self._portals[str(portal)] = portal
        self._host: Host | None = None
        self._vm_locks = KeyedLocks[str]()
        self._luns: dict[str, LunAddress] = {}  # NAA → where the host found it; checked before use
        self._discoveries = Coalescer[str]()  # one key: this host's URI
        self.discoveries = 0  # full discoveries run (for tests and metrics)

    def __repr__(self) -> str:
        return f"Libvirt(uri={self.config.uri!r}, host_iqn={self.config.host_iqn!r})"

    @classmethod
    async def connect(
        cls,
        config: LibvirtConfig,
        *,
        workers: int = 4,
        detach_timeout: float = 30.0,
        iscsi: Libiscsi | None = None,
    ) -> Libvirt:
        return await cls(config, workers=workers, detach_timeout=detach_timeout, iscsi=iscsi)._connected()

    async def _prove(self) -> None:
        await self.host()

    @property
    def portals(self) -> list[str]:
        """The iSCSI portals this layer discovers LUNs at."""
        return list(self._portals)

    # --- identity ---
    async def host(self) -> Host:
        """The one host this connection manages (its name read once from libvirt)."""
        if self._host is None:
            name = self.config.host_name
            if name is None:
                name = await self.session.run("read the host name", inventory.hostname)
            self._host = Host(name=name, id=host_id(self.config.uri), cluster=None)
        return self._host

    def _own(self, host: Host) -> None:
        if host.id != host_id(self.config.uri):
            raise NotFound(
                f"host {host.name} ({host.id}) is not the host of libvirt {self.config.uri}; "
                "this libvirt layer manages exactly one host"
            )

    async def find_vm(self, ref: str) -> Vm:
        query = parse_vm_ref(ref)
        host = await self.host()
        uri = self.config.uri
        return await self.session.run(
            f"find the domain {query.describe()}", lambda conn: inventory.find_vm(conn, query, host, uri)
        )

    async def _refresh(self, vm: Vm) -> Vm:
        """`vm` as it is now (NotFound if its domain is gone)."""
        host = await self.host()
        query, uri = VmQuery(uuid=vm.bios_uuid), self.config.uri
        return await self.session.run(
            f"read domain {vm.name}", lambda conn: inventory.find_vm(conn, query, host, uri)
        )

    async def find_host(self, name: str) -> Host:
        host = await self.host()
        if name.strip().lower() != host.name.lower():
            raise NotFound(
                f"no host named {name!r} behind libvirt {self.config.uri} (its host is {host.name}); "
                "check the InitiatorGroup's spec.hosts"
            )
        return host

    async def cluster_hosts(self, host: Host) -> list[Host]:
        self._own(host)
        return [host]  # libvirt has no clusters: a host is its own scope

    # --- initiators ---
    async def host_initiators(self, host: Host) -> list[Initiator]:
        self._own(host)
        ports = await self.session.run(f"list the FC ports of host {host.name}", inventory.fc_ports)
        found = [Initiator(Transport.ISCSI, self.config.host_iqn, host.name, adapter=ISCSI_ADAPTER)]
        found += [
            Initiator(Transport.FCP, port.wwpn, host.name, adapter=port.adapter, node_name=port.wwnn)
            for port in ports
        ]
        return found

    async def vm_initiators(self, vm: Vm, scope: Scope) -> list[Initiator]:
        current = await self._refresh(vm)
        return await self.host_initiators(current.host)  # host and cluster scope are one host here

    # --- iSCSI portals; rescans ---
    async def ensure_iscsi_portal(self, hosts: list[Host], portal: str) -> None:
        """Remember `portal` for discoveries, once it is known to be reachable from here."""
        target = parse_portal(portal)
        for host in hosts:
            self._own(host)
        if str(target) in self._portals:
            return
        await self.iscsi.check_portal(target)
        self._portals[str(target)] = target
        log.info("libvirt %s: remembered iSCSI portal %s", self.config.uri, target)

    async def rescan(self, host: Host, adapter: str | None = None) -> None:
        """Nothing to do: a KVM host keeps no list of SAN LUNs to refresh. QEMU's initiator logs
        in for each disk when it is attached, and `attach_rdm` looks the LUN up at the storage
        server itself (a discovery as the host's IQN)."""
        self._own(host)
        if adapter is not None and adapter != ISCSI_ADAPTER:
            adapters = {i.adapter for i in await self.host_initiators(host)}
            if adapter not in adapters:
                raise NotFound(f"host {host.name} has no storage adapter {adapter!r}; rescan all instead")

    # --- LUN discovery ---
    async def _discover(self) -> None:
        """Refresh `_luns` by a discovery that starts after this call (shared with every caller
        that asks while it is queued)."""

        async def discover() -> None:
            found: dict[str, LunAddress] = {}
            for portal in list(self._portals.values()):
                at_portal = await self.iscsi.discover(portal)
                for naa, address in at_portal.items():
                    found.setdefault(naa, address)
            self._luns = found  # LUNs no longer shown to the host are forgotten
            self.discoveries += 1

        await self._discoveries.run(self.config.uri, discover)

    async def sees_lun(self, host: Host, naa: str, *, within: float = 0.0) -> bool:
        """Whether the host's initiator finds LUN `naa` at a known portal (a discovery, shared
        with the callers that ask at once; `within` is not needed: one host per URI)."""
        self._own(host)
        try:
            await self._locate(host, san.naa(naa))
        except Conflict:
            return False
        return True

    async def _locate(self, host: Host, naa: str) -> LunAddress:
        """Where the host's initiator finds LUN `naa`; Conflict if it is not masked to it."""
        if not self._portals:
            raise Conflict(
                f"no iSCSI portal is known for host {host.name}, so LUN {naa} cannot be found; "
                "configure the storage server's portal (ensure_iscsi_portal, LUNBRIDGE_LIBVIRT_PORTALS)"
            )
        cached = self._luns.get(naa)
        if cached is not None:
            if await self.iscsi.holds(cached, naa):
                return cached
            self._luns.pop(naa, None)
        await self._discover()
        found = self._luns.get(naa)
        if found is None:
            raise Conflict(
                f"LUN {naa} is not visible to host {host.name} (iSCSI initiator {self.config.host_iqn}) "
                f"at portal(s) {', '.join(self._portals)}: the LUN is not mapped (masked) to an initiator "
                "group holding this host's initiators; fix the igroup/LUN mapping on the storage server"
            )
        return found

    # --- raw device mappings (passthrough LUNs) ---
    def _lock(self, vm: Vm) -> AbstractAsyncContextManager[None]:
        return self._vm_locks.hold(vm.id)

    async def _state(self, vm: Vm) -> inventory.DomainState:
        return await self.session.run(
            f"read the devices of domain {vm.name}", lambda conn: inventory.read_state(conn, vm)
        )

    def _attachment(
        self, vm: Vm, devices: DomainDevices, naa: str, address: LunAddress | None
    ) -> PassthroughAttachment | None:
        source = (address.target, address.lun) if address is not None else None
        found = [d for d in disks_of(devices, naa, source) if d.address is not None]
        if not found:
            return None
        where = min(d.address for d in found if d.address is not None)
        controller = devices.controller(where.controller)
        return PassthroughAttachment(
            vm=vm.id, naa=naa, pci_slot=controller.pci_slot if controller is not None else None, address=where
        )

    async def attach_rdm(self, vm: Vm, naa: str) -> PassthroughAttachment:
        naa = san.naa(naa)
        existing = self._attachment(vm, (await self._state(vm)).devices, naa, None)  # by alias
        if existing is not None:
            return existing
        host = (await self._refresh(vm)).host
        address = await self._locate(host, naa)
        async with self._lock(vm):
            state = await self._state(vm)  # again, inside the lock: another attach may have run
            existing = self._attachment(vm, state.devices, naa, address)
            if existing is not None:
                return existing
            slot = next_slot(state.occupied, self.limits, vm.name)
            what = f"attach LUN {naa} ({address}) to domain {vm.name} at {slot.describe()}"
            if slot.new_controller:
                xml = controller_xml(slot.address.controller)
                await self.session.run(
                    f"add virtio-scsi controller {slot.address.controller} to domain {vm.name}",
                    lambda conn: inventory.attach_device(conn, vm, xml, state.flags),
                )
                log.info("domain %s: added virtio-scsi controller %d", vm.name, slot.address.controller)
            xml = disk_xml(
                naa,
                slot.address,
                address.portal,
                address.target,
                address.lun,
                self.config.host_iqn,
                free_disk_name(state.occupied.disk_names),
            )
            await self.session.run(what, lambda conn: inventory.attach_device(conn, vm, xml, state.flags))
            attachment = self._attachment(vm, (await self._state(vm)).devices, naa, address)
        if attachment is None:
            raise Conflict(f"cannot {what}: libvirt accepted the disk but the domain shows none for {naa}")
        log.info("attached %s to domain %s at %s", naa, vm.name, attachment.describe())
        return attachment

    async def list_lun_disks(self) -> list[LunDisk]:
        """Every passthrough disk lunbridge attached (known by its alias, which names the NAA)
        on every domain of this host, live or in its definition."""
        host = await self.host()
        domains = await self.session.run(
            f"list the domains of {host.name}", lambda conn: inventory.list_states(conn, host)
        )
        found: list[LunDisk] = []
        for vm, state in domains:
            seen: set[str] = set()
            for view, _ in state.views():
                for device in view.scsi:
                    naa = device.naa
                    if naa is not None and naa not in seen:
                        seen.add(naa)
                        found.append(LunDisk(vm, naa, f"disk {device.target_dev} at {device.address}"))
        return found

    async def detach_rdm(self, vm: Vm, naa: str) -> None:
        naa = san.naa(naa)
        source = await self._verified_source(naa)
        async with self._lock(vm):
            try:
                state = await self._state(vm)
            except NotFound:
                log.info("domain %s (%s) no longer exists: nothing to detach %s from", vm.name, vm.id, naa)
                return
            removed = False
            for view, flag in state.views():
                for disk in disks_of(view, naa, source):
                    what = f"detach LUN {naa} ({disk.target_dev} at {disk.address}) from domain {vm.name}"
                    step = functools.partial(inventory.detach_device, vm=vm, xml=disk.xml, flags=flag)
                    await self.session.run(what, step)
                    removed = True
            if removed:
                await self._wait_detached(vm, naa, source)
                log.info("detached %s from domain %s", naa, vm.name)

    async def _verified_source(self, naa: str) -> tuple[str, int] | None:
        """(target, LUN) where the host finds `naa` now, if a discovery saw it and it is still
        there; a detach then also finds a disk someone attached from there by hand."""
        cached = self._luns.get(naa)
        if cached is None:
            return None
        try:
            held = await self.iscsi.holds(cached, naa)
        except Unavailable as exc:
            log.debug("cannot check %s at %s (%s): detaching lunbridge's disk only", naa, cached, exc)
            return None
        return (cached.target, cached.lun) if held else None

    async def _wait_detached(self, vm: Vm, naa: str, source: tuple[str, int] | None) -> None:
        """Until the running domain no longer shows the disk (QEMU confirms an unplug
        asynchronously; libvirt waits for it only a few seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.detach_timeout
        while True:
            try:
                state = await self._state(vm)
            except NotFound:
                return
            if state.live is None or not disks_of(state.live, naa, source):
                return
            if loop.time() > deadline:
                raise Busy(
                    f"LUN {naa} is still attached to domain {vm.name} {self.detach_timeout:.0f}s after "
                    "the detach request; the guest may still hold it, retry later"
                )
            await asyncio.sleep(0.1)
