"""The operator's reconcile slots (`--disk-slots`): however many disks come at once, no more
than the slots run their reconcile or teardown together, the others wait their turn, and one
disk never runs twice at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from lunbridge.concurrency import KeyedLocks
from lunbridge_operator.handlers.common import disk_slot


async def test_no_more_disks_run_at_once_than_the_slots_and_every_one_runs() -> None:
    memo = SimpleNamespace(locks=KeyedLocks[tuple[str, str]](), disk_slots=asyncio.Semaphore(2))
    running: set[str] = set()
    most = 0
    ran: list[str] = []

    async def reconcile(name: str) -> None:
        nonlocal most
        async with disk_slot(memo, "VirtualDisk", name):
            assert name not in running, f"{name} runs twice at once"
            running.add(name)
            most = max(most, len(running))
            await asyncio.sleep(0.01)
            running.discard(name)
            ran.append(name)

    names = [f"d{i}" for i in range(7)] + ["d0", "d1"]  # two of them changed again meanwhile
    await asyncio.gather(*(reconcile(name) for name in names))
    assert most == 2
    assert sorted(ran) == sorted(names)
