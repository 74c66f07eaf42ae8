"""InitiatorGroup objects: resolve the hosts they serve (named hosts, or the hosts running the
named nodes, widened to whole clusters by scope), ask the hypervisor for those hosts'
initiators, and keep the storage igroup holding exactly them. A named node that logs in with
its own initiators (its LunbridgeNode says `initiator`) adds the initiators the operator
accepted for it instead, and no host. Run again periodically, so a host's changed HBAs (or a
node's changed IQN) reach the storage server.

A host the group covered and no longer does (it left the cluster, or a named node's VM moved
away) keeps its initiators while a VM on it still has a LUN of this igroup as a disk: taking
them away would cut that VM's I/O. It is listed in `status.retainedHosts` until then.

Nodes get their group made for them: every host (or cluster, by scope) that runs a node has
one, named after it (`host-<name>`, `cluster-<name>`). A group a user made is left as written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from lunbridge.api import INITIATOR_GROUP_PLURAL
from lunbridge.errors import Conflict, InvalidArgument, NotFound
from lunbridge.hypervisor.base import Host, Initiator, LunDiskLister, Scope
from lunbridge.models import (
    ConditionType,
    InitiatorGroupSpec,
    InitiatorGroupStatus,
    LunbridgeNode,
    merge_patch,
)
from lunbridge.san import Transport
from lunbridge.storage.base import StorageBackend
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile import initiator_node
from lunbridge_operator.reconcile.igroups import (
    addresses,
    ensure_igroup_object,
    ensure_storage_igroup,
    initiator_rows,
)
from lunbridge_operator.reconcile.services import Events, Services

KIND = "InitiatorGroup"
Backend = tuple[str, StorageBackend]  # a backend's name, and the backend


async def _members(
    svc: Services, name: str, spec: InitiatorGroupSpec, before: list[str], managed: bool
) -> tuple[list[Host], list[LunbridgeNode]]:
    """The hypervisor hosts the group serves (named hosts, the hosts of named guest nodes,
    widened by scope), and the named nodes that log in with their own initiators.

    A managed cluster group serves the cluster it is named after (`cluster-<name>`): a host
    that left it is no member even when it is the one in `spec.hosts`, and the cluster is
    found again through any host of `before` (the last `status.hosts`) still in it."""
    hosts: dict[str, Host] = {}
    own: list[LunbridgeNode] = []
    for host_name in spec.hosts:
        host = await svc.hypervisor.find_host(host_name)
        hosts[host.id] = host
    for node_name in spec.node_names:
        node_object = await initiator_node.initiator_node(svc, node_name)
        if node_object is not None:
            own.append(node_object)
            continue
        try:
            provider_id = await svc.provider_id(node_name)
        except NotFound:
            raise NotFound(f"Node {node_name} (in spec.nodeNames) does not exist") from None
        if not provider_id:
            raise NotFound(
                f"Node {node_name} has no spec.providerID, so its VM's host is unknown, and no "
                "LunbridgeNode says it logs in with its own initiators"
            )
        vm = await svc.hypervisor.find_vm(provider_id)
        hosts[vm.host.id] = vm.host
    if spec.scope is not Scope.CLUSTER:
        return sorted(hosts.values(), key=lambda h: h.name), own

    def named_for_this(host: Host) -> bool:
        return not managed or naming.igroup_name(host, Scope.CLUSTER) == name

    widened = await asyncio.gather(*(svc.hypervisor.cluster_hosts(h) for h in list(hosts.values())))
    members = {h.id: h for per_cluster in widened for h in per_cluster if named_for_this(h)}
    if not managed:
        members.update(hosts)
    else:
        for prior_name in before:
            if prior_name in {h.name for h in members.values()}:
                continue
            with contextlib.suppress(NotFound):  # gone from the hypervisor: it serves nothing
                prior = await svc.hypervisor.find_host(prior_name)
                found = await svc.hypervisor.cluster_hosts(prior) if named_for_this(prior) else []
                members.update({h.id: h for h in found if named_for_this(h)})
    return sorted(members.values(), key=lambda h: h.name), own


def _own_initiators(nodes: list[LunbridgeNode], transport: Transport) -> list[Initiator]:
    """The accepted initiators of nodes that log in themselves (none for a node with none)."""
    found = []
    for node in nodes:
        try:
            addresses_of_node = initiator_node.node_addresses(node, transport)
        except NotFound:
            continue
        adapter = "open-iscsi" if transport is Transport.ISCSI else "fc_host"
        found += [Initiator(transport, a, node.name, adapter) for a in addresses_of_node]
    return found


async def _retained(
    svc: Services, name: str, before: list[str], members: list[Host], backends: Iterable[Backend]
) -> list[Host]:
    """The hosts in `before` (the group's last `status.hosts`) that are not `members` now and
    still run a VM with a LUN mapped to igroup `name` as a disk (by NAA), sorted by name."""
    departed = set(before) - {h.name for h in members}
    if not departed or not isinstance(svc.hypervisor, LunDiskLister):
        return []
    on_departed = [d for d in await svc.hypervisor.list_lun_disks() if d.vm.host.name in departed]
    if not on_departed:
        return []
    naas: set[str] = set()
    for _, backend in backends:
        mapped = {m.lun for m in await backend.list_mappings(igroup=name)}
        if mapped:
            naas.update(lun.naa for lun in await backend.list_luns() if lun.name in mapped)
    kept = {d.vm.host.name: d.vm.host for d in on_departed if d.naa in naas}
    return sorted(kept.values(), key=lambda h: h.name)


async def _backends(svc: Services, name: str, spec: InitiatorGroupSpec) -> list[Backend]:
    """Where the group's igroup lives: `spec.backend`; else the default backend and every
    other backend that already holds an igroup of that name (a disk's map step made it)."""
    if spec.backend:
        return [svc.backends.get(spec.backend)]
    found = []
    for backend_name, backend in svc.backends:
        if backend_name == svc.backends.default:
            found.append((backend_name, backend))
            continue
        try:
            await backend.get_igroup(name)
        except NotFound:
            continue
        found.append((backend_name, backend))
    return found


async def reconcile(
    svc: Services,
    name: str,
    generation: int | None,
    spec: InitiatorGroupSpec,
    status: InitiatorGroupStatus,
    events: Events,
    *,
    managed: bool = False,
) -> InitiatorGroupStatus:
    """Bring the storage igroup(s) to the initiators of the group's hosts; the new status.
    `managed`: the operator made the group (its `lunbridge.io/managed-by` label)."""
    written = status.to_dict()
    transport = spec.protocol
    with measured(KIND, "sync"):
        members, own = await _members(svc, name, spec, status.hosts, managed)
        backends = await _backends(svc, name, spec)
        retained = await _retained(svc, name, status.hosts, members, backends)
        hosts = sorted(members + retained, key=lambda h: h.name)
        found = await asyncio.gather(*(svc.hypervisor.host_initiators(h) for h in hosts))
        initiators = [i for per_host in found for i in per_host] + _own_initiators(own, transport)
        wanted = addresses(initiators, transport)
        before = {row.address for row in status.initiators}
        mapped = 0
        backend_names = []
        held: set[str] = set()
        for backend_name, backend in backends:
            try:
                group = await ensure_storage_igroup(backend, name, transport, wanted, spec.os_type)
            except InvalidArgument as exc:
                if "igroup name" not in str(exc):
                    raise
                # a name the API server takes (up to 253 characters) that the backend does not
                raise InvalidArgument(
                    f"metadata.name {name!r} cannot name an igroup on storage backend {backend_name}: {exc}"
                ) from exc
            held.update(group.initiators)
            mapped += len(await backend.list_mappings(igroup=name))
            backend_names.append(backend_name)
    if held != before:
        of = [h.name for h in hosts] + [f"node {n.name}" for n in own]
        events("Synced", f"igroup {name} holds {len(held)} {transport.value} initiators of "
                         f"{', '.join(of) or 'no host'}")  # fmt: skip
    retained_names = [h.name for h in retained]
    if retained_names and retained_names != status.retained_hosts:
        which = ("host " if len(retained_names) == 1 else "hosts ") + ", ".join(retained_names)
        events("HostRetained", f"{which} left the group's scope but still run VMs with LUNs of igroup "
                               f"{name}; their initiators stay until those VMs move")  # fmt: skip
    new = status.model_copy(deep=True)
    new.storage_name = name
    new.backend = ", ".join(backend_names)
    new.hosts = [h.name for h in hosts]
    new.retained_hosts = retained_names
    new.initiators = initiator_rows(initiators, transport)
    new.mapped_luns = mapped
    new.observed_generation = generation
    if wanted:
        message = f"{len(wanted)} initiators on the storage server"
        new.set_condition(ConditionType.READY, True, "InSync", message, generation)
    else:
        message = f"the hosts report no {transport.value} initiator: no host can see LUNs mapped here"
        new.set_condition(ConditionType.READY, False, "NoInitiators", message, generation)
    patch = merge_patch(written, new.to_dict())
    if patch:
        await svc.kube.patch_status(INITIATOR_GROUP_PLURAL, name, patch)
    return new


async def delete(svc: Services, name: str, events: Events) -> None:
    """Delete the storage igroup on every backend; refused (Conflict) while LUNs are mapped to it."""
    for backend_name, backend in svc.backends:
        mapped = await backend.list_mappings(igroup=name)
        if mapped:
            luns = ", ".join(sorted(m.lun for m in mapped)[:5])
            raise Conflict(
                f"igroup {name} still has {len(mapped)} LUNs mapped on backend {backend_name} ({luns}); "
                "waiting for their disks to go"
            )
    for _, backend in svc.backends:
        await backend.delete_igroup(name)
    events("Deleted", f"deleted igroup {name} on the storage backends {', '.join(svc.backends.names)}")


async def ensure_for_node(svc: Services, provider_id: str) -> str:
    """Make the InitiatorGroup of the host (or cluster) running this node's VM; its name."""
    vm = await svc.hypervisor.find_vm(provider_id)
    scope = svc.scope_for(vm.host, None)
    name = naming.igroup_name(vm.host, scope)
    await ensure_igroup_object(svc.kube, name, vm.host, scope, svc.transport)
    return name
