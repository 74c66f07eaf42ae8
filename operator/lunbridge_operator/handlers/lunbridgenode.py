"""kopf handlers of LunbridgeNode objects; they only adapt kopf to `reconcile.lunbridgenode`.
Claims are decided over every node at once, under one lock, whenever a node's publication
changes or a node goes; a refused node gets a warning Event naming the owner."""

from __future__ import annotations

from typing import Any

import kopf

from lunbridge.api import GROUP, LUNBRIDGE_NODE_PLURAL, VERSION
from lunbridge.errors import LunbridgeError
from lunbridge_operator.handlers.common import events_for, kopf_error, object_lock, services
from lunbridge_operator.reconcile import lunbridgenode


@kopf.index(GROUP, VERSION, LUNBRIDGE_NODE_PLURAL)
def lunbridge_node_modes(*, name: str, body: kopf.Body, **_: Any) -> dict[str, str]:
    """Every LunbridgeNode's spec.mode, by name: a disk bound for a node the hypervisor
    attaches to (mode `hypervisor`) takes the VM's path without reading its LunbridgeNode."""
    return {name: str(body.spec.get("mode") or "")}


@kopf.on.resume(GROUP, VERSION, LUNBRIDGE_NODE_PLURAL)
@kopf.on.create(GROUP, VERSION, LUNBRIDGE_NODE_PLURAL)
@kopf.on.update(GROUP, VERSION, LUNBRIDGE_NODE_PLURAL, field="spec")
@kopf.on.delete(GROUP, VERSION, LUNBRIDGE_NODE_PLURAL, optional=True)
async def decide_claims(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    async with object_lock(memo, "LunbridgeNode", "*"):
        try:
            refused = await lunbridgenode.reconcile_all(services(memo))
        except LunbridgeError as exc:
            raise kopf_error(exc, retry) from exc
    mine = refused.get(body.metadata.name or "")
    if mine and not body.metadata.get("deletionTimestamp"):
        said = ", ".join(f"{i} belongs to node {n}" for i, n in sorted(mine.items()))
        events_for(body)("InitiatorClaimed", f"refused: {said}", warning=True)
