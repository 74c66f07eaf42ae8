"""What every handler shares: the services built at start-up, Events on the object, and the
one table that turns domain errors into kopf's retry decisions and a condition users read."""

from __future__ import annotations

import os
import signal
from contextlib import AbstractAsyncContextManager
from typing import Any

import kopf

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
from lunbridge_operator.reconcile.services import Events, Services

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


def classify(exc: LunbridgeError) -> tuple[str, float | None]:
    for kind in type(exc).__mro__:
        if kind in ERROR_TABLE:
            return ERROR_TABLE[kind]
    return "Error", 30.0


def backoff(base: float, retry: int) -> float:
    """Exponential backoff from `base`, capped at five minutes."""
    return float(min(base * (2 ** min(retry, 6)), 300.0))


def kopf_error(exc: LunbridgeError, retry: int) -> kopf.TemporaryError | kopf.PermanentError:
    reason, delay = classify(exc)
    if delay is None:
        return kopf.PermanentError(f"{reason}: {exc}")
    return kopf.TemporaryError(f"{reason}: {exc}", delay=backoff(delay, retry) if exc.retryable else delay)


def events_for(body: kopf.Body) -> Events:
    def post(reason: str, message: str, *, warning: bool = False) -> None:
        (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)

    return post


def services(memo: Any) -> Services:
    found: Services = memo.services
    return found


def object_lock(memo: Any, kind: str, name: str) -> AbstractAsyncContextManager[None]:
    """Hold one object for the block, so a timer's re-check never overlaps a change handler
    (its lock exists only while held or waited for: the table does not grow with the objects)."""
    locks: KeyedLocks[tuple[str, str]] = memo.locks
    return locks.hold((kind, name))


async def crash_after(kind: str, step: str) -> None:
    """Fault injection for tests: LUNBRIDGE_CRASH_AFTER_STEP=Kind:step kills the operator with
    SIGKILL right after that step's result was written, to prove that a restart resumes."""
    if os.environ.get("LUNBRIDGE_CRASH_AFTER_STEP") == f"{kind}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
