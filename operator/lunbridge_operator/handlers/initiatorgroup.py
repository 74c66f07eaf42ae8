"""kopf handlers of InitiatorGroup objects and of Nodes (which get their group made)."""

from __future__ import annotations

import time
from typing import Any

import kopf

from lunbridge.api import GROUP, INITIATOR_GROUP_PLURAL, VERSION
from lunbridge.errors import LunbridgeError
from lunbridge.models import InitiatorGroupSpec, InitiatorGroupStatus
from lunbridge_operator.handlers.common import events_for, kopf_error, object_lock, services
from lunbridge_operator.reconcile import initiatorgroup


async def _sync(body: kopf.Body, memo: Any, retry: int) -> None:
    name = body.metadata.name or ""
    raw = {k: v for k, v in dict(body.status).items() if k != "kopf"}
    async with object_lock(memo, "InitiatorGroup", name):
        try:
            await initiatorgroup.reconcile(
                services(memo),
                name,
                body.metadata.get("generation"),
                InitiatorGroupSpec.from_dict(dict(body.spec), "spec"),
                InitiatorGroupStatus.from_dict(raw, "status"),
                events_for(body),
            )
        except LunbridgeError as exc:
            events_for(body)("SyncFailed", str(exc), warning=True)
            raise kopf_error(exc, retry) from exc
    memo.checked[("igroup", name)] = time.monotonic()


@kopf.on.resume(GROUP, VERSION, INITIATOR_GROUP_PLURAL)
@kopf.on.create(GROUP, VERSION, INITIATOR_GROUP_PLURAL)
@kopf.on.update(GROUP, VERSION, INITIATOR_GROUP_PLURAL, field="spec")
async def reconcile_initiator_group(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    await _sync(body, memo, retry)


@kopf.timer(GROUP, VERSION, INITIATOR_GROUP_PLURAL, interval=10.0, initial_delay=10.0, idle=10.0)
async def resync_initiator_group(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Every --resync-seconds: a host's HBAs may have changed."""
    if time.monotonic() - memo.checked.get(("igroup", body.metadata.name), 0.0) >= memo.config.resync_seconds:
        await _sync(body, memo, int(kwargs.get("retry", 0)))


@kopf.on.delete(GROUP, VERSION, INITIATOR_GROUP_PLURAL)
async def delete_initiator_group(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    try:
        await initiatorgroup.delete(services(memo), body.metadata.name or "", events_for(body))
    except LunbridgeError as exc:
        events_for(body)("DeleteFailed", str(exc), warning=True)
        raise kopf_error(exc, retry) from exc


@kopf.on.event("", "v1", "nodes")
async def node_seen(*, body: kopf.Body, memo: Any, logger: Any, **_: Any) -> None:
    """Every node whose VM the hypervisor knows gets the InitiatorGroup of its host (or
    cluster). Node events are frequent (status heartbeats): each providerID is handled once per
    --resync-seconds, and without writing anything to the Node."""
    provider_id = body.spec.get("providerID")
    if not provider_id or body.metadata.get("deletionTimestamp"):
        return
    key = ("node", provider_id)
    if time.monotonic() - memo.checked.get(key, -1e9) < memo.config.resync_seconds:
        return
    memo.checked[key] = time.monotonic()
    try:
        name = await initiatorgroup.ensure_for_node(services(memo), provider_id)
    except LunbridgeError as exc:
        logger.warning("node %s: no InitiatorGroup made: %s", body.metadata.name, exc)
        return
    logger.debug("node %s is served by InitiatorGroup %s", body.metadata.name, name)
