"""kopf handlers of VirtualDisk objects; each only adapts kopf to `reconcile.virtualdisk`."""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import kopf

from lunbridge.api import FORGET_ANNOTATION, GROUP, VERSION, VIRTUAL_DISK_PLURAL
from lunbridge.errors import LunbridgeError
from lunbridge.models import Phase
from lunbridge_operator.handlers.common import (
    delete_blocked,
    disk_slot,
    events_for,
    record_failure,
    services,
)
from lunbridge_operator.reconcile import health, orphans, recheck, virtualdisk
from lunbridge_operator.reconcile.disk import Disk
from lunbridge_operator.reconcile.health import Drift


def disk_of(body: kopf.Body) -> Disk:
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
    await reconcile_disk(disk_of(body), body, memo, retry)


async def reconcile_disk(
    disk: Disk, body: kopf.Body, memo: Any, retry: int, *, drift: Drift | None = None
) -> None:
    """Reconcile `disk`; a re-check's `drift` that is a broken link is written first (Healthy
    False, an Event), so a reconcile that cannot repair it, or takes long, leaves it said."""
    async with disk_slot(memo, "VirtualDisk", disk.name):
        events = events_for(body)
        try:
            if drift is not None and drift.broken:
                health.found_broken(disk, drift, events)
                await disk.save(services(memo))  # said at once: a repair that fails or hangs leaves it said
            await virtualdisk.reconcile(services(memo), disk, events)
        except LunbridgeError as exc:
            raise await record_failure(memo, body, disk, exc, retry, _failed(disk)) from exc


@kopf.index(GROUP, VERSION, VIRTUAL_DISK_PLURAL)
def virtual_disks(*, name: str, body: kopf.Body, memo: Any, **_: Any) -> dict[str, Seen]:
    """Every VirtualDisk as last seen, and when (for the re-check pass: no timer per disk).
    The first call keeps kopf's context of an object's processing, where its Event posting
    works: the pass runs its reconciles in a copy of it (kept in a dict the operator's memo
    holds: kopf hands each object a shallow copy of the memo)."""
    shared: dict[str, contextvars.Context] | None = getattr(memo, "kopf_context", None)
    if shared is not None and "posting" not in shared:
        shared["posting"] = contextvars.copy_context()
    return {name: seen_of(body)}


def seen_of(body: kopf.Body) -> Seen:
    """`body` as the index keeps it, seen now."""
    raw = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": dict(body.metadata),
           "spec": dict(body.spec), "status": dict(body.status)}  # fmt: skip
    observed = body.status.get("observedGeneration")
    return Seen(
        json.dumps(raw, separators=(",", ":")).encode(),
        time.monotonic(),
        lags=observed is not None and observed != body.metadata.get("generation"),
        deleting=bool(body.metadata.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class Seen:
    """One disk as the index keeps it: as compact JSON (a parsed body costs ten times the memory,
    times 1,000 disks), what the pass looks at every tick, and when it was seen."""

    packed: bytes
    at: float  # time.monotonic() of the event
    lags: bool = False  # status describes an older generation than the spec
    deleting: bool = False

    @property
    def body(self) -> kopf.Body:
        return kopf.Body(cast(kopf.RawBody, json.loads(self.packed)))


def stale(disk: Disk) -> bool:
    """Status describes an older generation than the spec."""
    return disk.status.observed_generation is not None and disk.status.observed_generation != disk.generation


async def recheck_virtual_disk(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Check one Ready disk again now, as the pass does (a full reconcile only if it drifted),
    or reconcile a disk whose status describes an older generation than its spec."""
    disk = disk_of(body)
    if body.metadata.get("deletionTimestamp"):
        return
    if not stale(disk):
        if not recheck.settled(disk):
            return
        seen = await orphans.look(services(memo))
        drifted = await recheck.judge(services(memo), [disk], seen)
        if not drifted:
            return
        await reconcile_disk(disk, body, memo, int(kwargs.get("retry", 0)), drift=drifted[disk.name])
        return
    await reconcile_disk(disk, body, memo, int(kwargs.get("retry", 0)))


@kopf.on.delete(GROUP, VERSION, VIRTUAL_DISK_PLURAL)
async def delete_virtual_disk(*, body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    """Tear down what status records. The finalizer stays until that worked: every failure is
    retried (never given up on), and says why; FORGET_ANNOTATION=true lets the disk go as is."""
    disk = disk_of(body)
    if (body.metadata.annotations or {}).get(FORGET_ANNOTATION) == "true":
        virtualdisk.forget(disk, events_for(body))
        return
    async with disk_slot(memo, "VirtualDisk", disk.name):
        try:
            await virtualdisk.delete(services(memo), disk, events_for(body))
        except LunbridgeError as exc:
            left_behind = disk.left_behind()
            raise await delete_blocked(
                memo, body, disk, exc, retry, Phase.DELETING, left=left_behind, until="the teardown finishes"
            ) from exc
