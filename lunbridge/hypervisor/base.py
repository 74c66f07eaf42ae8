"""What the operator needs from a hypervisor, independent of which one.

A guest cannot see its host's HBAs, so everything about initiators, rescans and raw device
mappings is asked of the hypervisor through this protocol. Implementations (`vsphere`,
`libvirt`) raise only `lunbridge.errors`; every method is a coroutine and never blocks the
event loop.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lunbridge.san import ScsiAddress, Transport


class Scope(enum.StrEnum):
    """Which hosts a VM's LUNs are masked to: its own host, or every host of its cluster
    (so vMotion/HA keep access)."""

    HOST = "host"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class Initiator:
    """One host initiator, written the way storage servers take it: an IQN, or a WWPN as
    colon-separated lowercase hex (`20:00:00:25:b5:00:00:01`)."""

    transport: Transport
    address: str
    host: str
    adapter: str  # the host's adapter device, e.g. vmhba64
    node_name: str | None = None  # FC WWNN in the same colon form


@dataclass(frozen=True)
class Host:
    name: str
    id: str  # the hypervisor's own reference (vSphere moref; libvirt: `libvirt:<uri>`)
    cluster: str | None


@dataclass(frozen=True)
class Vm:
    name: str
    id: str  # vSphere moref; libvirt: `libvirt:<domain uuid>`
    bios_uuid: str  # lowercase; what the guest reads from DMI
    instance_uuid: str | None
    host: Host


@dataclass(frozen=True)
class Attachment:
    """Where a LUN is attached in the VM: what the guest needs to rescan exactly one address.

    Common to every hypervisor: `pci_slot` (bus 0) of the guest SCSI controller, by which the
    guest finds that controller's SCSI host, and `guest_address` (channel, target, LUN) of the
    disk on it. Each layer subclasses it with its own coordinates (vSphere: controller key,
    bus, unit, disk key; libvirt: controller index, drive bus/target/unit), which `detail`
    returns for diagnostics only: the guest never needs them.
    """

    vm: str  # the Vm.id of the VM (stable while the VM exists; names can change)
    naa: str
    pci_slot: int | None

    @property
    def guest_address(self) -> ScsiAddress:
        raise NotImplementedError

    def detail(self) -> dict[str, int]:
        """The layer's own coordinates of the disk, by their names in that hypervisor's API."""
        return {}

    def describe(self) -> str:
        """Where the disk sits, in the hypervisor's words (for events and messages)."""
        return f"guest address {self.guest_address}"


@dataclass(frozen=True)
class LunDisk:
    """A disk of a VM that is a whole SAN LUN, known by its NAA: an RDM on vSphere, a
    passthrough disk lunbridge attached on libvirt. `where` says where it sits, in the
    hypervisor's words (for messages)."""

    vm: Vm
    naa: str  # canonical `naa.<hex>`
    where: str


@runtime_checkable
class LunDiskLister(Protocol):
    """A hypervisor layer that can list the LUN disks of every VM it sees (a separate
    protocol, so a layer without it is still a `Hypervisor`)."""

    async def list_lun_disks(self) -> list[LunDisk]:
        """Every NAA-backed disk (RDM, passthrough LUN) of every VM, one per VM and LUN."""
        ...


@runtime_checkable
class PlacementFollower(Protocol):
    """A hypervisor layer that tells when a VM moves to another host (vMotion, DRS, HA) or a
    cluster gains or loses a host (vSphere: its inventory mirror's property collector), so
    disks and igroups follow at once instead of at the next periodic re-check."""

    def follow_placement(self, changed: Callable[[], None]) -> None:
        """Call `changed()` (from any thread, without arguments) after each such change."""
        ...


class Hypervisor(Protocol):
    async def find_vm(self, ref: str) -> Vm:
        """A VM by providerID (`vsphere://<bios uuid>` or `libvirt://<domain uuid>` for the
        layer that serves it, any letter case), BIOS UUID, instance UUID or name; NotFound if
        there is none, Conflict if a name is ambiguous.
        `Vm.host` is where the VM ran when it was looked up; every method taking a Vm reads
        the VM's host again, because VMs move."""
        ...

    async def find_host(self, name: str) -> Host:
        """A hypervisor host by name; NotFound if none."""
        ...

    async def cluster_hosts(self, host: Host) -> list[Host]:
        """Every host of `host`'s cluster, sorted by name (just `host` when it is standalone)."""
        ...

    async def host_initiators(self, host: Host) -> list[Initiator]:
        """Every FC port and iSCSI adapter of one host."""
        ...

    async def vm_initiators(self, vm: Vm, scope: Scope) -> list[Initiator]:
        """The initiators a LUN for `vm` must be masked to: its host's, or its cluster's."""
        ...

    async def ensure_iscsi_portal(self, hosts: list[Host], portal: str) -> None:
        """Make `portal` (host:port) a send target of each host's iSCSI adapters (idempotent);
        NotFound if a host has no iSCSI adapter."""
        ...

    async def rescan(self, host: Host, adapter: str | None = None) -> None:
        """Rescan all HBAs of `host`, or one adapter."""
        ...

    async def sees_lun(self, host: Host, naa: str, *, within: float = 0.0) -> bool:
        """Whether `host` lists LUN `naa` (after its last rescan; no rescan is made): by a
        listing made now, or, with `within` > 0, by one at most `within` seconds old (a
        periodic re-check of many disks shares one listing per host)."""
        ...

    async def attach_rdm(self, vm: Vm, naa: str) -> Attachment:
        """Attach the LUN `naa` (`naa.<hex>`) to `vm` as a physical-mode RDM (idempotent: an
        existing RDM of that LUN is returned). Conflict if the VM's host does not see the LUN
        even after a rescan (its masking is wrong); LimitExceeded if the VM has no SCSI unit left."""
        ...

    async def detach_rdm(self, vm: Vm, naa: str) -> None:
        """Remove the RDM of `naa` from `vm` (the LUN and its data stay), then rescan the VM's
        host; a missing disk is success."""
        ...

    async def close(self) -> None: ...
