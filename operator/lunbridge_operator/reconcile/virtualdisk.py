"""The VirtualDisk lifecycle as plain async steps.

Up: provision the LUN -> mask it (igroup of the node's host or cluster, map) -> let the
host see it (iSCSI discovery, rescan) -> attach it to the VM as an RDM -> Ready. Down, behind
the finalizer: detach -> unmap -> rescan -> delete the LUN unless Retain.

Every step is idempotent by name (the LUN is named from the object's UID, the igroup from the
host or cluster), and its result is written to status before the next step starts, so an
operator killed at any point resumes instead of repeating, and leaves no orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any

import kubernetes.utils

from lunbridge.api import VIRTUAL_DISK_PLURAL
from lunbridge.errors import AlreadyExists, InvalidArgument, NotFound
from lunbridge.hypervisor.base import Attachment, Host, Scope, Vm
from lunbridge.storage.base import Lun
from lunbridge_operator import conditions as cond
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile.igroups import (
    addresses,
    ensure_igroup_object,
    ensure_storage_igroup,
)
from lunbridge_operator.reconcile.services import Events, Services

KIND = "VirtualDisk"
parse_quantity: Any = kubernetes.utils.parse_quantity


@dataclass
class Disk:
    """One VirtualDisk as a reconcile sees it; `status` is a working copy written back by `save`."""

    name: str
    uid: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def lun_name(self) -> str:
        return naming.lun_name(self.uid)

    @property
    def size_bytes(self) -> int:
        try:
            return int(parse_quantity(str(self.spec["size"])))
        except (KeyError, ValueError) as exc:
            raise InvalidArgument(f"spec.size {self.spec.get('size')!r} is not a quantity") from exc


class DiskSteps:
    """The steps of one reconcile of one disk."""

    def __init__(self, svc: Services, disk: Disk, events: Events) -> None:
        self.svc = svc
        self.disk = disk
        self.events = events
        # a periodic re-check of a Ready disk: it stays Ready, and only changes are told
        self.settled = (
            disk.status.get("phase") == "Ready" and disk.status.get("observedGeneration") == disk.generation
        )
        self._written = copy.deepcopy(disk.status)

    async def save(self, step: str, phase: str | None = None, message: str | None = None) -> None:
        """Write status (if it changed) before the next step runs."""
        status = self.disk.status
        if phase and not (self.settled and phase != "Ready"):
            status["phase"] = phase
        if message is not None:
            status["message"] = message
        status["observedGeneration"] = self.disk.generation
        if status != self._written:
            await self.svc.kube.patch_status(VIRTUAL_DISK_PLURAL, self.disk.name, status)
            self._written = copy.deepcopy(status)
        if self.svc.after_step is not None:
            await self.svc.after_step(KIND, step)

    def condition(self, kind: str, state: bool | None, reason: str, message: str) -> None:
        cond.set_condition(self.disk.status, kind, state, reason, message, self.disk.generation)

    async def scope_hosts(self, vm: Vm) -> list[Host]:
        """The hosts a LUN for `vm` is masked and revealed to: its host, or its whole cluster."""
        scope = self.svc.scope_for(vm.host, self.disk.spec.get("scope"))
        return await self.svc.hypervisor.cluster_hosts(vm.host) if scope is Scope.CLUSTER else [vm.host]

    # --- up ---------------------------------------------------------------------------------
    async def provision(self) -> Lun:
        storage, disk = self.svc.storage, self.disk
        with measured(KIND, "provision"):
            try:
                lun = await storage.get_lun(disk.lun_name)
            except NotFound:
                lun = await self._create()
            await self._forget_clone_snapshot()
            if lun.size_bytes < disk.size_bytes:
                lun = await storage.resize_lun(lun.name, disk.size_bytes)
                self.events("Resized", f"grew LUN {lun.name} to {lun.size_bytes} bytes")
        backend = disk.spec.get("backend") or "tgt"
        previous = disk.status.get("lun", {})
        disk.status["lun"] = {**previous, "backend": backend, "name": lun.name, "serial": lun.serial,
                              "naa": lun.naa, "sizeBytes": lun.size_bytes}  # fmt: skip
        self.condition(cond.PROVISIONED, True, "LunCreated", f"LUN {lun.name} exists on the storage server")
        await self.save("provision", phase="Provisioning")
        return lun

    async def _create(self) -> Lun:
        """A new LUN: empty, or a copy of `spec.source` (a storage snapshot, or another disk)."""
        storage, disk = self.svc.storage, self.disk
        source = disk.spec.get("source") or {}
        if source.get("snapshot"):
            lun = await storage.clone_lun(source["snapshot"], disk.lun_name)
            self.events(
                "Provisioned", f"created LUN {lun.name} ({lun.naa}) from snapshot {source['snapshot']}"
            )
        elif source.get("virtualDisk"):
            try:
                origin = await self.svc.kube.get(VIRTUAL_DISK_PLURAL, source["virtualDisk"])
            except NotFound:
                raise NotFound(f"spec.source.virtualDisk {source['virtualDisk']} does not exist") from None
            origin_lun = naming.lun_name(origin["metadata"]["uid"])
            snapshot = self._clone_snapshot
            with contextlib.suppress(AlreadyExists):  # a retry after a crash finds it made
                await storage.create_snapshot(origin_lun, snapshot)
            lun = await storage.clone_lun(snapshot, disk.lun_name)
            self.events(
                "Provisioned", f"created LUN {lun.name} ({lun.naa}) as a copy of {source['virtualDisk']}"
            )
        else:
            lun = await storage.create_lun(disk.lun_name, disk.size_bytes, disk.spec.get("pool"))
            self.events("Provisioned", f"created LUN {lun.name} ({lun.size_bytes} bytes, {lun.naa})")
        return lun

    @property
    def _clone_snapshot(self) -> str:
        return f"clone-src-{self.disk.uid.lower()}"

    async def _forget_clone_snapshot(self) -> None:
        """The snapshot a clone was copied from is scaffolding: gone once the clone exists."""
        if (self.disk.spec.get("source") or {}).get("virtualDisk"):
            await self.svc.storage.delete_snapshot(self._clone_snapshot)

    async def locate(self, node_name: str) -> tuple[Vm, str]:
        """The VM of Node `node_name` and the Node's providerID, through the hypervisor."""
        with measured(KIND, "locate"):
            try:
                node = await self.svc.kube.node(node_name)
            except NotFound:
                raise NotFound(f"Node {node_name} does not exist; create it or fix spec.nodeName") from None
            provider_id = (node.get("spec") or {}).get("provider_id")
            if not provider_id:
                raise NotFound(
                    f"Node {node_name} has no spec.providerID; lunbridge finds the node's VM by it "
                    "(vsphere://<BIOS UUID>), so set it (a cloud provider or the kubelet does)"
                )
            return await self.svc.hypervisor.find_vm(provider_id), str(provider_id)

    async def mask(self, lun: Lun, vm: Vm) -> tuple[str, Host]:
        svc, disk = self.svc, self.disk
        scope = svc.scope_for(vm.host, disk.spec.get("scope"))
        name = naming.igroup_name(vm.host, scope)
        with measured(KIND, "mask"):
            initiators = await svc.hypervisor.vm_initiators(vm, scope)
            wanted = addresses(initiators, svc.transport)
            if not wanted:
                protocol = svc.transport.value
                raise NotFound(
                    f"host {vm.host.name} reports no {protocol} initiator, so no LUN can be masked to "
                    f"it; give it a {protocol} adapter or change the operator's --protocol"
                )
            if await ensure_igroup_object(svc.kube, name, vm.host, scope, svc.transport):
                await ensure_storage_igroup(svc.storage, name, svc.transport, wanted)
            # else a user wrote that InitiatorGroup: its own spec decides who is in it
            mapping = await svc.storage.map_lun(lun.name, name)
        changed = (disk.status.get("initiatorGroup"), disk.status["lun"].get("id")) != (name, mapping.lun_id)
        disk.status["initiatorGroup"] = name
        disk.status["lun"]["id"] = mapping.lun_id
        self.condition(cond.MAPPED, True, "LunMapped", f"mapped as LUN {mapping.lun_id} to igroup {name}")
        if changed:
            self.events(
                "Mapped", f"mapped {lun.name} as LUN {mapping.lun_id} to igroup {name} ({', '.join(wanted)})"
            )
        await self.save("map", phase="Mapping")
        return name, vm.host

    async def reveal(self, scope_hosts: list[Host]) -> None:
        """Make the host(s) see the LUN: iSCSI discovery of the portal, then a rescan."""
        with measured(KIND, "rescan"):
            if self.svc.portal and self.svc.transport.value == "iscsi":
                await self.svc.hypervisor.ensure_iscsi_portal(scope_hosts, self.svc.portal)
            await asyncio.gather(*(self.svc.hypervisor.rescan(host) for host in scope_hosts))
        if not self.settled:
            self.events("Rescanned", f"rescanned the HBAs of {', '.join(h.name for h in scope_hosts)}")
        await self.save("rescan", phase="Attaching")

    async def attach(self, lun: Lun, vm: Vm, node_name: str, provider_id: str) -> Attachment:
        with measured(KIND, "attach"):
            attachment = await self.svc.hypervisor.attach_rdm(vm, lun.naa)
        before = self.disk.status.get("attachment")
        self.disk.status["attachment"] = {
            "node": node_name, "providerID": provider_id, "vm": vm.name, "vmId": vm.id, "host": vm.host.name,
            "controllerKey": attachment.controller_key, "busNumber": attachment.bus_number,
            "unitNumber": attachment.unit_number, "diskKey": attachment.disk_key,
            "guestAddress": ":".join(str(part) for part in attachment.guest_address),
            **({"pciSlot": attachment.pci_slot} if attachment.pci_slot is not None else {}),
            **({"target": attachment.target} if attachment.target is not None else {}),
        }  # fmt: skip
        where = (
            f"controller {attachment.controller_key} (bus {attachment.bus_number}) "
            f"unit {attachment.unit_number}"
        )
        self.condition(cond.ATTACHED, True, "RdmAttached", f"attached to VM {vm.name} at {where}")
        self.condition(cond.READY, True, "Ready", f"LUN {lun.naa} is attached to node {node_name}")
        if before != self.disk.status["attachment"]:
            self.events("Attached", f"attached {lun.naa} to VM {vm.name} on host {vm.host.name} at {where}")
        await self.save("attach", phase="Ready", message="")
        return attachment

    # --- down -------------------------------------------------------------------------------
    async def detach_current(self, naa: str, *, spec_node_too: bool) -> list[Host]:
        """Remove the RDM recorded in status, and with `spec_node_too` also from the spec's
        node (a crash may have come before the attachment was recorded); returns the hosts
        to rescan. A VM that no longer exists has no RDM left to remove."""
        vms: dict[str, Vm] = {}
        node_name = self.disk.spec.get("nodeName")
        if spec_node_too and node_name:
            with contextlib.suppress(NotFound):
                vm, _ = await self.locate(node_name)
                vms[vm.id] = vm
        recorded = (self.disk.status.get("attachment") or {}).get("providerID")
        if recorded:
            with contextlib.suppress(NotFound):
                vm = await self.svc.hypervisor.find_vm(recorded)
                vms[vm.id] = vm
        hosts: dict[str, Host] = {}
        for vm in vms.values():
            await self._detach(vm, naa, hosts)
        self.disk.status["attachment"] = None  # a merge patch with null removes it
        self.condition(cond.ATTACHED, False, "Detached", "not attached to any VM")
        return list(hosts.values())

    async def _detach(self, vm: Vm, naa: str, hosts: dict[str, Host]) -> None:
        with measured(KIND, "detach"):
            await self.svc.hypervisor.detach_rdm(vm, naa)
        # every host the LUN was revealed to lists it until rescanned after the unmap
        hosts.update({host.id: host for host in await self.scope_hosts(vm)})
        self.events("Detached", f"detached {naa} from VM {vm.name}")

    async def unmap_all(self, keep: str | None = None) -> None:
        with measured(KIND, "unmap"):
            for mapping in await self.svc.storage.list_mappings(lun=self.disk.lun_name):
                if mapping.igroup != keep:
                    await self.svc.storage.unmap_lun(mapping.lun, mapping.igroup)
                    self.events("Unmapped", f"unmapped {mapping.lun} from igroup {mapping.igroup}")
        if keep is None:
            self.disk.status["initiatorGroup"] = None
            self.condition(cond.MAPPED, False, "Unmapped", "not mapped to any igroup")

    async def rescan(self, hosts: list[Host]) -> None:
        with measured(KIND, "rescan"):
            await asyncio.gather(*(self.svc.hypervisor.rescan(host) for host in hosts))


