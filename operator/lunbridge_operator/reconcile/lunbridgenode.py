"""LunbridgeNode objects: who owns which initiator. A node's plugin publishes its own initiators
(spec); an initiator belongs to the node that was accepted with it (`status.accepted`), a new
one to the oldest node publishing it, and every other node publishing it is refused it:
condition InitiatorsAccepted False, reason InitiatorClaimed, `status.claimed` naming the owner.
The claims are decided over all LunbridgeNodes at once, so a node that drops an initiator frees
it for the next in line.
"""

from __future__ import annotations

import logging
from typing import Any

from lunbridge.api import LUNBRIDGE_NODE_PLURAL
from lunbridge.errors import InvalidArgument, NotFound
from lunbridge.models import LunbridgeNode, merge_patch
from lunbridge.models.lunbridgenode import INITIATORS_ACCEPTED
from lunbridge_operator.reconcile.services import Services

log = logging.getLogger(__name__)


def owners(nodes: list[LunbridgeNode]) -> dict[str, str]:
    """initiator -> the node that owns it: the node already accepted with it keeps it; a new
    one goes to the oldest node publishing it (creation times have whole seconds: equal ones
    by name)."""
    found: dict[str, str] = {}
    for node in nodes:
        for initiator in set(node.status.accepted) & set(node.spec.initiators):
            found.setdefault(initiator, node.name)
    for node in sorted(nodes, key=lambda n: (n.metadata.creation_timestamp or "", n.name)):
        for initiator in node.spec.initiators:
            found.setdefault(initiator, node.name)
    return found


def decide(node: LunbridgeNode, owner: dict[str, str]) -> dict[str, Any]:
    """The node's status after the claims: its condition and what it was refused."""
    status = node.status.model_copy(deep=True)
    claimed = {i: owner[i] for i in node.spec.initiators if owner.get(i, node.name) != node.name}
    status.claimed = claimed
    status.accepted = [i for i in node.spec.initiators if i not in claimed]
    status.observed_generation = node.metadata.generation
    generation = node.metadata.generation
    mode = node.spec.mode.value
    if claimed:
        said = ", ".join(f"{i} (node {n})" for i, n in sorted(claimed.items()))
        state, reason, message = (
            False,
            "InitiatorClaimed",
            f"published first by another node, refused here: {said}",
        )
    elif node.spec.initiators:
        state, reason, message = True, "Accepted", f"{mode} node: {', '.join(node.spec.initiators)}"
    else:
        state, reason, message = True, "NoInitiators", f"{mode} node without initiators of its own"
    status.set_condition(INITIATORS_ACCEPTED, state, reason, message, generation)
    return status.to_dict()


async def reconcile_all(svc: Services) -> dict[str, dict[str, str]]:
    """Decide every LunbridgeNode's claims and write the statuses that changed; the refused
    initiators of each node that has any ({node: {initiator: owner}})."""
    nodes: list[LunbridgeNode] = []
    for raw in await svc.kube.list(LUNBRIDGE_NODE_PLURAL):
        try:
            nodes.append(LunbridgeNode.from_dict(raw))
        except InvalidArgument:
            continue
    owner = owners([n for n in nodes if not n.metadata.deletion_timestamp])
    log.debug("initiator owners: %s", owner)
    refused: dict[str, dict[str, str]] = {}
    for node in nodes:
        wanted = decide(node, owner)
        patch = merge_patch(node.status.to_dict(), wanted)
        if patch:
            try:
                await svc.kube.patch_status(LUNBRIDGE_NODE_PLURAL, node.name, patch)
            except NotFound:
                continue
        claimed: dict[str, str] = wanted.get("claimed") or {}
        if claimed:
            refused[node.name] = claimed
    return refused
