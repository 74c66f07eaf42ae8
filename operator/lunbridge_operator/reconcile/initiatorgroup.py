"""InitiatorGroup objects: resolve the hosts they serve (named hosts, or the hosts running the
named nodes, widened to whole clusters by scope), ask the hypervisor for those hosts'
initiators, and keep the storage igroup holding exactly them. Run again periodically, so a
host's changed HBAs reach the storage server.

Nodes get their group made for them: every host (or cluster, by scope) that runs a node has
one, named after it (`host-<name>`, `cluster-<name>`). A group a user made is left as written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lunbridge.api import INITIATOR_GROUP_PLURAL
from lunbridge.errors import Conflict, NotFound
from lunbridge.hypervisor.base import Host, Scope
from lunbridge.san import Transport
from lunbridge_operator import conditions as cond
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile.igroups import (
    addresses,
    ensure_igroup_object,
    ensure_storage_igroup,
    initiators_status,
)
from lunbridge_operator.reconcile.services import Events, Services

KIND = "InitiatorGroup"


async def _hosts(svc: Services, spec: dict[str, Any]) -> list[Host]:
    hosts: dict[str, Host] = {}
    for name in spec.get("hosts") or []:
        host = await svc.hypervisor.find_host(name)
        hosts[host.id] = host
    for node_name in spec.get("nodeNames") or []:
        try:
            node = await svc.kube.node(node_name)
        except NotFound:
            raise NotFound(f"Node {node_name} (in spec.nodeNames) does not exist") from None
        provider_id = (node.get("spec") or {}).get("provider_id")
        if not provider_id:
            raise NotFound(f"Node {node_name} has no spec.providerID, so its VM's host is unknown")
        vm = await svc.hypervisor.find_vm(provider_id)
        hosts[vm.host.id] = vm.host
    if spec.get("scope") == Scope.CLUSTER.value:
        widened = await asyncio.gather(*(svc.hypervisor.cluster_hosts(h) for h in list(hosts.values())))
        for members in widened:
            hosts.update({h.id: h for h in members})
    return sorted(hosts.values(), key=lambda h: h.name)


async def reconcile(
    svc: Services,
    name: str,
    generation: int | None,
    spec: dict[str, Any],
    status: dict[str, Any],
    events: Events,
) -> dict[str, Any]:
    """Bring the storage igroup to the initiators of the group's hosts; returns the new status."""
    transport = Transport(spec.get("protocol", svc.transport.value))
    with measured(KIND, "sync"):
        hosts = await _hosts(svc, spec)
        found = await asyncio.gather(*(svc.hypervisor.host_initiators(h) for h in hosts))
        initiators = [i for per_host in found for i in per_host]
        wanted = addresses(initiators, transport)
        before = {row.get("address") for row in status.get("initiators") or []}
        group = await ensure_storage_igroup(svc.storage, name, transport, wanted)
        mapped = await svc.storage.list_mappings(igroup=name)
    if set(group.initiators) != before:
        events("Synced", f"igroup {name} holds {len(group.initiators)} {transport.value} initiators of "
                         f"{', '.join(h.name for h in hosts) or 'no host'}")  # fmt: skip
    new = dict(status)
    new.update(
        storageName=name,
        hosts=[h.name for h in hosts],
        initiators=initiators_status(initiators, transport),
        mappedLuns=len(mapped),
        observedGeneration=generation,
    )
    if wanted:
        cond.set_condition(
            new, cond.READY, True, "InSync", f"{len(wanted)} initiators on the storage server", generation
        )
    else:
        message = f"the hosts report no {transport.value} initiator: no host can see LUNs mapped here"
        cond.set_condition(new, cond.READY, False, "NoInitiators", message, generation)
    await svc.kube.patch_status(INITIATOR_GROUP_PLURAL, name, new)
    return new


async def delete(svc: Services, name: str, events: Events) -> None:
    """Delete the storage igroup; refused (Conflict) while LUNs are still mapped to it."""
    mapped = await svc.storage.list_mappings(igroup=name)
    if mapped:
        luns = ", ".join(sorted(m.lun for m in mapped)[:5])
        raise Conflict(
            f"igroup {name} still has {len(mapped)} LUNs mapped ({luns}); waiting for their disks to go"
        )
    await svc.storage.delete_igroup(name)
    events("Deleted", f"deleted igroup {name} on the storage server")


async def ensure_for_node(svc: Services, provider_id: str) -> str:
    """Make the InitiatorGroup of the host (or cluster) running this node's VM; its name."""
    vm = await svc.hypervisor.find_vm(provider_id)
    scope = svc.scope_for(vm.host, None)
    name = naming.igroup_name(vm.host, scope)
    await ensure_igroup_object(svc.kube, name, vm.host, scope, svc.transport)
    return name
