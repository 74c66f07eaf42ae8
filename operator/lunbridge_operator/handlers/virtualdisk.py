"""kopf handlers of VirtualDisk objects; each only adapts kopf to `reconcile.virtualdisk`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import kopf

from lunbridge.api import FORGET_ANNOTATION, GROUP, VERSION, VIRTUAL_DISK_PLURAL
from lunbridge.errors import LunbridgeError
from lunbridge.models import Phase
from lunbridge_operator.handlers.common import (
    delete_blocked,
    events_for,
    object_lock,
    record_failure,
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


def _failed(disk: Disk) -> Callable[[bool], None]:
    """What a failure sets besides the condition: a permanent one fails the disk (for its
    generation); a retried one leaves the phase as it is."""

    def mark(permanent: bool) -> None:
        if permanent:
            disk.status.phase = Phase.FAILED
            disk.status.observed_generation = disk.generation

    return mark


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
            raise await record_failure(memo, body, disk, exc, retry, _failed(disk)) from exc
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
            left_behind = disk.left_behind()
            raise await delete_blocked(
                memo, body, disk, exc, retry, Phase.DELETING, left=left_behind, until="the teardown finishes"
            ) from exc
    memo.checked.pop(disk.name, None)
