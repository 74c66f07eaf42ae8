"""The one table from domain errors to gRPC codes, the abort helper, and the in-flight guard."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

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
from lunbridge_csi.errors import (
    ERROR_TABLE,
    InFlight,
    InvalidToken,
    OutOfRange,
    TimedOut,
    Unimplemented,
    abort,
    code_for,
    handled,
)


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """The two things the services use of a grpc.aio context."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def time_remaining(self) -> float | None:
        return None


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
        (Busy, grpc.StatusCode.ABORTED),
        (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable, grpc.StatusCode.UNAVAILABLE),
        (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
        (OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
        (TimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
        (InvalidToken, grpc.StatusCode.ABORTED),
        (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_each_domain_error_has_its_code(error: type[LunbridgeError], code: grpc.StatusCode) -> None:
    assert code_for(error("x")) is code


def test_every_domain_error_of_the_library_is_in_the_table() -> None:
    assert {NotFound, AlreadyExists, InvalidArgument, Conflict, Busy, LimitExceeded, Unavailable,
            Unauthenticated} <= set(ERROR_TABLE)  # fmt: skip


def test_a_subclass_takes_its_nearest_parents_code_and_unknown_ones_are_internal() -> None:
    class NoSuchPool(NotFound):
        pass

    assert code_for(NoSuchPool("pool p")) is grpc.StatusCode.NOT_FOUND
    assert code_for(LunbridgeError("?")) is grpc.StatusCode.INTERNAL


async def test_abort_ends_the_call_with_the_code_and_message() -> None:
    with pytest.raises(Aborted) as caught:
        await abort(FakeContext(), NotFound("VirtualDisk x: not found"))  # type: ignore[arg-type]
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.details == "VirtualDisk x: not found"


class Service:
    def __init__(self) -> None:
        self.in_flight = InFlight()
        self.release = asyncio.Event()

    @handled
    async def Slow(self, request: str, context: Any) -> str:
        async with self.in_flight.hold(request):
            await self.release.wait()
        return "done"

    @handled
    async def Broken(self, request: str, context: Any) -> str:
        raise Conflict(f"volume {request} is published elsewhere")


async def test_a_second_call_on_the_same_volume_is_aborted_and_others_go_on() -> None:
    service, context = Service(), FakeContext()
    first = asyncio.create_task(service.Slow("vol-a", context))
    await asyncio.sleep(0)
    assert "vol-a" in service.in_flight
    with pytest.raises(Aborted) as caught:
        await service.Slow("vol-a", context)
    assert caught.value.code is grpc.StatusCode.ABORTED
    assert "vol-a" in caught.value.details
    assert "vol-a" in service.in_flight  # the refused call did not free the first call's volume
    other = asyncio.create_task(service.Slow("vol-b", context))
    await asyncio.sleep(0)
    assert "vol-b" in service.in_flight
    service.release.set()
    assert await first == "done"
    assert await other == "done"
    assert "vol-a" not in service.in_flight
    # once the first call ended, the volume is free again
    service.release.set()
    assert await service.Slow("vol-a", context) == "done"
    assert len(service.in_flight) == 0  # nothing is kept for the volumes that were worked on


async def test_the_guard_keeps_nothing_after_calls_that_ended_failed_or_were_refused() -> None:
    guard = InFlight()
    for number in range(100):
        async with guard.hold(f"vol-{number}"):
            assert f"vol-{number}" in guard
    with pytest.raises(NotFound):
        async with guard.hold("vol-a"):
            raise NotFound("gone")
    assert "vol-a" not in guard
    async with guard.hold("vol-b"):
        with pytest.raises(Busy, match="vol-b is already in progress"):
            async with guard.hold("vol-b"):
                pass
        assert "vol-b" in guard
    assert len(guard) == 0


async def test_handled_turns_domain_errors_into_their_status() -> None:
    with pytest.raises(Aborted) as caught:
        await Service().Broken("vol-a", FakeContext())
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "published elsewhere" in caught.value.details
