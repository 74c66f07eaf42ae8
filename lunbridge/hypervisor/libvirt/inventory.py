"""Blocking steps on one libvirt connection: domains by UUID or name, the host's name and FC
ports, a domain's devices (live and next-boot views), and live device changes.

Each function is one step run in the session's worker pool; it takes the connection and
returns the typed dataclasses of `lunbridge.hypervisor.base` or `domain`, so libvirt objects
stop here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lunbridge.errors import Conflict, NotFound
from lunbridge.hypervisor.base import Host, Vm
from lunbridge.hypervisor.libvirt._libvirt import LibvirtError, libvirt
from lunbridge.hypervisor.libvirt.domain import DomainDevices, parse_domain
from lunbridge.hypervisor.libvirt.faults import NOT_FOUND, code_of, unsupported
from lunbridge.hypervisor.libvirt.nodedev import FcPort, parse_fc_host
from lunbridge.hypervisor.libvirt.refs import VmQuery, vm_id

log = logging.getLogger(__name__)


def hostname(conn: Any) -> str:
    return str(conn.getHostname())


def _lookup(conn: Any, query: VmQuery) -> Any | None:
    try:
        if query.uuid is not None:
            return conn.lookupByUUIDString(query.uuid)
        return conn.lookupByName(query.name)
    except LibvirtError as exc:
        if code_of(exc) in NOT_FOUND:
            return None
        raise


def _vm(dom: Any, host: Host) -> Vm:
    uuid = str(dom.UUIDString()).lower()
    return Vm(name=str(dom.name()), id=vm_id(uuid), bios_uuid=uuid, instance_uuid=None, host=host)


def find_vm(conn: Any, query: VmQuery, host: Host, uri: str) -> Vm:
    """The domain `query` asks for; NotFound if this libvirt has none (domain names are unique
    per libvirt, so a name is never ambiguous here)."""
    dom = _lookup(conn, query)
    if dom is None:
        raise NotFound(
            f"no domain {query.describe()} in libvirt {uri}; check the Node's providerID "
            "(libvirt://<domain UUID>) and that the domain runs on this host"
        )
    return _vm(dom, host)


def domain(conn: Any, vm: Vm) -> Any:
    """The libvirt domain of `vm` (by UUID: names can change); NotFound if it is gone."""
    dom = _lookup(conn, VmQuery(uuid=vm.bios_uuid))
    if dom is None:
        raise NotFound(f"domain {vm.name} ({vm.bios_uuid}) no longer exists")
    return dom


@dataclass(frozen=True)
class DomainState:
    """A domain's devices as lunbridge needs them: `live` (None unless it runs) and `config`
    (its definition, None for a transient domain). A new disk goes to both, so it survives a
    restart of a persistent domain the way an RDM does, and must fit both."""

    live: DomainDevices | None
    config: DomainDevices | None

    @property
    def devices(self) -> DomainDevices:
        """Where the domain's disks are now: the live view of a running domain."""
        view = self.live if self.live is not None else self.config
        assert view is not None  # read_state never makes a state without either
        return view

    @property
    def occupied(self) -> DomainDevices:
        """Every controller, address and disk name a new disk must avoid."""
        if self.live is not None and self.config is not None:
            return self.live.merged(self.config)
        return self.devices

    @property
    def flags(self) -> int:
        """How an added device is applied: live, and to the definition of a persistent domain."""
        live = live_flag() if self.live is not None else 0
        return live | (config_flag() if self.config is not None else 0)

    def views(self) -> list[tuple[DomainDevices, int]]:
        """Each view with the flag that changes it alone."""
        out = []
        if self.live is not None:
            out.append((self.live, live_flag()))
        if self.config is not None:
            out.append((self.config, config_flag()))
        return out


def live_flag() -> int:
    return int(libvirt.VIR_DOMAIN_AFFECT_LIVE)


def config_flag() -> int:
    return int(libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def read_state(conn: Any, vm: Vm) -> DomainState:
    state = _state_of(domain(conn, vm))
    if state is None:
        raise Conflict(f"domain {vm.name} is neither running nor defined; nothing can be attached to it")
    return state


def _state_of(dom: Any) -> DomainState | None:
    active, persistent = bool(dom.isActive()), bool(dom.isPersistent())
    live = parse_domain(str(dom.XMLDesc(0))) if active else None
    config = None
    if persistent:
        config = parse_domain(str(dom.XMLDesc(int(libvirt.VIR_DOMAIN_XML_INACTIVE))))
    if live is None and config is None:
        return None
    return DomainState(live=live, config=config)


def list_states(conn: Any, host: Host) -> list[tuple[Vm, DomainState]]:
    """Every domain of this host with its devices (a domain that goes while it is read is
    left out)."""
    found: list[tuple[Vm, DomainState]] = []
    for dom in conn.listAllDomains(0):
        try:
            vm, state = _vm(dom, host), _state_of(dom)
        except LibvirtError as exc:
            if code_of(exc) in NOT_FOUND:
                continue
            raise
        except Conflict as exc:  # one domain's XML lunbridge cannot read: the others still count
            log.warning("cannot read the devices of a domain: %s", exc)
            continue
        if state is not None:
            found.append((vm, state))
    return sorted(found, key=lambda pair: pair[0].name)


def attach_device(conn: Any, vm: Vm, xml: str, flags: int) -> None:
    domain(conn, vm).attachDeviceFlags(xml, flags)


def detach_device(conn: Any, vm: Vm, xml: str, flags: int) -> None:
    """Remove a device (libvirt finds a disk by its target dev). A live detach waits a few
    seconds for QEMU to confirm; the caller re-reads the domain to see it gone."""
    domain(conn, vm).detachDeviceFlags(xml, flags)


def fc_ports(conn: Any) -> list[FcPort]:
    """The host's FC ports (scsi_host node devices with an fc_host capability); none when
    libvirt's node-device driver is not available on this host."""
    try:
        devices = conn.listAllDevices(int(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_FC_HOST))
    except LibvirtError as exc:
        if unsupported(exc):
            log.debug("libvirt lists no node devices (%s): no FC ports reported", exc)
            return []
        raise
    ports = []
    for device in devices:
        port = parse_fc_host(str(device.XMLDesc(0)))
        if port is not None:
            ports.append(port)
    return sorted(ports, key=lambda p: p.adapter)