async def reconcile(svc: Services, disk: Disk, events: Events) -> None:
    """Bring the LUN, its masking and its attachment to what the spec asks."""
    steps = DiskSteps(svc, disk, events)
    if disk.status.get("observedGeneration") != disk.generation and cond.condition(disk.status, cond.READY):
        # a changed spec: not Ready for it until every step has run again
        steps.condition(
            cond.READY, False, "Reconciling", f"applying generation {disk.generation} of the spec"
        )
    lun = await steps.provision()
    node_name = disk.spec.get("nodeName") or None
    attached = disk.status.get("attachment") or {}
    vm, provider_id = await steps.locate(node_name) if node_name else (None, "")
    if attached and (vm is None or attached.get("vmId") != vm.id):
        hosts = await steps.detach_current(lun.naa, spec_node_too=False)
        await steps.unmap_all(keep=None)
        await steps.rescan(hosts)
        await steps.save("detach", phase="Detaching")
    if vm is None:
        steps.condition(cond.ATTACHED, False, "NoNode", "spec.nodeName is empty: not attached")
        steps.condition(cond.READY, True, "Provisioned", "the LUN exists and is not attached to any node")
        await steps.save("ready", phase="Ready", message="")
        return
    igroup, _ = await steps.mask(lun, vm)
    await steps.unmap_all(keep=igroup)  # a move to another host or cluster leaves the old igroup
    await steps.reveal(await steps.scope_hosts(vm))
    await steps.attach(lun, vm, node_name or "", provider_id)


async def delete(svc: Services, disk: Disk, events: Events) -> None:
    """Run the steps backwards: detach -> unmap -> rescan -> delete the LUN unless Retain."""
    steps = DiskSteps(svc, disk, events)
    try:
        lun = await svc.storage.get_lun(disk.lun_name)
    except NotFound:
        lun = None
    naa = lun.naa if lun else (disk.status.get("lun") or {}).get("naa")
    hosts: list[Host] = []
    if naa:
        hosts = await steps.detach_current(naa, spec_node_too=True)
        await steps.save("detach", phase="Deleting")
    if lun is not None:
        await steps.unmap_all(keep=None)
    await steps.rescan(hosts)
    if lun is None:
        return
    await steps.save("unmap", phase="Deleting")
    if disk.spec.get("reclaimPolicy", "Delete") == "Delete":
        with measured(KIND, "delete"):
            await svc.storage.delete_lun(lun.name)
        events("Deleted", f"deleted LUN {lun.name}")
    else:
        events("Retained", f"kept LUN {lun.name} ({lun.naa}) on the storage server: reclaimPolicy is Retain")
