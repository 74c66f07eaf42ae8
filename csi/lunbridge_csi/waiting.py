"""The one bounded wait of the controller services on the status the operator writes: a watch of
that one object, each version judged as it arrives, ended early when the operator gave up, and
ended with TimedOut (DEADLINE_EXCEEDED) once the bound passes, never past the call's own
deadline (less a second, for the answer to reach the CO), so the CO's retry carries on where it
stopped.

A watch and not a re-read every 250 ms: the re-read added half its period (≈125 ms) on average
to CreateVolume, ControllerPublish and ControllerUnpublish. The watch starts from the
resourceVersion of a version the caller holds (what its create or patch returned, or a read), so
no change between the two is missed. A watch that ends or fails (the server's time limit, 410
Gone, a dropped or refused connection) is followed by a read and a new watch from there; watches
that end soon after they began are spaced out (RESUME_PAUSE, doubling up to RESUME_PAUSE_MAX),
so a watch refused at once is no busy loop, and a read still sees every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc.aio

from lunbridge.models import ObjectMeta
from lunbridge_csi.errors import TimedOut

if TYPE_CHECKING:  # kube imports the feed, which imports this module
    from lunbridge_csi.kube import Watches

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
# the later versions of the object, from the one last seen, for at most so many seconds
Changes = Callable[[T, float], AsyncGenerator[T, None]]
RESUME_PAUSE = 0.05
RESUME_PAUSE_MAX = 1.0


class Versioned(Protocol):
    @property
    def metadata(self) -> ObjectMeta: ...


V = TypeVar("V", bound=Versioned | None)


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
    context: Context | None,
    changes: Changes[T],
    first: T | None = None,
) -> T:
    """The first version of the object for which `done` is true (it may raise to end the wait):
    `first` (the object a create or patch returned; else `read()`), then each one `changes`
    gives, reading again with `read()` whenever a watch ends. `gave_up`'s error ends it early;
    after `bound` seconds, cut to the time `context` has left less a second, TimedOut "<kind>
    <name> not <what> within <bound>s (<said> of the last version seen)" ends it. Errors of
    `read` end it as they come."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is not None:
        bound = min(bound, max(remaining - 1.0, 0.0))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    found = first if first is not None else await read()
    pause = RESUME_PAUSE
    while True:
        if await _judge(found, done, gave_up):
            return found
        left = deadline - loop.time()
        if left <= 0:
            raise TimedOut(f"{kind} {name} not {what} within {bound:.0f}s ({said(found)})")
        began = loop.time()
        try:
            async with asyncio.timeout_at(deadline) as window:
                async with contextlib.aclosing(changes(found, left)) as stream:
                    async for found in stream:
                        if await _judge(found, done, gave_up):
                            return found
        except TimeoutError:
            if not window.expired():
                raise
            raise TimedOut(f"{kind} {name} not {what} within {bound:.0f}s ({said(found)})") from None
        if loop.time() - began < pause:
            await asyncio.sleep(min(pause, max(deadline - loop.time(), 0.0)))
            pause = min(pause * 2, RESUME_PAUSE_MAX)
        else:
            pause = RESUME_PAUSE
        found = await read()


async def _judge(
    found: T, done: Callable[[T], bool | Awaitable[bool]], gave_up: Callable[[T], Exception | None]
) -> bool:
    finished = done(found)
    if inspect.isawaitable(finished):
        finished = await finished
    if finished:
        return True
    error = gave_up(found)
    if error is not None:
        raise error
    return False


def watched(kube: Watches, plural: str, name: str, parse: Callable[[dict[str, Any] | None], V]) -> Changes[V]:
    """`wait_until`'s `changes` for object `name` of `plural`: `kube.changes` from the
    resourceVersion of the version last seen (none seen: from its current version), each version
    made by `parse` from the API's dict (None when deleted; it may raise to end the wait)."""

    async def later(last: V, seconds: float) -> AsyncGenerator[V, None]:
        since = last.metadata.resource_version if last is not None else None
        async with contextlib.aclosing(kube.changes(plural, name, since, seconds)) as stream:
            async for body in stream:
                yield parse(body)

    return later


def progress(phase: object, message: str | None) -> str:
    """What the operator last said of an object, as a TimedOut message quotes it."""
    return f"phase {phase or 'none'}: {message or 'no message'}"
