"""kopf handlers of DiskSnapshot objects; each only adapts kopf to `reconcile.disksnapshot`."""

from __future__ import annotations

from typing import Any

import kopf

from lunbridge.api import DISK_SNAPSHOT_PLURAL, FORGET_ANNOTATION, GROUP, VERSION
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
from lunbridge_operator.reconcile import disksnapshot
from lunbridge_operator.reconcile.disksnapshot import Snap


def _snap(body: kopf.Body) -> Snap:
    return Snap.from_object(
        body.metadata.name or "",
        body.metadata.uid or "",
        body.metadata.get("generation"),
        body.spec,
        body.status,
    )


@kopf.on.resume(GROUP, VERSION, DISK_SNAPSHOT_PLURAL)
@kopf.on.create(GROUP, VERSION, DISK_SNAPSHOT_PLURAL)
@kopf.on.update(GROUP, VERSION, DISK_SNAPSHOT_PLURAL, field="spec")
async def reconcile_disk_snapshot(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    snap = _snap(body)
    async with object_lock(memo, "DiskSnapshot", snap.name):
        try:
            await disksnapshot.reconcile(services(memo), snap, events_for(body))
        except LunbridgeError as exc:
            mark = unready_snapshot(snap.status)
            raise await record_failure(memo, body, snap, exc, retry, mark) from exc


@kopf.on.delete(GROUP, VERSION, DISK_SNAPSHOT_PLURAL)
async def delete_disk_snapshot(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    """Delete (or keep) the storage snapshot; the finalizer stays until that worked, and every
    failure says why. FORGET_ANNOTATION=true lets the object go as it is."""
    snap = _snap(body)
    if (body.metadata.annotations or {}).get(FORGET_ANNOTATION) == "true":
        left = "; ".join(snap.left_behind()) or "nothing lunbridge recorded"
        events_for(body)("Forgotten", f"deleted without teardown as {FORGET_ANNOTATION}=true asks; "
                                      f"left behind: {left}", warning=True)  # fmt: skip
        return
    async with object_lock(memo, "DiskSnapshot", snap.name):
        try:
            await disksnapshot.delete(services(memo), snap, events_for(body))
        except LunbridgeError as exc:
            left_behind = snap.left_behind()
            raise await delete_blocked(
                memo, body, snap, exc, retry, SnapshotPhase.DELETING, left=left_behind
            ) from exc
