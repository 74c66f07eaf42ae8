"""The machinery every session over a blocking library shares, with a fake binding: steps run
in a bounded pool off the event loop, the connection opens lazily (once for concurrent first steps), a
lost connection is opened again, errors are translated, and close stops the threads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, ClassVar

import pytest

from lunbridge.errors import Unavailable
from lunbridge.pooled import PooledSession, SessionClient


class Lost(Exception):
    """What the fake binding raises when its connection is gone."""


class Conn:
    def __init__(self, number: int) -> None:
        self.number = number
        self.alive = True
        self.closed = False

    def close(self) -> None:
        self.closed = True
        raise OSError("closing a dead connection fails")  # must only be logged


class FakeSession(PooledSession[Conn]):
    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers=workers, name="test-pool")
        self.conns: list[Conn] = []

    def _open(self) -> Conn:
        time.sleep(0.02)  # a slow connect: concurrent first steps must still open only one
        conn = Conn(len(self.conns) + 1)
        self.conns.append(conn)
        return conn

    def _alive(self, conn: Conn) -> bool:
        return conn.alive

    def _lost(self, exc: BaseException) -> bool:
        return isinstance(exc, Lost)

    def _discard(self, conn: Conn) -> None:
        conn.close()

    def _translate(self, exc: BaseException, what: str) -> BaseException | None:
        return Unavailable(f"cannot {what}: {exc}") if isinstance(exc, Lost) else None


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-pool")]


async def test_steps_run_in_the_pool_while_the_loop_goes_on() -> None:
    session = FakeSession()
    released = threading.Event()

    def step(conn: Conn) -> str:
        assert released.wait(timeout=2), "the event loop was blocked"
        return threading.current_thread().name

    running = asyncio.create_task(session.run("wait", step))
    await asyncio.sleep(0.01)
    assert not running.done()
    released.set()  # the loop runs while the step blocks its thread
    assert (await running).startswith("test-pool")
    await session.close()


async def test_at_most_workers_steps_run_at_once_on_one_lazily_opened_connection() -> None:
    session = FakeSession(workers=2)
    assert session.opens == 0  # nothing opened before the first step
    lock, now, peak = threading.Lock(), [0], [0]

    def step(conn: Conn) -> int:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        return conn.number

    assert await asyncio.gather(*(session.run("step", step) for _ in range(6))) == [1] * 6
    assert peak[0] == 2
    assert session.opens == 1
    await session.close()


async def test_a_dead_connection_is_replaced_before_the_next_step() -> None:
    session = FakeSession()
    assert await session.run("step", lambda c: c.number) == 1
    session.conns[0].alive = False  # e.g. libvirtd restarted
    assert await session.run("step", lambda c: c.number) == 2
    assert session.conns[0].closed
    assert session.opens == 2
    await session.close()


async def test_a_lost_connection_is_translated_dropped_and_reopened() -> None:
    session = FakeSession()

    def step(conn: Conn) -> None:
        raise Lost("end of file from the daemon")

    with pytest.raises(Unavailable, match="cannot attach x: end of file") as caught:
        await session.run("attach x", step)
    assert isinstance(caught.value.__cause__, Lost)
    assert session.conns[0].closed  # not retried: the next step opens a new connection
    assert await session.run("step", lambda c: c.number) == 2
    await session.close()


async def test_a_bug_of_ours_is_raised_unchanged() -> None:
    session = FakeSession()

    def step(conn: Conn) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        await session.run("step", step)
    assert not session.conns[0].closed  # not a lost connection
    await session.close()


async def test_close_closes_the_connection_and_stops_the_threads() -> None:
    session = FakeSession()
    await asyncio.gather(*(session.run("step", lambda c: time.sleep(0.01)) for _ in range(4)))
    assert pool_threads()
    await session.close()
    assert session.conns[0].closed
    deadline = time.monotonic() + 2
    while pool_threads():
        assert time.monotonic() < deadline, f"threads still running: {pool_threads()}"
        await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError):
        await session.run("step", lambda c: None)


class Client(SessionClient):
    made: ClassVar[list[Client]] = []

    def __init__(self, fail: bool) -> None:
        self.session = FakeSession()
        self.fail = fail
        Client.made.append(self)

    async def _prove(self) -> None:
        def check(conn: Conn) -> None:
            if self.fail:
                raise Lost("wrong URI")

        await self.session.run("connect", check)

    @classmethod
    async def connect(cls, fail: bool = False) -> Client:
        return await cls(fail)._connected()


async def test_a_client_that_cannot_connect_is_closed_and_one_that_can_closes_on_exit() -> None:
    with pytest.raises(Unavailable, match="cannot connect: wrong URI"):
        await Client.connect(fail=True)
    with pytest.raises(RuntimeError, match="after shutdown"):  # its pool was stopped
        await Client.made[-1].session.run("step", lambda c: None)
    async with await Client.connect() as client:
        session: Any = client.session
        assert session.opens == 1
    assert session.conns[0].closed
