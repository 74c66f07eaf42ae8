"""kopf handlers of DiskSnapshot objects; each only adapts kopf to `reconcile.disksnapshot`."""

from __future__ import annotations

import contextlib
from typing import Any

import kopf

from lunbridge.api import DISK_SNAPSHOT_PLURAL, FORGET_ANNOTATION, GROUP, VERSION
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
            reason, delay = classify(exc)
            snap.condition(False, reason, str(exc))
            snap.status.message, snap.status.ready_to_use = str(exc), False
            snap.status.phase = SnapshotPhase.FAILED if delay is None else SnapshotPhase.PENDING
            events_for(body)(reason, str(exc), warning=True)
            with contextlib.suppress(LunbridgeError):
                await snap.save(services(memo))
            raise kopf_error(exc, retry) from exc


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
            reason, delay = classify(exc)
            left = "; ".join(snap.left_behind()) or "nothing recorded"
            message = (
                f"cannot delete yet ({reason}): {exc}; the finalizer stays until it can (still there: "
                f"{left}); annotate {FORGET_ANNOTATION}=true to let it go as it is"
            )
            snap.condition(False, "DeleteBlocked", message)
            snap.status.message, snap.status.phase = message, SnapshotPhase.DELETING
            events_for(body)("DeleteFailed", message, warning=True)
            with contextlib.suppress(LunbridgeError):
                await snap.save(services(memo))
            raise kopf.TemporaryError(message, delay=backoff(delay or 30.0, retry)) from exc
