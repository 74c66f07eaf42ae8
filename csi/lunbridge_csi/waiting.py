"""The one bounded wait of the controller services on the status the operator writes: read the
object again and again until a condition holds, end early when the operator gave up, and end
with TimedOut (DEADLINE_EXCEEDED) once the bound passes, never past the call's own deadline
(less a second, for the answer to reach the CO), so the CO's retry carries on where it stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc.aio

from lunbridge_csi.errors import TimedOut

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


async def wait_until(
    kind: str,
    name: str,
    what: str,
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool | Awaitable[bool]],
    *,
    gave_up: Callable[[T], Exception | None],
    said: Callable[[T], str],
    bound: float,
    poll: float,
    context: Context | None,
) -> T:
    """`read()` until `done` of what it read is true (it may raise to end the wait), and return
    that. `gave_up`'s error ends it early; after `bound` seconds, cut to the time `context` has
    left, TimedOut "<kind> <name> not <what> within <bound>s (<said>)" ends it."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is not None:
        bound = min(bound, max(remaining - 1.0, 0.0))
    deadline = time.monotonic() + bound
    while True:
        found = await read()
        finished = done(found)
        if inspect.isawaitable(finished):
            finished = await finished
        if finished:
            return found
        error = gave_up(found)
        if error is not None:
            raise error
        if time.monotonic() >= deadline:
            raise TimedOut(f"{kind} {name} not {what} within {bound:.0f}s ({said(found)})")
        await asyncio.sleep(poll)


def progress(phase: object, message: str | None) -> str:
    """What the operator last said of an object, as a TimedOut message quotes it."""
    return f"phase {phase or 'none'}: {message or 'no message'}"
