"""The VirtualDisk lifecycle as plain async steps.

Up: provision the LUN on the disk's backend -> mask it (igroup of the node's host or cluster,
map) -> let the host see it (iSCSI discovery, rescan) -> attach it to the VM as an RDM ->
Ready. A node that logs in with its own initiators (`reconcile.initiator_node`) gets the map to
its own igroup instead, and no hypervisor call. Down, behind the finalizer: detach -> unmap ->
rescan -> delete the LUN unless Retain.

Every step is idempotent by name (the LUN is named from the object's UID, the igroup from the
host or cluster), so an operator killed at any point resumes instead of repeating, and leaves
no orphan. Status is written where a restart or a teardown needs it, and no more often (each
write is a PATCH and a watch event): before the attach (it records the VM about to get the
RDM, which a teardown after a crash there must find), at the end, and after a detach. A crash
before the first write leaves the LUN and its map to be found by their names, and a delete
reads the maps from the backend, not from status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from lunbridge.api import FORGET_ANNOTATION
from lunbridge.concurrency import both
from lunbridge.errors import AlreadyExists, Busy, InvalidArgument, LunbridgeError, NotFound
from lunbridge.hypervisor.base import Attachment, Host, Scope, Vm
from lunbridge.models import AttachmentStatus, AttachMode, LunbridgeNode, Phase, ReclaimPolicy
from lunbridge.models import ConditionType as Cond
from lunbridge.storage.base import Lun, StorageBackend
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile import health, hosts, initiator_node, sources
from lunbridge_operator.reconcile.disk import KIND, Disk
from lunbridge_operator.reconcile.igroups import (
    addresses,
    ensure_igroup_object,
    ensure_storage_igroup,
    map_keeping_id,
)
from lunbridge_operator.reconcile.services import Events, Services

__all__ = ["Disk", "DiskSteps", "delete", "forget", "reconcile"]


@contextlib.contextmanager
def _naming(field_path: str, value: str | None) -> Iterator[None]:
    """A storage server's NotFound or InvalidArgument about a name the spec gave (a pool, a
    snapshot) names that spec field, so the Ready condition says which field to fix."""
    try:
        yield
    except (NotFound, InvalidArgument) as exc:
        if value is None or field_path in str(exc):
            raise
        kind = NotFound if isinstance(exc, NotFound) else InvalidArgument
        raise kind(f"{field_path} {value!r}: {exc}") from exc


class DiskSteps:
    """The steps of one reconcile of one disk, on the backend it lives on."""

    def __init__(self, svc: Services, disk: Disk, events: Events) -> None:
        self.svc = svc
        self.disk = disk
        self.events = events
        self.backend_name, self.storage = disk.backend(svc)
        self.host_problems = hosts.HostProblems()  # the other hosts of a cluster scope
        # a periodic re-check of a Ready disk: it stays Ready, and only changes are told
        self.settled = disk.settled

    async def save(
        self, step: str, phase: Phase | None = None, message: str | None = None, *, write: bool = True
    ) -> None:
        """Close `step`: its phase in the working copy, which is written (if it changed) before
        the next step runs, or with `write=False` carried by the next write (a step whose
        result a restart finds by name)."""
        status = self.disk.status
        if phase and not (self.settled and phase is not Phase.READY):
            status.phase = phase
        if phase is Phase.READY:
            health.verified(self.disk, self.events)
        if message is not None:
            status.message = message
        status.observed_generation = self.disk.generation
        if write:
            await self.disk.save(self.svc)
        if self.svc.after_step is not None:
            await self.svc.after_step(KIND, step)

    def condition(self, kind: Cond, state: bool | None, reason: str, message: str) -> None:
        self.disk.condition(state, reason, message, kind)

    async def scope_hosts(self, vm: Vm) -> list[Host]:
        """The hosts a LUN for `vm` is masked and revealed to: its host, or its whole cluster."""
        return await hosts.of_scope(self.svc, vm, self.disk.spec.scope)

    # --- up ---------------------------------------------------------------------------------
    async def provision(self) -> Lun:
        storage, disk = self.storage, self.disk
        with measured(KIND, "provision"):
            try:
                lun = await storage.get_lun(disk.lun_name)
            except NotFound:
                health.refuse_lost_lun(disk, self.backend_name)
                lun = await self._create()
            else:
                health.refuse_other_lun(disk, self.backend_name, lun)
            await self._forget_clone_snapshot()
            if lun.size_bytes < disk.spec.size_bytes:
                lun = await storage.resize_lun(lun.name, disk.spec.size_bytes)
                self.events("Resized", f"grew LUN {lun.name} to {lun.size_bytes} bytes")
        record = disk.lun
        record.backend, record.name, record.serial = self.backend_name, lun.name, lun.serial
        record.naa, record.size_bytes = lun.naa, lun.size_bytes
        self.condition(Cond.PROVISIONED, True, "LunCreated",
                       f"LUN {lun.name} exists on storage backend {self.backend_name}")  # fmt: skip
        await self.save("provision", phase=Phase.PROVISIONING, write=False)
        return lun

    async def _create(self) -> Lun:
        """A new LUN: empty, or a copy of `spec.source` (a DiskSnapshot, or another disk)."""
        storage, disk = self.storage, self.disk
        source = disk.spec.source
        if source is not None and source.snapshot:
            snapshot_name = await sources.snapshot(self.svc, self.disk, self.backend_name, source.snapshot)
            with _naming("spec.source.snapshot", source.snapshot):
                lun = await storage.clone_lun(snapshot_name, disk.lun_name)
            self.events(
                "Provisioned",
                f"created LUN {lun.name} ({lun.naa}) from DiskSnapshot {source.snapshot} ({snapshot_name})",
            )
        elif source is not None and source.virtual_disk:
            origin = await sources.origin(self.svc, self.backend_name, source.virtual_disk)
            snapshot = self._clone_snapshot
            with contextlib.suppress(AlreadyExists):  # a retry after a crash finds it made
                await storage.create_snapshot(naming.lun_name(origin.metadata.uid or ""), snapshot)
            lun = await storage.clone_lun(snapshot, disk.lun_name)
            self.events(
                "Provisioned", f"created LUN {lun.name} ({lun.naa}) as a copy of {source.virtual_disk}"
            )
        else:
            with _naming("spec.pool", disk.spec.pool):
                lun = await storage.create_lun(disk.lun_name, disk.spec.size_bytes, disk.spec.pool)
            self.events("Provisioned", f"created LUN {lun.name} ({lun.size_bytes} bytes, {lun.naa})")
        return lun

    @property
    def _clone_snapshot(self) -> str:
        return naming.clone_snapshot_name(self.disk.uid)

    async def _forget_clone_snapshot(self) -> None:
        """The snapshot a clone was copied from is scaffolding: gone once the clone exists."""
        if self.disk.spec.source is not None and self.disk.spec.source.virtual_disk:
            await self.storage.delete_snapshot(self._clone_snapshot)

    async def whose(self, node_name: str | None) -> tuple[LunbridgeNode | None, Vm | None, str]:
        """Where the disk goes: (the node's LunbridgeNode when it logs in itself, None, ""), or
        (None, the VM of Node `node_name`, the Node's providerID) when the hypervisor attaches
        it; (None, None, "") without a node. The LunbridgeNode and the Node's providerID are
        read at once (reads only: the one the path does not need is dropped, its error too)."""
        if not node_name:
            return None, None, ""
        with measured(KIND, "locate"):
            own, provider_id = await asyncio.gather(
                initiator_node.initiator_node(self.svc, node_name),
                self._provider_id(node_name),
                return_exceptions=True,
            )
            if isinstance(own, BaseException):
                raise own
            if own is not None:
                return own, None, ""
            if isinstance(provider_id, BaseException):
                raise provider_id
            try:
                return None, await self.svc.hypervisor.find_vm(provider_id), provider_id
            except InvalidArgument as exc:  # the Node's fault, not the disk's: tried again
                raise NotFound(f"Node {node_name}: {exc}") from None

    async def _provider_id(self, node_name: str) -> str:
        """Node `node_name`'s spec.providerID: as kopf's watch last saw it, else read."""
        try:
            provider_id = await self.svc.provider_id(node_name)
        except NotFound:
            raise NotFound(f"Node {node_name} does not exist; create it or fix spec.nodeName") from None
        if not provider_id:
            raise NotFound(
                f"Node {node_name} has no spec.providerID; lunbridge finds the node's VM by it "
                "(vsphere://<BIOS UUID>), so set it (a cloud provider or the kubelet does)"
            )
        return provider_id

    async def mask(self, lun: Lun, vm: Vm) -> str:
        """Map the LUN to the igroup of `vm`'s host (or its cluster, by the disk's scope): its
        InitiatorGroup object made if nobody has, and, when lunbridge manages it, the storage
        igroup holding at least the initiators the hypervisor reports (made or completed).
        Only the group's own reconcile removes initiators: it alone knows which host that left
        still runs a VM with a LUN of the group."""
        svc, disk = self.svc, self.disk
        scope = svc.scope_for(vm.host, disk.spec.scope)
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
            known = svc.known_igroup
            group = await ensure_igroup_object(svc.kube, name, vm.host, scope, svc.transport, known)
            if group.managed:
                os_type = group.spec.os_type
                await ensure_storage_igroup(self.storage, name, svc.transport, wanted, os_type, remove=False)
            # else a user wrote that InitiatorGroup: its own spec decides who is in it
            moving_from = disk.status.initiator_group if disk.status.initiator_group != name else None
            keep_id = disk.lun.id if moving_from else None
            mapping = await map_keeping_id(self.storage, lun.name, name, keep_id)
        if keep_id is not None and mapping.lun_id != keep_id:
            self.events("LunIdChanged", f"LUN id {keep_id} is taken in igroup {name}, so {lun.name} is "
                        f"LUN {mapping.lun_id} there, not {keep_id} as in igroup {moving_from}: the VM "
                        "cannot move between their hosts while it has both", warning=True)  # fmt: skip
        changed = (disk.status.initiator_group, disk.lun.id) != (name, mapping.lun_id)
        disk.status.initiator_group, disk.lun.id = name, mapping.lun_id
        self.condition(Cond.MAPPED, True, "LunMapped", f"mapped as LUN {mapping.lun_id} to igroup {name}")
        if changed:
            self.events(
                "Mapped", f"mapped {lun.name} as LUN {mapping.lun_id} to igroup {name} ({', '.join(wanted)})"
            )
        await self.save("map", phase=Phase.MAPPING, write=False)
        return name

    @property
    def listing_age(self) -> float:
        """How old a host's LUN listing may be for this reconcile: a periodic re-check of a
        Ready disk takes one at most half the re-check period old (many disks share it), so it
        costs no rescan and no listing of its own while the hosts see the LUN."""
        return self.svc.resync_seconds / 2 if self.settled else 0.0

    async def reveal(self, vm: Vm, naa: str, node_name: str, provider_id: str) -> None:
        """Make the VM's host see the LUN: iSCSI discovery of the portal, then a rescan (not in
        a re-check that finds the host listing it). The VM about to get the RDM is recorded
        with this step, written while the host rescans, so a teardown after a crash in the
        attach finds it in status (and a disk that never got that far needs no VM lookup)."""
        recorded = self.disk.status.attachment
        if recorded is None or recorded.vm_id != vm.id:
            self.disk.status.attachment = AttachmentStatus(
                mode=AttachMode.HYPERVISOR, node=node_name, provider_id=provider_id, vm=vm.name, vm_id=vm.id,
                host=vm.host.name,
            )  # fmt: skip
        await both(self._rescan_host(vm, naa), self.save("record", phase=Phase.ATTACHING))
        await self.save("rescan", phase=Phase.ATTACHING)

    async def _rescan_host(self, vm: Vm, naa: str) -> None:
        hypervisor = self.svc.hypervisor
        with measured(KIND, "rescan"):
            if not (self.settled and await hosts.seeing(hypervisor, [vm.host], naa, self.listing_age)):
                await hosts.reveal(hypervisor, vm.host, self._portal)

    @property
    def _portal(self) -> str | None:
        return self.svc.portals.get(self.backend_name) if self.svc.transport.value == "iscsi" else None

    def revealing(self, others: list[Host]) -> None:
        """ClusterReady Unknown while the other hosts of the scope are yet to see the LUN (a
        disk that was ClusterReady keeps it until the check after the attach says otherwise)."""
        if others and not self.disk.status.is_true(Cond.CLUSTER_READY):
            names = ", ".join(h.name for h in others)
            self.condition(Cond.CLUSTER_READY, None, "Revealing", f"revealing the LUN to host(s) {names}")

    async def reveal_others(self, others: list[Host], naa: str) -> hosts.HostProblems:
        """Reveal the LUN to the hosts of the scope other than the VM's (those a re-check finds
        listing it are left alone): what each that does not list it after a rescan says."""
        hypervisor = self.svc.hypervisor
        with measured(KIND, "reveal_cluster"):
            seen = await hosts.seeing(hypervisor, others, naa, self.listing_age) if self.settled else []
            missing = [h for h in others if h not in seen]
            problems = await hosts.reveal_best_effort(hypervisor, missing, self._portal)
            await hosts.not_seeing(hypervisor, missing, naa, problems)
        return problems

    def cluster_ready(
        self,
        scope_hosts: list[Host],
        naa: str,
        problems: hosts.HostProblems | None = None,
        *,
        pinned: Vm | None = None,
    ) -> None:
        """ClusterReady: every host of the scope lists the LUN (so the VM may move to any);
        `problems` from `reveal_others` when the scope has other hosts than the VM's. Those
        make the disk movable, not usable, so a cluster-scope disk is Ready as soon as a
        host-scope one. `pinned`: the VM of a scope of one host; on a host of a cluster it
        cannot move (False, NotMovable: vCenter refuses a vMotion, DRS or HA move to a host that
        does not see its RDM's LUN). Sets the condition; the caller's next write carries it."""
        self.host_problems = problems or hosts.HostProblems()
        before = self.disk.status.condition(Cond.CLUSTER_READY)
        if pinned is not None and pinned.host.cluster is not None and self._host_scope(pinned):
            message = (
                f"scope host: only host {pinned.host.name} sees {naa}, so VM {pinned.name} cannot move to "
                f"another host of cluster {pinned.host.cluster} (vMotion, DRS, HA); scope cluster lets it"
            )
            self.condition(Cond.CLUSTER_READY, False, "NotMovable", message)
        elif self.host_problems.failed:
            message = f"not every host of the scope sees {naa}: {self.host_problems.describe()}"
            self.condition(Cond.CLUSTER_READY, False, "HostsMissing", message)
            if before is None or before.message != message:
                self.events("ClusterNotReady", message, warning=True)
        else:
            names = ", ".join(h.name for h in scope_hosts)
            self.condition(
                Cond.CLUSTER_READY, True, "AllHostsSee", f"{naa} is seen by every host of the scope: {names}"
            )

    def _host_scope(self, vm: Vm) -> bool:
        return self.svc.scope_for(vm.host, self.disk.spec.scope) is Scope.HOST

    async def attach(self, lun: Lun, vm: Vm, node_name: str, provider_id: str) -> Attachment:
        """Attach the LUN to `vm` as an RDM and record where; the caller writes the status."""
        with measured(KIND, "attach"):
            attachment = await self.svc.hypervisor.attach_rdm(vm, lun.naa)
        status = self.disk.status
        before = status.attachment
        status.attachment = AttachmentStatus(
            mode=AttachMode.HYPERVISOR, node=node_name, provider_id=provider_id, vm=vm.name, vm_id=vm.id,
            host=vm.host.name, pci_slot=attachment.pci_slot, guest_address=str(attachment.guest_address),
            detail=dict(attachment.detail()),
        )  # fmt: skip
        where = attachment.describe()
        self.condition(Cond.ATTACHED, True, "RdmAttached", f"attached to VM {vm.name} at {where}")
        self.condition(Cond.READY, True, "Ready", f"LUN {lun.naa} is attached to node {node_name}")
        if before != status.attachment:
            # the host's rescan is told here: an Event of its own cost every disk an API write
            rescanned = f"after a rescan of the HBAs of host {vm.host.name}"
            self.events("Attached", f"attached {lun.naa} to VM {vm.name} at {where}, {rescanned}")
        return attachment

    # --- down -------------------------------------------------------------------------------
    async def detach_recorded(self, naa: str) -> list[Host]:
        """Remove the RDM of the VM status records (attached, or about to be when the operator
        stopped); returns the hosts to rescan. Nothing recorded: nothing to look up. A VM the
        hypervisor no longer knows has no RDM left, so it counts as detached."""
        recorded = self.disk.status.attachment
        hosts: dict[str, Host] = {}
        if recorded is not None and recorded.provider_id:
            try:
                vm = await self.svc.hypervisor.find_vm(recorded.provider_id)
            except NotFound:
                self.events("Detached", f"VM {recorded.vm} is gone, and with it the RDM of {naa}")
            else:
                await self._detach(vm, naa, hosts)
        self.disk.status.attachment = None
        self.condition(Cond.ATTACHED, False, "Detached", "not attached to any VM")
        return list(hosts.values())

    async def _detach(self, vm: Vm, naa: str, hosts: dict[str, Host]) -> None:
        with measured(KIND, "detach"), contextlib.suppress(NotFound):  # the VM went meanwhile
            await self.svc.hypervisor.detach_rdm(vm, naa)
            # every host the LUN was revealed to lists it until rescanned after the unmap
            hosts.update({host.id: host for host in await self.scope_hosts(vm)})
        self.events("Detached", f"detached {naa} from VM {vm.name}")

    async def unmap_all(self, keep: str | None = None, recorded: str | None = None) -> list[Host]:
        """Unmap the LUN from every igroup but `keep`; the hosts those igroups serve, which list
        the LUN until they rescan (found from the igroups, not from a detach that a crash may
        have recorded already). Also the hosts of `recorded`, the igroup the disk's status names
        (by default the one it names now) unless it is `keep`: a retry after an unmap whose
        rescan failed finds no map left, while those hosts still list the LUN (status names
        the igroup until the rescan is done)."""
        recorded = self.disk.status.initiator_group if recorded is None else recorded
        unmapped: list[str] = []
        with measured(KIND, "unmap"):
            for mapping in await self.storage.list_mappings(lun=self.disk.lun_name):
                if mapping.igroup != keep:
                    await self.storage.unmap_lun(mapping.lun, mapping.igroup)
                    unmapped.append(mapping.igroup)
                    self.events("Unmapped", f"unmapped {mapping.lun} from igroup {mapping.igroup}")
        if recorded and recorded != keep and recorded not in unmapped:
            unmapped.append(recorded)
        return await hosts.of_igroups(self.svc, unmapped)

    async def unmap_everywhere(self, detached: list[Host]) -> None:
        """Unmap the LUN from every igroup, rescan their hosts and `detached`, and only then
        record that it is mapped nowhere (a failed rescan leaves status naming the igroup)."""
        await self.rescan(hosts.unique(detached + await self.unmap_all(keep=None)))
        self.disk.status.initiator_group = None
        self.condition(Cond.MAPPED, False, "Unmapped", "not mapped to any igroup")

    async def rescan(self, scope: list[Host]) -> None:
        """After an unmap: best effort (a host that cannot rescan keeps a dead path, which it
        drops by itself; it must not hold up a detach or a delete). HypervisorUnreachable
        (vCenter down: no host could) is raised."""
        with measured(KIND, "rescan"):
            problems = await hosts.rescan_best_effort(self.svc.hypervisor, scope)
        if problems.failed:
            self.events(
                "RescanFailed", f"could not rescan after the unmap: {problems.describe()}", warning=True
            )


async def reconcile(svc: Services, disk: Disk, events: Events) -> None:
    """Bring the LUN, its masking and its attachment to what the spec asks."""
    if disk.spec_error is not None:
        raise disk.spec_error
    steps = DiskSteps(svc, disk, events)
    if disk.status.observed_generation != disk.generation and disk.status.condition(Cond.READY):
        # a changed spec: not Ready for it until every step has run again
        steps.condition(
            Cond.READY, False, "Reconciling", f"applying generation {disk.generation} of the spec"
        )
    node_name = disk.spec.node_name or None
    attached = disk.status.attachment
    # the LUN is made while the lookups of where it goes run (a failed lookup still finds the
    # LUN made, as it would have in order)
    lun, (own, vm, provider_id) = await both(steps.provision(), steps.whose(node_name))
    if own is not None:  # the node logs in itself: no hypervisor involved
        if attached is not None and attached.mode is AttachMode.HYPERVISOR:
            await steps.unmap_everywhere(await steps.detach_recorded(lun.naa))
            await steps.save("detach", phase=Phase.DETACHING)
        await initiator_node.serve(steps, lun, own)
        return
    if attached is not None and (vm is None or attached.vm_id != vm.id):
        await steps.unmap_everywhere(await steps.detach_recorded(lun.naa))
        await steps.save("detach", phase=Phase.DETACHING)
    if vm is None:
        steps.condition(Cond.ATTACHED, False, "NoNode", "spec.nodeName is empty: not attached")
        if disk.status.condition(Cond.CLUSTER_READY) is not None:
            steps.condition(Cond.CLUSTER_READY, None, "NotAttached", "not attached to any VM")
        steps.condition(Cond.READY, True, "Provisioned", "the LUN exists and is not attached to any node")
        await steps.save("ready", phase=Phase.READY, message="")
        return
    previous = disk.status.initiator_group  # `mask` records the new one
    igroup = await steps.mask(lun, vm)
    # a move to another host or cluster leaves the old igroup, whose hosts then rescan; until
    # they did, status names the old igroup, so that a retry (or a delete) rescans them
    try:
        await steps.rescan(await steps.unmap_all(keep=igroup, recorded=previous))
    except LunbridgeError:
        if previous is not None:
            disk.status.initiator_group = previous
        raise
    scope_hosts = await steps.scope_hosts(vm)
    others = [h for h in scope_hosts if h.id != vm.host.id]
    if not others:
        await steps.reveal(vm, lun.naa, node_name or "", provider_id)
        steps.cluster_ready(scope_hosts, lun.naa, pinned=vm)
        await steps.attach(lun, vm, node_name or "", provider_id)
        await steps.save("attach", phase=Phase.READY, message="")
        return
    steps.revealing(others)
    # the other hosts rescan beside the VM's (one rescan of each serves every disk revealed
    # meanwhile); the attach waits for none of them, and when they were quicker, the write
    # that says Ready says ClusterReady too
    revealed = asyncio.create_task(steps.reveal_others(others, lun.naa))
    try:
        await steps.reveal(vm, lun.naa, node_name or "", provider_id)
        await steps.attach(lun, vm, node_name or "", provider_id)
        if revealed.done():
            steps.cluster_ready(scope_hosts, lun.naa, revealed.result())
        await steps.save("attach", phase=Phase.READY, message="")
        problems = await revealed
    finally:
        if not revealed.done():
            revealed.cancel()
            await asyncio.gather(revealed, return_exceptions=True)
    steps.cluster_ready(scope_hosts, lun.naa, problems)
    await steps.save("cluster", phase=Phase.READY)


async def delete(svc: Services, disk: Disk, events: Events) -> None:
    """Run the steps backwards: detach -> unmap -> rescan -> delete the LUN unless Retain."""
    if disk.spec_error is not None and not disk.made_anything:
        return  # a spec never read: nothing was made for it
    users = await svc.kube.volume_users(disk.name)
    if users:
        raise Busy(
            f"still in use by {', '.join(users)}: deleting it now would cut the disk from a running "
            "pod; it is deleted once nothing uses it"
        )
    try:
        steps = DiskSteps(svc, disk, events)
    except InvalidArgument:
        if not disk.made_anything:
            return  # its backend was never known, so nothing was made anywhere
        raise
    storage: StorageBackend = steps.storage
    try:
        lun = await storage.get_lun(disk.lun_name)
    except NotFound:
        lun = None
    naa = lun.naa if lun else (disk.status.lun.naa if disk.status.lun else None)
    scope: list[Host] = []
    if naa and disk.status.attachment is not None:
        scope = await steps.detach_recorded(naa)
        await steps.save("detach", phase=Phase.DELETING)
    if lun is not None:
        await steps.unmap_everywhere(scope)
    else:
        await steps.rescan(hosts.unique(scope))
    if lun is None:
        if disk.spec.reclaim_policy is ReclaimPolicy.DELETE:
            # no LUN (never made, or deleted before a crash): the backend still takes away what
            # it made on the way to one (ontap: the disk's FlexVol); a missing LUN is success
            await storage.delete_lun(disk.lun_name)
        return
    await steps.save("unmap", phase=Phase.DELETING)
    if disk.spec.reclaim_policy is ReclaimPolicy.DELETE:
        with measured(KIND, "delete"):
            await storage.delete_lun(lun.name)
        events("Deleted", f"deleted LUN {lun.name} from storage backend {steps.backend_name}")
    else:
        events("Retained", f"kept LUN {lun.name} ({lun.naa}) on storage backend {steps.backend_name}: "
                           "reclaimPolicy is Retain")  # fmt: skip


def forget(disk: Disk, events: Events) -> None:
    """Let a disk go without its teardown (the user asked, with FORGET_ANNOTATION): say what
    stays behind, so it can be cleaned by hand."""
    left = disk.left_behind()
    events(
        "Forgotten",
        f"deleted without teardown as {FORGET_ANNOTATION}=true asks; left behind: "
        + ("; ".join(left) if left else "nothing lunbridge recorded"),
        warning=True,
    )
