"""kopf handlers of VirtualDisk objects; each only adapts kopf to `reconcile.virtualdisk`."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import kopf

from lunbridge.api import FORGET_ANNOTATION, GROUP, VERSION, VIRTUAL_DISK_PLURAL
from lunbridge.errors import LunbridgeError
from lunbridge.models import Phase
from lunbridge_operator.handlers.common import (
    backoff,
    classify,
    events_for,
    kopf_error,
    object_lock,
    services,
)
from lunbridge_operator.reconcile import virtualdisk
from lunbridge_operator.reconcile.disk import Disk


def _disk(body: kopf.Body) -> Disk:
    return Disk.from_object(
        body.metadata.name or "",
        body.metadata.uid or "",
        body.metadata.get("generation"),
        body.spec,
        body.status,
    )


async def _failed(memo: Any, disk: Disk, body: kopf.Body, exc: LunbridgeError, retry: int) -> Exception:
    """Record why the disk is not Ready (condition, message, Event); the error kopf should see."""
    reason, delay = classify(exc)
    disk.condition(False, reason, str(exc))
    disk.status.message = str(exc)
    if delay is None:
        disk.status.phase = Phase.FAILED
        disk.status.observed_generation = disk.generation
    events_for(body)(reason, str(exc), warning=True)
    with contextlib.suppress(LunbridgeError):  # the API is unreachable: kopf retries anyway
        await disk.save(services(memo))
    return kopf_error(exc, retry)


@kopf.on.resume(GROUP, VERSION, VIRTUAL_DISK_PLURAL)
@kopf.on.create(GROUP, VERSION, VIRTUAL_DISK_PLURAL)
@kopf.on.update(GROUP, VERSION, VIRTUAL_DISK_PLURAL, field="spec")
async def reconcile_virtual_disk(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    await _reconcile(_disk(body), body, memo, retry)


async def _reconcile(disk: Disk, body: kopf.Body, memo: Any, retry: int) -> None:
    async with object_lock(memo, "VirtualDisk", disk.name):
        try:
            await virtualdisk.reconcile(services(memo), disk, events_for(body))
        except LunbridgeError as exc:
            raise await _failed(memo, disk, body, exc, retry) from exc
    memo.checked[disk.name] = time.monotonic()


@kopf.timer(GROUP, VERSION, VIRTUAL_DISK_PLURAL, interval=10.0, initial_delay=10.0, idle=10.0)
async def recheck_virtual_disk(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Every --resync-seconds, check a Ready disk again (a restarted tgtd, a moved VM); and at
    once a disk whose status describes an older generation than its spec while nothing works
    on it. kopf runs no handler for a change that takes the spec back to what it last handled
    successfully (a nodeName set, never attached, and cleared again), so without this such a
    disk would keep the status of the change that was undone."""
    retry = int(kwargs.get("retry", 0))
    disk = _disk(body)
    if body.metadata.get("deletionTimestamp"):
        return
    stale = disk.status.observed_generation is not None and disk.status.observed_generation != disk.generation
    if not stale:
        if disk.status.phase is not Phase.READY:
            return
        if time.monotonic() - memo.checked.get(disk.name, 0.0) < memo.config.resync_seconds:
            return
    await _reconcile(disk, body, memo, retry)


@kopf.on.delete(GROUP, VERSION, VIRTUAL_DISK_PLURAL)
async def delete_virtual_disk(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    """Tear down what status records. The finalizer stays until that worked: every failure is
    retried (never given up on), and says why; FORGET_ANNOTATION=true lets the disk go as is."""
    disk = _disk(body)
    if (body.metadata.annotations or {}).get(FORGET_ANNOTATION) == "true":
        virtualdisk.forget(disk, events_for(body))
        return
    async with object_lock(memo, "VirtualDisk", disk.name):
        try:
            await virtualdisk.delete(services(memo), disk, events_for(body))
        except LunbridgeError as exc:
            raise await _delete_blocked(memo, disk, body, exc, retry) from exc
    memo.checked.pop(disk.name, None)


async def _delete_blocked(
    memo: Any, disk: Disk, body: kopf.Body, exc: LunbridgeError, retry: int
) -> Exception:
    """Record why the teardown cannot finish yet (condition, message, Event); kopf retries it."""
    reason, delay = classify(exc)
    left = "; ".join(disk.left_behind()) or "nothing recorded"
    message = (
        f"cannot delete yet ({reason}): {exc}; the finalizer stays until the teardown finishes "
        f"(still there: {left}); annotate {FORGET_ANNOTATION}=true to let it go as it is"
    )
    disk.condition(False, "DeleteBlocked", message)
    disk.status.message, disk.status.phase = message, Phase.DELETING
    events_for(body)("DeleteFailed", message, warning=True)
    with contextlib.suppress(LunbridgeError):
        await disk.save(services(memo))
    return kopf.TemporaryError(message, delay=backoff(delay or 30.0, retry))
