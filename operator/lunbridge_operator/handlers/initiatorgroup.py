"""kopf handlers of InitiatorGroup objects and of Nodes (which get their group made)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import kopf

from lunbridge.api import GROUP, INITIATOR_GROUP_PLURAL, VERSION
from lunbridge.errors import InvalidArgument, LunbridgeError
from lunbridge.models import ConditionType, InitiatorGroupSpec, InitiatorGroupStatus, merge_patch
from lunbridge.models.initiatorgroup import managed_by_lunbridge
from lunbridge_operator.handlers.common import classify, events_for, kopf_error, object_lock, services
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
                managed=managed_by_lunbridge(body.metadata.labels),
            )
        except LunbridgeError as exc:
            events_for(body)("SyncFailed", str(exc), warning=True)
            await _not_ready(memo, name, body.metadata.get("generation"), raw, exc)
            raise kopf_error(exc, retry) from exc
    memo.checked[("igroup", name)] = time.monotonic()


async def _not_ready(
    memo: Any, name: str, generation: int | None, raw: dict[str, Any], exc: LunbridgeError
) -> None:
    """Record why the group is not in sync: Ready False with the error's reason and message
    (a group whose spec names an unknown host or backend says so in its status, not only in
    an Event)."""
    try:
        status = InitiatorGroupStatus.from_dict(raw, "status")
    except InvalidArgument:
        status = InitiatorGroupStatus()
    written = status.to_dict()
    reason, _ = classify(exc)
    status.set_condition(ConditionType.READY, False, reason, str(exc), generation)
    patch = merge_patch(written, status.to_dict())
    with contextlib.suppress(LunbridgeError):  # the API is unreachable: kopf retries anyway
        await services(memo).kube.patch_status(INITIATOR_GROUP_PLURAL, name, patch)


@kopf.index(GROUP, VERSION, INITIATOR_GROUP_PLURAL)
def initiator_groups(*, name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Every InitiatorGroup's labels and spec, by name: a disk's mask step finds its host's
    group here (kopf's watch keeps it current) instead of reading it from the API."""
    meta = {"name": name, "labels": dict(body.metadata.labels)}
    return {name: {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": meta,
                   "spec": dict(body.spec)}}  # fmt: skip


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


@kopf.index("", "v1", "nodes")
def node_provider_ids(*, name: str, body: kopf.Body, **_: Any) -> dict[str, str]:
    """Every Node's spec.providerID, by name: a disk finds its node's VM by it without
    reading the Node (kopf's watch of Nodes, which `node_seen` needs anyway, keeps it current)."""
    return {name: str(body.spec.get("providerID") or "")}


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
