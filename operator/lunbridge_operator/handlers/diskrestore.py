"""kopf handlers of DiskRestore actions; each only adapts kopf to `reconcile.diskrestore`.
The restore holds its VirtualDisk's lock, so no publish of that disk runs meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from lunbridge.api import DISK_RESTORE_PLURAL, GROUP, VERSION
from lunbridge.errors import LunbridgeError
from lunbridge.models import RestorePhase
from lunbridge.models.conditions import now
from lunbridge_operator.handlers.common import events_for, object_lock, record_failure, services
from lunbridge_operator.reconcile import diskrestore
from lunbridge_operator.reconcile.diskrestore import Action


def _failed(action: Action) -> Callable[[bool], None]:
    """What a failure sets besides the condition: a permanent one ends the action (Failed); a
    retried one leaves it Pending, or in the phase it reached."""

    def mark(permanent: bool) -> None:
        if permanent:
            action.status.phase, action.status.completion_time = RestorePhase.FAILED, now()
        elif action.status.phase is None:
            action.status.phase = RestorePhase.PENDING

    return mark


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
            reason = getattr(exc, "reason", None)  # a Refused restore says why
            error = await record_failure(memo, body, action, exc, retry, _failed(action), reason=reason)
            if isinstance(error, kopf.PermanentError):
                return  # a refused restore is done: Failed, with the reason
            raise error from exc
