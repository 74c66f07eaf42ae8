"""What every handler shares: the services built at start-up, Events on the object, the one
table that turns domain errors into kopf's retry decisions and a condition users read, and the
one way a failed reconcile or a blocked teardown is recorded on the object."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import kopf

from lunbridge.api import FORGET_ANNOTATION
from lunbridge.concurrency import KeyedLocks
from lunbridge.errors import (
    AlreadyExists,
    Busy,
    Conflict,
    InvalidArgument,
    LimitExceeded,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from lunbridge.models import DiskGroupSnapshotStatus, DiskSnapshotStatus, SnapshotPhase
from lunbridge_operator.reconcile.services import Events, Services
from lunbridge_operator.reconcile.tracked import Tracked

# domain error -> (reason, retry delay in seconds; None = permanent until the spec changes)
ERROR_TABLE: dict[type[LunbridgeError], tuple[str, float | None]] = {
    Unavailable: ("Unavailable", 10.0),
    Busy: ("Busy", 5.0),
    NotFound: ("NotFound", 30.0),
    Conflict: ("Conflict", 30.0),
    LimitExceeded: ("LimitExceeded", 60.0),
    Unauthenticated: ("Unauthenticated", 120.0),
    InvalidArgument: ("InvalidArgument", None),
    AlreadyExists: ("AlreadyExists", None),
}

V = TypeVar("V")


def classify(exc: LunbridgeError) -> tuple[str, float | None]:
    for kind in type(exc).__mro__:
        if kind in ERROR_TABLE:
            return ERROR_TABLE[kind]
    return "Error", 30.0


RETRY_SCALE = [1.0]  # --retry-scale, set once at start-up (`scale_retries`)


def scale_retries(scale: float) -> None:
    """Every retry delay from now on is multiplied by `scale` (> 0)."""
    RETRY_SCALE[0] = scale


def backoff(base: float, retry: int) -> float:
    """Exponential backoff from `base`, capped at five minutes (both times --retry-scale)."""
    return float(min(base * (2 ** min(retry, 6)), 300.0)) * RETRY_SCALE[0]


def retry_delay(exc: LunbridgeError, retry: int) -> float | None:
    """Seconds before try `retry` + 1 of what failed with `exc`: the table's delay (doubling for a
    transient fault), times --retry-scale; None: not again until the spec changes."""
    _, delay = classify(exc)
    if delay is None:
        return None
    return backoff(delay, retry) if exc.retryable else delay * RETRY_SCALE[0]


def kopf_error(exc: LunbridgeError, retry: int) -> kopf.TemporaryError | kopf.PermanentError:
    reason, _ = classify(exc)
    delay = retry_delay(exc, retry)
    if delay is None:
        return kopf.PermanentError(f"{reason}: {exc}")
    return kopf.TemporaryError(f"{reason}: {exc}", delay=delay)


def events_for(body: kopf.Body) -> Events:
    def post(reason: str, message: str, *, warning: bool = False) -> None:
        kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)

    return post


def services(memo: Any) -> Services:
    found: Services = memo.services
    return found


@contextlib.asynccontextmanager
async def disk_slot(memo: Any, kind: str, name: str) -> AsyncIterator[None]:
    """Hold VirtualDisk `name` (`object_lock`), then one of the operator's reconcile slots
    (`memo.disk_slots`, made at start-up; none in tests): a burst of disks waits here, each
    as a small idle coroutine, instead of running all at once."""
    async with object_lock(memo, kind, name):
        slots: asyncio.Semaphore | None = getattr(memo, "disk_slots", None)
        async with slots if slots is not None else contextlib.nullcontext():
            yield


def first_in(index: kopf.Index[str, V]) -> Callable[[str], V | None]:
    """A lookup by key in a kopf index whose keys each hold one value (None: not seen);
    serves `Services.known_igroup`, `Services.known_provider_id` and `Services.known_node_mode`."""

    def known(key: str) -> V | None:
        for value in index.get(key, ()):
            return value
        return None

    return known


def object_lock(memo: Any, kind: str, name: str) -> AbstractAsyncContextManager[None]:
    """Hold one object for the block, so a timer's re-check never overlaps a change handler
    (its lock exists only while held or waited for: the table does not grow with the objects)."""
    locks: KeyedLocks[tuple[str, str]] = memo.locks
    return locks.hold((kind, name))


async def record_failure(
    memo: Any,
    body: kopf.Body,
    obj: Tracked[Any, Any],
    exc: LunbridgeError,
    retry: int,
    mark: Callable[[bool], None],
    *,
    reason: str | None = None,
) -> kopf.TemporaryError | kopf.PermanentError:
    """Record why `obj` is not Ready: condition Ready False with the error's reason (or the
    `reason` given), status.message, `mark(permanent)` for what the kind sets besides (its
    phase), a warning Event; then the status is written, unless the API is unreachable (kopf
    retries anyway). The error kopf should see: PermanentError when it waits for a spec change."""
    classified, delay = classify(exc)
    reason = classified if reason is None else reason
    obj.condition(False, reason, str(exc))
    obj.status.message = str(exc)
    mark(delay is None)
    events_for(body)(reason, str(exc), warning=True)
    with contextlib.suppress(LunbridgeError):  # the API is unreachable: kopf retries anyway
        await obj.save(services(memo))
    return kopf_error(exc, retry)


def unready_snapshot(status: DiskSnapshotStatus | DiskGroupSnapshotStatus) -> Callable[[bool], None]:
    """`record_failure`'s `mark` for the snapshot kinds: not ready to use, and Failed when the
    failure is permanent, else Pending."""

    def mark(permanent: bool) -> None:
        status.ready_to_use = False
        status.phase = SnapshotPhase.FAILED if permanent else SnapshotPhase.PENDING

    return mark


async def delete_blocked(
    memo: Any,
    body: kopf.Body,
    obj: Tracked[Any, Any],
    exc: LunbridgeError,
    retry: int,
    deleting: enum.Enum,
    *,
    left: list[str] | None,
    until: str = "it can",
    event: bool = True,
    delay: float = 30.0,
) -> kopf.TemporaryError:
    """Record why the teardown cannot finish yet (condition Ready False DeleteBlocked,
    status.message, phase `deleting`, a DeleteFailed Event unless `event` is False); the error
    that has kopf retry it (`delay` for an error the table gives none). With `left` (what status
    still records), the message says the finalizer stays `until`, what is left and how to let
    the object go."""
    reason, retry_delay = classify(exc)
    message = f"cannot delete yet ({reason}): {exc}"
    if left is not None:
        message += (
            f"; the finalizer stays until {until} (still there: {'; '.join(left) or 'nothing recorded'}); "
            f"annotate {FORGET_ANNOTATION}=true to let it go as it is"
        )
    obj.condition(False, "DeleteBlocked", message)
    obj.status.message, obj.status.phase = message, deleting
    if event:
        events_for(body)("DeleteFailed", message, warning=True)
    with contextlib.suppress(LunbridgeError):
        await obj.save(services(memo))
    return kopf.TemporaryError(message, delay=backoff(retry_delay or delay, retry))


async def crash_after(kind: str, step: str) -> None:
    """Fault injection for tests: LUNBRIDGE_CRASH_AFTER_STEP=Kind:step kills the operator with
    SIGKILL right after that step (and its status write, where it has one), to prove that a
    restart resumes."""
    if os.environ.get("LUNBRIDGE_CRASH_AFTER_STEP") == f"{kind}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
