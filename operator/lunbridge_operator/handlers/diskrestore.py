"""kopf handlers of DiskRestore actions; each only adapts kopf to `reconcile.diskrestore`.
The restore holds its VirtualDisk's lock, so no publish of that disk runs meanwhile."""

from __future__ import annotations

import contextlib
from typing import Any

import kopf

from lunbridge.api import DISK_RESTORE_PLURAL, GROUP, VERSION
from lunbridge.errors import LunbridgeError
from lunbridge.models import RestorePhase
from lunbridge.models.conditions import now
from lunbridge_operator.handlers.common import classify, events_for, kopf_error, object_lock, services
from lunbridge_operator.reconcile import diskrestore
from lunbridge_operator.reconcile.diskrestore import Action


@kopf.on.resume(GROUP, VERSION, DISK_RESTORE_PLURAL)
@kopf.on.create(GROUP, VERSION, DISK_RESTORE_PLURAL)
async def restore_disk(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    action = Action.from_object(
        body.metadata.name or "",
        body.metadata.uid or "",
        body.metadata.get("generation"),
        body.spec,
        body.status,
    )
    disk = action.spec.virtual_disk if action.spec is not None else ""
    async with object_lock(memo, "VirtualDisk", disk):
        try:
            await diskrestore.reconcile(services(memo), action, events_for(body))
        except LunbridgeError as exc:
            reason, delay = classify(exc)
            reason = getattr(exc, "reason", reason)
            action.condition(False, reason, str(exc))
            action.status.message = str(exc)
            if delay is None:
                action.status.phase, action.status.completion_time = RestorePhase.FAILED, now()
            elif action.status.phase is None:
                action.status.phase = RestorePhase.PENDING
            events_for(body)(reason, str(exc), warning=True)
            with contextlib.suppress(LunbridgeError):
                await action.save(services(memo))
            if delay is None:
                return  # a refused restore is done: Failed, with the reason
            raise kopf_error(exc, retry) from exc
