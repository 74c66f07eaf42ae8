"""kopf handlers of DiskGroupSnapshot objects; each only adapts kopf to
`reconcile.diskgroupsnapshot`."""

from __future__ import annotations

import contextlib
from typing import Any

import kopf

from lunbridge.api import DISK_GROUP_SNAPSHOT_PLURAL, FORGET_ANNOTATION, GROUP, VERSION
from lunbridge.errors import LunbridgeError
from lunbridge.models import SnapshotPhase
from lunbridge_operator.handlers.common import (
    backoff,
    classify,
    events_for,
    kopf_error,
    object_lock,
    services,
)
from lunbridge_operator.reconcile import diskgroupsnapshot
from lunbridge_operator.reconcile.diskgroupsnapshot import Group


def _group(body: kopf.Body) -> Group:
    return Group.from_object(
        body.metadata.name or "",
        body.metadata.uid or "",
        body.metadata.get("generation"),
        body.spec,
        body.status,
    )


@kopf.on.resume(GROUP, VERSION, DISK_GROUP_SNAPSHOT_PLURAL)
@kopf.on.create(GROUP, VERSION, DISK_GROUP_SNAPSHOT_PLURAL)
async def reconcile_disk_group_snapshot(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    group = _group(body)
    async with object_lock(memo, "DiskGroupSnapshot", group.name):
        try:
            await diskgroupsnapshot.reconcile(services(memo), group, events_for(body))
        except LunbridgeError as exc:
            reason, delay = classify(exc)
            group.condition(False, reason, str(exc))
            group.status.message, group.status.ready_to_use = str(exc), False
            group.status.phase = SnapshotPhase.FAILED if delay is None else SnapshotPhase.PENDING
            events_for(body)(reason, str(exc), warning=True)
            with contextlib.suppress(LunbridgeError):
                await group.save(services(memo))
            raise kopf_error(exc, retry) from exc


@kopf.on.delete(GROUP, VERSION, DISK_GROUP_SNAPSHOT_PLURAL)
async def delete_disk_group_snapshot(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    group = _group(body)
    if (body.metadata.annotations or {}).get(FORGET_ANNOTATION) == "true":
        left = "; ".join(group.left_behind()) or "nothing lunbridge recorded"
        events_for(body)("Forgotten", f"deleted without teardown; left behind: {left}", warning=True)
        return
    async with object_lock(memo, "DiskGroupSnapshot", group.name):
        try:
            await diskgroupsnapshot.delete(services(memo), group, events_for(body))
        except LunbridgeError as exc:
            reason, delay = classify(exc)
            message = f"cannot delete yet ({reason}): {exc}"
            group.condition(False, "DeleteBlocked", message)
            group.status.message, group.status.phase = message, SnapshotPhase.DELETING
            with contextlib.suppress(LunbridgeError):
                await group.save(services(memo))
            raise kopf.TemporaryError(message, delay=backoff(delay or 5.0, retry)) from exc
