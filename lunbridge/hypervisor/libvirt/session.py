"""One libvirt connection, used from asyncio without ever blocking the event loop.

libvirt-python is synchronous (it releases the GIL while it waits for libvirtd), and its
connection object is safe to share between threads. This module runs each blocking step in
a dedicated, bounded thread pool, opens the connection lazily, opens it again when libvirtd
went away (a daemon restart does not stop the guests; a new connection sees them again), and
turns every libvirt exception into a `lunbridge.errors` error.

A step that failed because the connection dropped is not retried: an attach may have
happened before the reply was lost. The caller's own retry finds it through idempotence.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lunbridge.hypervisor.libvirt._libvirt import open_connection
from lunbridge.hypervisor.libvirt.faults import connection_lost, translate

log = logging.getLogger(__name__)
T = TypeVar("T")


class Session:
    """A libvirt connection with a bounded worker pool (`workers` concurrent calls)."""

    def __init__(self, uri: str, *, workers: int = 4) -> None:
        self.uri = uri
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lunbridge-libvirt")
        self._lock = threading.Lock()
        self._conn: Any = None
        self.opens = 0  # connections opened, the first one included (for tests and metrics)

    def __repr__(self) -> str:
        return f"Session(uri={self.uri!r})"

    async def run(self, what: str, step: Callable[[Any], T]) -> T:
        """Run the blocking `step(connection)` in the pool. `what` completes "cannot ..." in errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, what, step)

    async def run_plain(self, what: str, step: Callable[[], T]) -> T:
        """Run a blocking step that needs no connection (a libiscsi command) in the same pool;
        it raises lunbridge errors itself."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, step)

    def _call(self, what: str, step: Callable[[Any], T]) -> T:
        try:
            return step(self._current())
        except BaseException as exc:
            if connection_lost(exc):
                self._drop()
            error = translate(exc, what, self.uri)
            if error is None or error is exc:
                raise
            raise error from exc

    def _current(self) -> Any:
        with self._lock:
            conn = self._conn
            if conn is not None:
                try:
                    alive = conn.isAlive()
                except Exception:  # a closed handle raises instead of answering 0
                    alive = 0
                if alive:
                    return conn
                log.info("libvirt %s: the connection is gone; opening a new one", self.uri)
                self._close_quietly(conn)
            self._conn = open_connection(self.uri)
            self.opens += 1
            log.info("connected to libvirt %s", self.uri)
            return self._conn

    def _drop(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._close_quietly(self._conn)
                self._conn = None

    @staticmethod
    def _close_quietly(conn: Any) -> None:
        try:
            conn.close()
        except Exception as exc:  # closing a dead connection fails; nothing to do about it
            log.debug("closing a libvirt connection failed: %s", exc)

    async def close(self) -> None:
        """Close the connection and stop the worker threads."""
        if self._conn is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=False, cancel_futures=True)
