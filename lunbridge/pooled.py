"""What every session over a blocking client library shares: a synchronous binding used from
asyncio.

pyVmomi, libvirt-python and netapp-ontap block on every call. A session runs each blocking
step in its own bounded thread pool (so the event loop never waits, and at most `workers`
calls reach the hypervisor or storage server at once), opens its connection lazily behind a
thread lock (the first step that needs it opens it; concurrent steps share it), opens it
again when it was lost, turns what the binding raises into a `lunbridge.errors` error, and
closes the connection and stops its threads at the end. `PooledSession` is that machinery; a
layer's session adds only what is its own (how to open, check, close and translate;
vSphere's re-login and task polling, ONTAP's job polling).

`SessionClient` is the matching client side: `connect` (make the client, prove the
connection, close it if that fails), `close` and `async with`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, TypeVarTuple

log = logging.getLogger(__name__)
C = TypeVar("C")  # the connection handle a step receives
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class PooledSession(abc.ABC, Generic[C]):
    """A lazily opened connection `C` with a bounded worker pool (`workers` concurrent calls).

    Subclasses implement `_open` and `_translate`, and may override `_alive` (checked before
    each step: False reopens), `_lost` (an error after which the connection is dropped and
    the next step reopens it), `_discard` (close a connection; failures are only logged) and
    `_attempt` (how one step is tried, e.g. with a retry after a re-login).
    """

    def __init__(self, *, workers: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()  # guards _conn and _generation
        self._conn: C | None = None
        self._generation = 0  # bumped at every (re)open: tells a step whether its connection is current
        self.opens = 0  # connections opened, the first one included (for tests and metrics)

    async def run(self, what: str, step: Callable[[C], T]) -> T:
        """Run the blocking `step(connection)` in the pool. `what` completes "cannot ..." in errors."""
        return await self._in_pool(self._call, what, step)

    def call_blocking(self, what: str, step: Callable[[C], T]) -> T:
        """`run` on the calling thread, for a step that blocks for long (a long poll) on a
        thread of its own: the same connection, re-open and errors, without holding a worker."""
        return self._call(what, step)

    async def _in_pool(self, call: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run the blocking `call(*args)` in the pool, with no connection and no translation."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call, *args)

    def _call(self, what: str, step: Callable[[C], T]) -> T:
        try:
            return self._attempt(step)
        except BaseException as exc:
            if self._lost(exc):
                self._drop()
            error = self._translate(exc, what)
            if error is None or error is exc:
                raise
            raise error from self._cause(error, exc)

    def _attempt(self, step: Callable[[C], T]) -> T:
        return step(self._current()[0])

    def _current(self) -> tuple[C, int]:
        """The open connection (opened now if there is none or it died) and its generation."""
        with self._lock:
            conn = self._conn
            if conn is not None:
                if self._alive(conn):
                    return conn, self._generation
                log.info("%r: the connection is gone; opening a new one", self)
                self._conn = None
                self._discard_quietly(conn)
            conn = self._conn = self._open()
            self._generation += 1
            self.opens += 1
            return conn, self._generation

    def _drop(self) -> None:
        """Forget (and close) the connection; the next step opens a new one."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._discard_quietly(conn)

    def _discard_quietly(self, conn: C) -> None:
        try:
            self._discard(conn)
        except Exception as exc:  # closing a dead connection fails; nothing to do about it
            log.debug("%r: closing the connection failed: %s", self, exc)

    @abc.abstractmethod
    def _open(self) -> C:
        """A new connection (runs in a pool thread, under the session's lock)."""

    @abc.abstractmethod
    def _translate(self, exc: BaseException, what: str) -> BaseException | None:
        """The lunbridge error for `exc` raised while doing `what`, or None (a bug of ours:
        re-raised unchanged)."""

    def _cause(self, error: BaseException, exc: BaseException) -> BaseException | None:
        """What the translated `error` is chained to (None hides `exc`)."""
        return exc

    def _alive(self, conn: C) -> bool:
        return True

    def _lost(self, exc: BaseException) -> bool:
        return False

    def _discard(self, conn: C) -> None:
        """Close `conn` (may raise; the error is logged and dropped)."""

    async def close(self) -> None:
        """Close the connection (best effort) and stop the worker threads; steps still
        running finish, queued ones are cancelled."""
        if self._conn is not None:
            await self._in_pool(self._drop)
        self._executor.shutdown(wait=False, cancel_futures=True)


class SessionClient(abc.ABC):
    """The lifecycle of a client built on a `PooledSession`: `await Client.connect(...)`
    (through `_connected`), `await client.close()` and `async with client:`."""

    session: PooledSession[Any]

    @abc.abstractmethod
    async def _prove(self) -> None:
        """One cheap call that fails at once on a wrong address or credentials."""

    async def _connected(self) -> Self:
        """This client once `_prove` succeeded; closed (and the error raised) if it failed."""
        try:
            await self._prove()
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
