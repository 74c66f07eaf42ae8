"""The rules of the controller's one wait (`lunbridge_csi.waiting`): it judges each version a
watch delivers, resumes a watch that ended with a read and a watch from what that read saw,
spaces out watches that end at once (no busy loop), ends at the bound (cut by the call's
deadline) or when the operator gave up, and closes the watch whenever it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from lunbridge.errors import InvalidArgument, NotFound
from lunbridge.models import ObjectMeta, Phase, VirtualDisk, VirtualDiskSpec
from lunbridge_csi.errors import TimedOut
from lunbridge_csi.volume_rules import disk_or_gone
from lunbridge_csi.waiting import RESUME_PAUSE_MAX, wait_until, watched
from tests.fakes import FakeKube
from tests.unit.csi.test_errors import FakeContext


@dataclass(frozen=True)
class Seen:
    version: int
    state: str  # pending | done | failed


@dataclass
class World:
    """A watched object: what `read` answers, each watch's script of versions, and a record of
    reads, of the versions each watch started from and of the watches closed."""

    now: Seen
    scripts: list[Callable[[], AsyncGenerator[Seen, None]]] = field(default_factory=list)
    reads: int = 0
    watched_from: list[int] = field(default_factory=list)
    closed: int = 0

    async def read(self) -> Seen:
        self.reads += 1
        return self.now

    def changes(self, last: Seen, seconds: float) -> AsyncGenerator[Seen, None]:
        self.watched_from.append(last.version)
        script = self.scripts.pop(0) if self.scripts else ended
        return self._closing(script())

    async def _closing(self, stream: AsyncGenerator[Seen, None]) -> AsyncGenerator[Seen, None]:
        try:
            async for seen in stream:
                yield seen
        finally:
            self.closed += 1


async def ended() -> AsyncGenerator[Seen, None]:
    return
    yield


async def silent() -> AsyncGenerator[Seen, None]:
    await asyncio.Event().wait()
    yield Seen(0, "never")


def versions(*seen: Seen) -> Callable[[], AsyncGenerator[Seen, None]]:
    async def script() -> AsyncGenerator[Seen, None]:
        for one in seen:
            yield one

    return script


def failed(seen: Seen) -> Exception | None:
    return InvalidArgument(f"the operator gave up at {seen.version}") if seen.state == "failed" else None


class Deadline(FakeContext):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def time_remaining(self) -> float | None:
        return self.seconds


async def wait(
    world: World, bound: float = 5.0, first: Seen | None = None, context: FakeContext | None = None
) -> Seen:
    return await wait_until(
        "Thing",
        "t1",
        "done",
        world.read,
        lambda seen: seen.state == "done",
        gave_up=failed,
        said=lambda seen: f"state {seen.state} at {seen.version}",
        bound=bound,
        context=cast(Any, context),  # the two calls a grpc context answers
        changes=world.changes,
        first=first,
    )


async def test_each_version_the_watch_delivers_is_judged_from_the_one_read_first() -> None:
    world = World(Seen(1, "pending"), [versions(Seen(2, "pending"), Seen(3, "done"), Seen(4, "pending"))])
    assert await wait(world) == Seen(3, "done")
    assert (world.reads, world.watched_from, world.closed) == (1, [1], 1)


async def test_what_a_create_returned_stands_for_the_first_read() -> None:
    world = World(Seen(9, "pending"), [versions(Seen(6, "done"))])
    assert await wait(world, first=Seen(5, "pending")) == Seen(6, "done")
    assert (world.reads, world.watched_from) == (0, [5])
    assert await wait(World(Seen(9, "pending")), first=Seen(7, "done")) == Seen(7, "done")


async def test_a_watch_that_ends_is_followed_by_a_read_and_a_watch_from_what_it_read() -> None:
    world = World(Seen(1, "pending"), [versions(Seen(2, "pending")), versions(Seen(5, "done"))])
    world.now = Seen(4, "pending")  # changed while no watch ran: the read sees it
    assert await wait(world, first=Seen(1, "pending")) == Seen(5, "done")
    assert world.reads == 1
    assert world.watched_from == [1, 4]
    assert world.closed == 2


async def test_a_change_made_while_no_watch_ran_is_found_by_the_read_that_resumes() -> None:
    world = World(Seen(3, "done"), [versions(Seen(2, "pending"))])
    assert await wait(world, first=Seen(1, "pending")) == Seen(3, "done")
    assert world.watched_from == [1]


async def test_watches_that_end_at_once_are_spaced_out_not_a_busy_loop() -> None:
    world = World(Seen(1, "pending"))  # every watch ends at once (a refused watch, say)
    with pytest.raises(TimedOut):
        await wait(world, bound=0.5)
    assert 3 <= world.reads <= 6  # 50, 100, 200 ms apart... not thousands
    assert len(world.watched_from) == world.reads - 1  # a read after each, then TimedOut
    assert RESUME_PAUSE_MAX <= 1.0


async def test_the_bound_ends_a_silent_watch_with_timed_out_quoting_the_last_version() -> None:
    world = World(Seen(1, "pending"), [versions(Seen(2, "pending")), silent])
    world.now = Seen(3, "pending")
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimedOut, match=r"^Thing t1 not done within 0s \(state pending at 3\)$"):
        await wait(world, bound=0.3, first=Seen(1, "pending"))
    took = asyncio.get_running_loop().time() - started
    assert 0.3 <= took < 1.0
    assert world.closed == 2  # the silent watch too


async def test_the_calls_deadline_cuts_the_bound() -> None:
    world = World(Seen(1, "pending"), [silent])
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimedOut, match="within 0s"):
        await wait(world, bound=120, context=Deadline(1.2))
    assert asyncio.get_running_loop().time() - started < 1.0
    with pytest.raises(TimedOut):  # no time left: one judgement, then TimedOut
        await wait(World(Seen(1, "pending"), [silent]), bound=120, context=Deadline(0.5))


async def test_the_operator_giving_up_ends_the_wait_at_that_version() -> None:
    world = World(Seen(1, "pending"), [versions(Seen(2, "pending"), Seen(3, "failed")), silent])
    started = asyncio.get_running_loop().time()
    with pytest.raises(InvalidArgument, match="gave up at 3"):
        await wait(world, bound=30)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert world.closed == 1
    with pytest.raises(InvalidArgument, match="gave up at 7"):
        await wait(World(Seen(7, "failed")), bound=30)


async def test_watched_disks_come_from_the_api_servers_watch_and_a_deletion_is_not_found() -> None:
    kube = FakeKube()
    meta = ObjectMeta(name="pvc-1")
    made = await kube.create(VirtualDisk(metadata=meta, spec=VirtualDiskSpec(size="64Mi")))
    await kube.patch_status("virtualdisks", "pvc-1", {"phase": "Provisioning"})
    later = watched(kube, "virtualdisks", "pvc-1", disk_or_gone("pvc-1"))
    stream = later(made, 5)
    first = await anext(stream)
    assert first.status.phase is Phase.PROVISIONING
    assert kube.called("changes") == [("virtualdisks", "pvc-1", made.metadata.resource_version)]
    await kube.delete("pvc-1")
    with pytest.raises(NotFound, match="VirtualDisk pvc-1 is gone"):
        await anext(stream)
