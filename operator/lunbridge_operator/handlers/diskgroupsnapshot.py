"""kopf handlers of DiskGroupSnapshot objects; each only adapts kopf to
`reconcile.diskgroupsnapshot`."""

from __future__ import annotations

from typing import Any

import kopf

from lunbridge.api import DISK_GROUP_SNAPSHOT_PLURAL, FORGET_ANNOTATION, GROUP, VERSION
from lunbridge.errors import LunbridgeError
from lunbridge.models import SnapshotPhase
from lunbridge_operator.handlers.common import (
    delete_blocked,
    events_for,
    object_lock,
    record_failure,
    services,
    unready_snapshot,
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
            mark = unready_snapshot(group.status)
            raise await record_failure(memo, body, group, exc, retry, mark) from exc


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
            raise await delete_blocked(
                memo, body, group, exc, retry, SnapshotPhase.DELETING, left=None, event=False, delay=5.0
            ) from exc
