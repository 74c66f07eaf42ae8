"""`KeyedLocks`, `Coalescer` and `both`: exclusion per key, tables that empty themselves, runs
shared exactly by the callers that asked before they started (failures included)."""

from __future__ import annotations

import asyncio

import pytest

from lunbridge.concurrency import Coalescer, KeyedLocks, both


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- KeyedLocks ---


async def test_one_holder_per_key_in_arrival_order() -> None:
    locks = KeyedLocks[str]()
    inside: list[str] = []
    log: list[str] = []

    async def worker(name: str) -> None:
        async with locks.hold("vm-1"):
            inside.append(name)
            assert len(inside) == 1, f"{inside} hold vm-1 at once"
            log.append(name)
            await asyncio.sleep(0.01)
            inside.remove(name)

    await asyncio.gather(*(worker(f"w{i}") for i in range(5)))
    assert log == ["w0", "w1", "w2", "w3", "w4"]
    assert len(locks) == 0


async def test_different_keys_are_held_at_once() -> None:
    locks = KeyedLocks[str]()
    both = asyncio.Barrier(2)

    async def worker(key: str) -> None:
        async with locks.hold(key):
            await asyncio.wait_for(both.wait(), 1)  # deadlocks if one key waited for the other

    await asyncio.gather(worker("vm-1"), worker("vm-2"))
    assert len(locks) == 0


async def test_the_table_empties_after_a_cancelled_waiter_and_an_exception() -> None:
    locks = KeyedLocks[str]()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            await release.wait()
            raise ValueError("inside the lock")

    async def waiter_body() -> None:
        async with locks.hold("k"):
            raise AssertionError("the waiter was cancelled before it got the lock")

    held = asyncio.create_task(holder())
    waiter = asyncio.create_task(waiter_body())
    await settle()
    assert locks.held("k")
    assert len(locks) == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert locks.held("k")  # the holder still has it
    release.set()
    with pytest.raises(ValueError, match="inside the lock"):
        await held
    assert not locks.held("k")
    assert len(locks) == 0
    async with locks.hold("k"):  # and the key is usable again
        assert locks.held("k")


async def test_try_hold_answers_busy_without_waiting() -> None:
    locks = KeyedLocks[str]()
    async with locks.try_hold("vol-1") as first:
        assert first
        async with locks.try_hold("vol-1") as second:
            assert not second
        async with locks.try_hold("vol-2") as other:
            assert other
    async with locks.try_hold("vol-1") as again:
        assert again
    assert len(locks) == 0


# --- Coalescer ---


class Work:
    """Work that records when each run starts and can be held open or made to fail."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: list[BaseException | None] = []  # per run, in order; missing = succeed

    async def __call__(self) -> None:
        self.starts.append(asyncio.get_running_loop().time())
        number = len(self.starts)
        await self.gate.wait()
        error = self.fail[number - 1] if number <= len(self.fail) else None
        if error is not None:
            raise error


Task = asyncio.Task[None]


async def running_and_queued(coalescer: Coalescer[str], work: Work, queued: int) -> tuple[Task, list[Task]]:
    """A caller whose run is held open by `work.gate`, and `queued` callers that asked during it."""
    work.gate.clear()
    before = len(work.starts)
    first = asyncio.create_task(coalescer.run("k", work))
    await settle()
    assert len(work.starts) == before + 1  # the first caller started a run at once
    waiting = [asyncio.create_task(coalescer.run("k", work)) for _ in range(queued)]
    await settle()
    return first, waiting


async def test_callers_that_ask_during_a_run_share_one_next_run() -> None:
    coalescer, work = Coalescer[str](), Work()
    first, waiting = await running_and_queued(coalescer, work, 10)
    work.gate.set()
    await asyncio.gather(first, *waiting)
    assert len(work.starts) == 2  # the first run, then one for all ten
    assert coalescer.runs == 2
    assert len(coalescer) == 0


async def test_a_caller_arriving_mid_run_gets_a_run_that_starts_after_it_asked() -> None:
    coalescer, work = Coalescer[str](), Work()
    work.gate.clear()
    first = asyncio.create_task(coalescer.run("host-1", work))
    await settle()
    asked = asyncio.get_running_loop().time()
    late = asyncio.create_task(coalescer.run("host-1", work))
    await settle()
    assert not late.done()
    work.gate.set()
    await first
    await late
    assert len(work.starts) == 2
    assert work.starts[0] <= asked <= work.starts[1]
    await coalescer.run("host-1", work)  # alone: a run of its own
    assert len(work.starts) == 3


async def test_keys_run_independently() -> None:
    coalescer, work = Coalescer[str](), Work()
    work.gate.clear()
    tasks = [asyncio.create_task(coalescer.run(key, work)) for key in ("host-1", "host-2")]
    await settle()
    assert len(work.starts) == 2  # both started: one key does not wait for another
    work.gate.set()
    await asyncio.gather(*tasks)
    assert len(coalescer) == 0


async def test_a_failure_reaches_every_caller_that_shared_the_run() -> None:
    coalescer, work = Coalescer[str](), Work()
    boom = RuntimeError("discovery failed")
    work.fail = [None, boom]
    first, sharers = await running_and_queued(coalescer, work, 3)
    work.gate.set()
    await first  # run 1 succeeded for its caller
    results = await asyncio.gather(*sharers, return_exceptions=True)
    assert results == [boom, boom, boom]
    assert len(work.starts) == 2
    assert coalescer.failures == 1
    await coalescer.run("k", work)  # the next caller gets a fresh run, which succeeds
    assert len(work.starts) == 3
    assert len(coalescer) == 0


async def test_callers_queued_behind_a_failed_run_get_the_next_run() -> None:
    coalescer, work = Coalescer[str](), Work()
    work.fail = [RuntimeError("first run failed")]
    first, queued = await running_and_queued(coalescer, work, 3)
    work.gate.set()
    with pytest.raises(RuntimeError, match="first run failed"):
        await first
    await asyncio.gather(*queued)  # they asked after run 1 started: run 2 serves them
    assert len(work.starts) == 2


async def test_a_cancelled_run_is_run_again_for_the_callers_waiting() -> None:
    coalescer, work = Coalescer[str](), Work()
    work.gate.clear()
    running = asyncio.create_task(coalescer.run("k", work))
    await settle()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert len(coalescer) == 0
    first, waiters = await running_and_queued(coalescer, work, 2)
    first.cancel()  # the run in progress is abandoned, not concluded
    await settle()
    work.gate.set()
    await asyncio.gather(*waiters)
    assert len(work.starts) == 3  # the cancelled one, the abandoned one, one more for both waiters
    assert len(coalescer) == 0


# --- both ---


async def test_both_runs_the_two_at_once_and_returns_each_result() -> None:
    order: list[str] = []

    async def step(name: str, value: int) -> int:
        order.append(f"{name} began")
        await asyncio.sleep(0)
        order.append(f"{name} ended")
        return value

    assert await both(step("a", 1), step("b", 2)) == (1, 2)
    assert order[:2] == ["a began", "b began"]


async def test_a_failure_does_not_cut_the_other_step_short_and_the_first_error_wins() -> None:
    finished: list[str] = []

    async def slow_change() -> str:
        await asyncio.sleep(0.01)
        finished.append("change")
        return "made"

    async def fails(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="lookup"):
        await both(slow_change(), fails("lookup"))
    assert finished == ["change"]
    with pytest.raises(ValueError, match="first"):
        await both(fails("first"), fails("second"))
