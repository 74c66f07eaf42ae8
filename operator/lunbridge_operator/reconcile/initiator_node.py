"""Disks of nodes that log in with their own initiators (`initiator` mode: bare metal, or a VM of
a hypervisor lunbridge does not manage): the other branch of the design's first question.

Such a node says so on its LunbridgeNode (the node plugin publishes its mode and its own IQN or
WWPNs; the operator accepts each initiator for one node only). Its disk is masked to an igroup
of exactly that node's accepted initiators, `node-<node name>`, mapped, and that is all on the
operator's side: no hypervisor is asked anything. The status's attachment then says where the
node logs in (`targetIqn`, `portals`, `lunId`), and ControllerPublishVolume hands that to the
node plugin, which creates the open-iscsi node record for exactly that target and portal, logs
in, and scans that LUN id.

CHAP: a backend configured with `chapDir` (the folder its CHAP Secret is mounted at) gives every
node igroup those accounts, so a node must log in with them (the StorageClass's node-stage
secret hands the same Secret to the node plugin). Hypervisor hosts' igroups are unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lunbridge.api import LUNBRIDGE_NODE_PLURAL
from lunbridge.errors import InvalidArgument, NotFound
from lunbridge.models import AttachmentStatus, AttachMode, LunbridgeNode, Phase
from lunbridge.models import ConditionType as Cond
from lunbridge.san import Transport
from lunbridge.storage.base import Lun, OsType
from lunbridge_operator import naming
from lunbridge_operator.metrics import measured
from lunbridge_operator.reconcile.disk import KIND
from lunbridge_operator.reconcile.igroups import ensure_node_igroup_object, ensure_storage_igroup
from lunbridge_operator.reconcile.services import Services

if TYPE_CHECKING:  # the disk's steps call this module
    from lunbridge_operator.reconcile.virtualdisk import DiskSteps

__all__ = ["initiator_node", "node_addresses", "serve"]


async def initiator_node(svc: Services, node_name: str) -> LunbridgeNode | None:
    """Node `node_name`'s LunbridgeNode when the node logs in itself; None when it is a guest
    the hypervisor attaches disks to (or has published nothing: the hypervisor path, as before
    nodes published their mode). A node kopf's watch saw in `hypervisor` mode is not read."""
    known = svc.known_node_mode
    if known is not None and known(node_name) == AttachMode.HYPERVISOR.value:
        return None
    try:
        raw = await svc.kube.get(LUNBRIDGE_NODE_PLURAL, node_name)
    except NotFound:
        return None
    try:
        node = LunbridgeNode.from_dict(raw)
    except InvalidArgument as exc:
        raise NotFound(f"LunbridgeNode {node_name} cannot be read: {exc}") from None
    return node if node.spec.mode is AttachMode.INITIATOR else None


def _of(transport: Transport, initiator: str) -> bool:
    return initiator.startswith(("iqn.", "eui.", "naa.")) == (transport is Transport.ISCSI)


def node_addresses(node: LunbridgeNode, transport: Transport) -> list[str]:
    """The node's initiators of `transport` the operator accepted for it (sorted). NotFound
    saying why when there is none: not published, not yet accepted, or claimed by another."""
    accepted = sorted(i for i in node.status.accepted if _of(transport, i))
    if accepted:
        return accepted
    claimed = {i: owner for i, owner in node.status.claimed.items() if _of(transport, i)}
    if claimed:
        said = ", ".join(f"{i} (node {owner})" for i, owner in sorted(claimed.items()))
        raise NotFound(
            f"node {node.name}'s {transport.value} initiators belong to other nodes: {said}; "
            f"see LunbridgeNode {node.name} (InitiatorClaimed)"
        )
    published = [i for i in node.spec.initiators if _of(transport, i)]
    if published:
        raise NotFound(
            f"node {node.name}'s {transport.value} initiators {', '.join(published)} are not "
            "accepted yet (LunbridgeNode status)"
        )
    kind = "IQN (/etc/iscsi/initiatorname.iscsi)" if transport is Transport.ISCSI else "FC WWPN"
    raise NotFound(
        f"node {node.name} logs in itself but publishes no {kind}; install its initiator, or "
        "change the operator's --protocol"
    )


async def serve(steps: DiskSteps, lun: Lun, node: LunbridgeNode) -> None:
    """Mask the LUN to the node's own initiators and record where the node logs in; Ready."""
    svc, disk, storage = steps.svc, steps.disk, steps.storage
    transport = svc.transport
    name = naming.node_igroup_name(node.name)
    with measured(KIND, "mask"):
        wanted = node_addresses(node, transport)
        group = await ensure_node_igroup_object(svc.kube, name, node.name, transport)
        if group.managed:
            await ensure_storage_igroup(storage, name, transport, wanted, OsType.LINUX)
            if transport is Transport.ISCSI:
                await storage.set_chap(name, svc.backends.chap(steps.backend_name))
        mapping = await storage.map_lun(lun.name, name)
    changed = (disk.status.initiator_group, disk.lun.id) != (name, mapping.lun_id)
    disk.status.initiator_group, disk.lun.id = name, mapping.lun_id
    steps.condition(Cond.MAPPED, True, "LunMapped", f"mapped as LUN {mapping.lun_id} to igroup {name}")
    if changed:
        steps.events("Mapped", f"mapped {lun.name} as LUN {mapping.lun_id} to igroup {name} "
                               f"({', '.join(wanted)}) of node {node.name}")  # fmt: skip
    await steps.save("map", phase=Phase.MAPPING, write=False)
    # a disk that moved here from another node or host leaves that igroup
    await steps.rescan(await steps.unmap_all(keep=name))
    target, portals = None, []
    if transport is Transport.ISCSI:
        found = await storage.login_portals(name)
        target = next((p.target for p in found if p.target), None)
        portals = [p.address for p in found]
        if not target or not portals:
            backend = steps.backend_name
            raise NotFound(f"storage backend {backend} names no target or portal for igroup {name}")
    status = disk.status
    before = status.attachment
    status.attachment = AttachmentStatus(
        mode=AttachMode.INITIATOR, node=node.name, target_iqn=target, portals=portals, lun_id=mapping.lun_id
    )
    where = f"target {target} at {', '.join(portals)}" if target else f"{transport.value} igroup {name}"
    logs_in = f"node {node.name} logs in to {where}, LUN {mapping.lun_id}"
    steps.condition(Cond.ATTACHED, True, "NodeLogsIn", logs_in)
    if status.condition(Cond.CLUSTER_READY) is not None:
        steps.condition(Cond.CLUSTER_READY, None, "InitiatorNode", "the node logs in itself: no host")
    steps.condition(Cond.READY, True, "Ready", f"LUN {lun.naa} is served to node {node.name}")
    if before != status.attachment:
        steps.events("Attached", f"{lun.naa} is served to node {node.name}: {where}, LUN {mapping.lun_id}")
    await steps.save("attach", phase=Phase.READY, message="")
