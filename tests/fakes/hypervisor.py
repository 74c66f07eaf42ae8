"""An in-memory hypervisor (vSphere-like): hosts in clusters, each with its own initiators, VMs
found by providerID `vsphere://<BIOS UUID>`, and RDMs on one PVSCSI controller per VM with
units handed out per VM. It exists so the reconcile steps meet the rules a real layer keeps
(a VM has a unit limit, an unknown VM is NotFound, a host that is not masked cannot attach the
LUN, VMs move) without vCenter.

`hold_units` fills a VM with disks lunbridge does not manage (no unit left for an RDM).

An RDM is attached only if the VM's current host can see the LUN: `sees(initiators, naa)` is
asked (the lab wires it to the fake storage's masking), as a real host's rescan would find.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from lunbridge.api import PROVIDER_VSPHERE
from lunbridge.errors import Conflict, InvalidArgument, LimitExceeded, NotFound
from lunbridge.hypervisor.base import Attachment, Host, Initiator, LunDisk, Scope, Vm
from lunbridge.hypervisor.vsphere.slots import USABLE_UNITS, RdmAttachment
from lunbridge.san import Transport, is_uuid
from tests.fakes.faults import Faults, need

CONTROLLER_KEY = 1000  # the VM's first PVSCSI controller, on bus 0
PCI_SLOT = 160
BOOT_UNIT = 0  # the VM's own disk sits there
RDM_UNITS = tuple(unit for unit in USABLE_UNITS if unit != BOOT_UNIT)
Sees = Callable[[Iterable[str], str], bool]


@dataclass
class _VmState:
    vm: Vm
    rdms: dict[str, RdmAttachment] = field(default_factory=dict)  # naa -> its RDM
    held: set[int] = field(default_factory=set)  # units of disks lunbridge does not manage


class FakeHypervisor(Faults):
    def __init__(self, *, max_disks: int = len(RDM_UNITS), sees: Sees | None = None) -> None:
        super().__init__()
        self.max_disks = max_disks
        self.sees = sees
        self.hosts: dict[str, Host] = {}
        self.initiators: dict[str, list[Initiator]] = {}
        self.vms: dict[str, _VmState] = {}  # by Vm.id
        self.rescans: Counter[str] = Counter()  # host name -> rescans the operator asked for
        self.portals: dict[str, set[str]] = {}  # host name -> iSCSI send targets
        self._ids = itertools.count(1)
        self.closed = False

    # --- building the inventory ---------------------------------------------------------------
    def add_host(self, name: str, cluster: str | None = None, *, iscsi: bool = True, wwpns: int = 0) -> Host:
        """A host with a software iSCSI adapter (`iqn.1998-01.com.vmware:<name>`) and `wwpns` FC ports."""
        host = Host(name, f"host-{next(self._ids)}", cluster)
        self.hosts[name] = host
        found = (
            [Initiator(Transport.ISCSI, f"iqn.1998-01.com.vmware:{name}", name, "vmhba64")] if iscsi else []
        )
        found += [
            Initiator(
                Transport.FCP, f"20:00:00:25:b5:{len(self.hosts):02x}:00:{port:02x}", name, f"vmhba{port}"
            )
            for port in range(wwpns)
        ]
        self.initiators[name] = found
        return host

    def add_vm(self, name: str, host: str, bios_uuid: str | None = None) -> Vm:
        number = next(self._ids)
        uuid = bios_uuid or f"4231{number:04x}-0000-0000-0000-{number:012x}"
        vm = Vm(
            name,
            f"vm-{number}",
            uuid.lower(),
            f"5031{number:04x}-0000-0000-0000-{number:012x}",
            self._host(host),
        )
        self.vms[vm.id] = _VmState(vm)
        return vm

    def provider_id(self, vm: Vm) -> str:
        return f"{PROVIDER_VSPHERE}{vm.bios_uuid}"

    def move_vm(self, vm: Vm, host: str) -> Vm:
        """vMotion: the VM (and its RDMs) now runs on `host`."""
        state = self._state(vm)
        state.vm = replace(state.vm, host=self._host(host))
        return state.vm

    def move_host(self, name: str, cluster: str | None) -> Host:
        """The host leaves its cluster (None: standalone) or joins `cluster`, with its VMs."""
        host = replace(self._host(name), cluster=cluster)
        self.hosts[name] = host
        for state in self.vms.values():
            if state.vm.host.name == name:
                state.vm = replace(state.vm, host=host)
        return host

    def remove_vm(self, vm: Vm) -> None:
        """The VM is deleted (with its RDMs) behind the operator's back."""
        del self.vms[vm.id]

    def hold_units(self, vm: Vm, units: Iterable[int] = RDM_UNITS) -> None:
        """Disks lunbridge does not manage take `units` of the VM (all: the VM is full)."""
        self._state(vm).held.update(units)

    def free_units(self, vm: Vm) -> None:
        """Those disks are removed again."""
        self._state(vm).held.clear()

    def rdms(self, vm: Vm) -> list[RdmAttachment]:
        """The VM's RDMs by unit."""
        return sorted(self._state(vm).rdms.values(), key=lambda a: a.unit_number)

    def all_rdms(self) -> list[RdmAttachment]:
        return [rdm for state in self.vms.values() for rdm in state.rdms.values()]

    # --- helpers ----------------------------------------------------------------------------
    def _host(self, name: str) -> Host:
        return need(self.hosts, name, f"host {name}")

    def _state(self, vm: Vm) -> _VmState:
        return need(self.vms, vm.id, f"VM {vm.name} ({vm.id})")

    def _cluster_hosts(self, host: Host) -> list[Host]:
        if host.cluster is None:
            return [host]
        return sorted((h for h in self.hosts.values() if h.cluster == host.cluster), key=lambda h: h.name)

    # --- the protocol -------------------------------------------------------------------------
    async def find_vm(self, ref: str) -> Vm:
        self._record("find_vm", ref)
        wanted = ref.strip()
        if wanted.lower().startswith(PROVIDER_VSPHERE):
            wanted = wanted[len(PROVIDER_VSPHERE) :]
            if not is_uuid(wanted):  # as the vSphere layer's reference parser
                raise InvalidArgument(f"providerID {ref!r} does not hold a UUID after {PROVIDER_VSPHERE}")
        found = [
            s.vm
            for s in self.vms.values()
            if wanted.lower() in (s.vm.bios_uuid, s.vm.instance_uuid) or wanted == s.vm.name
        ]
        if not found:
            raise NotFound(f"no VM has providerID, UUID or name {ref!r}")
        if len(found) > 1:
            raise Conflict(f"{len(found)} VMs are named {ref!r}")
        return found[0]

    async def find_host(self, name: str) -> Host:
        self._record("find_host", name)
        return self._host(name)

    async def cluster_hosts(self, host: Host) -> list[Host]:
        self._record("cluster_hosts", host)
        return self._cluster_hosts(self._host(host.name))

    async def host_initiators(self, host: Host) -> list[Initiator]:
        self._record("host_initiators", host)
        return list(self.initiators[self._host(host.name).name])

    async def vm_initiators(self, vm: Vm, scope: Scope) -> list[Initiator]:
        self._record("vm_initiators", vm, scope)
        host = self._state(vm).vm.host
        hosts = self._cluster_hosts(host) if scope is Scope.CLUSTER else [host]
        return [i for h in hosts for i in self.initiators[h.name]]

    async def ensure_iscsi_portal(self, hosts: list[Host], portal: str) -> None:
        self._record("ensure_iscsi_portal", hosts, portal)
        for host in hosts:
            if not any(i.transport is Transport.ISCSI for i in self.initiators[host.name]):
                raise NotFound(f"host {host.name} has no iSCSI adapter")
            self.portals.setdefault(host.name, set()).add(portal)

    async def rescan(self, host: Host, adapter: str | None = None) -> None:
        self._record("rescan", host, adapter)
        self.rescans[self._host(host.name).name] += 1

    async def sees_lun(self, host: Host, naa: str, *, within: float = 0.0) -> bool:
        self._record("sees_lun", host, naa, within)
        addresses = [i.address for i in self.initiators[self._host(host.name).name]]
        return self.sees is None or self.sees(addresses, naa)

    async def attach_rdm(self, vm: Vm, naa: str) -> Attachment:
        self._record("attach_rdm", vm, naa)
        state = self._state(vm)
        if naa in state.rdms:
            return state.rdms[naa]
        host = state.vm.host
        addresses = [i.address for i in self.initiators[host.name]]
        if self.sees is not None and not self.sees(addresses, naa):
            raise Conflict(f"LUN {naa} is not visible to host {host.name} even after a rescan")
        taken = {rdm.unit_number for rdm in state.rdms.values()}
        free = [unit for unit in RDM_UNITS if unit not in taken | state.held]
        if len(taken) >= self.max_disks or not free:
            raise LimitExceeded(
                f"VM {vm.name} has no free SCSI unit ({len(taken)} RDMs and {len(state.held)} other disks)"
            )
        state.rdms[naa] = RdmAttachment(
            vm=vm.id, naa=naa, pci_slot=PCI_SLOT, controller_key=CONTROLLER_KEY, bus_number=0,
            unit_number=free[0], disk_key=2000 + next(self._ids),
        )  # fmt: skip
        return state.rdms[naa]

    async def detach_rdm(self, vm: Vm, naa: str) -> None:
        self._record("detach_rdm", vm, naa)
        self._state(vm).rdms.pop(naa, None)

    async def list_lun_disks(self) -> list[LunDisk]:
        self._record("list_lun_disks")
        return [
            LunDisk(state.vm, naa, rdm.describe())
            for state in self.vms.values()
            for naa, rdm in sorted(state.rdms.items())
        ]

    async def close(self) -> None:
        self._record("close")
        self.closed = True
