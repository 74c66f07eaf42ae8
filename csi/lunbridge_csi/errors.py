"""The one table from domain errors to gRPC codes, the helper that aborts a call with it, and
the per-volume in-flight guard (a second call on a volume that is being worked on is told
ABORTED at once, so the CO retries later instead of two calls racing on one VirtualDisk).

Two errors exist only on the CSI side because the spec gives them their own codes: a capacity
outside what the backend can give (OUT_OF_RANGE) and a wait for the operator that did not end
within its bound (DEADLINE_EXCEEDED: the CO calls again, and the call carries on idempotently).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio

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
from lunbridge.redact import redact


class OutOfRange(InvalidArgument):
    """The requested capacity cannot be given (CSI: OUT_OF_RANGE)."""


class TimedOut(Unavailable):
    """The operator did not reach the awaited state within the bound; calling again resumes."""


class InvalidToken(LunbridgeError):
    """A ListVolumes starting_token this plugin did not hand out (CSI: ABORTED)."""


class Unimplemented(LunbridgeError):
    """A CSI feature this plugin does not offer (and does not advertise)."""


# domain error -> gRPC code; the most specific class in an error's MRO wins
ERROR_TABLE: dict[type[LunbridgeError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Busy: grpc.StatusCode.ABORTED,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    TimedOut: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    InvalidToken: grpc.StatusCode.ABORTED,
}


def code_for(exc: LunbridgeError) -> grpc.StatusCode:
    for kind in type(exc).__mro__:
        if kind in ERROR_TABLE:
            return ERROR_TABLE[kind]
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: LunbridgeError) -> NoReturn:
    """End the call with the error's code and message (raises, as `context.abort` does); the
    message shows no secret (`lunbridge.redact`, also for an error made outside lunbridge)."""
    await context.abort(code_for(exc), redact(str(exc)) or type(exc).__name__)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def handled(method: Handler) -> Handler:
    """Decorate a servicer method: a domain error becomes its gRPC status and is logged (at
    INFO: it is an answer, not a fault of the plugin); success is logged at DEBUG."""

    service_log = logging.getLogger(method.__module__)

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        name = method.__name__
        try:
            result = await method(self, request, context)
        except LunbridgeError as exc:
            code = code_for(exc)
            level = logging.WARNING if code is grpc.StatusCode.INTERNAL else logging.INFO
            service_log.log(level, "%s: %s %s", name, code.name, exc)
            await abort(context, exc)
        service_log.debug("%s: OK", name)
        return result

    return wrapper  # type: ignore[return-value]


class InFlight:
    """Names of the volumes a call is working on right now (none is kept after its call)."""

    def __init__(self) -> None:
        self._locks = KeyedLocks[str]()

    def __contains__(self, key: str) -> bool:
        return self._locks.held(key)

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold `key` for the block; if another call holds it, raise Busy (-> ABORTED) at once."""
        async with self._locks.try_hold(key) as held:
            if not held:
                raise Busy(f"an operation on volume {key} is already in progress; retry later")
            yield
