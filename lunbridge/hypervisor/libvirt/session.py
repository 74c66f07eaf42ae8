"""One libvirt connection, used from asyncio without ever blocking the event loop.

libvirt-python is synchronous (it releases the GIL while it waits for libvirtd), and its
connection object is safe to share between threads. `PooledSession` runs each blocking step
in a bounded thread pool and opens the connection lazily; this module adds what is libvirt's
own: opening a connection, checking that it is alive before a step (a daemon restart does not
stop the guests; a new connection sees them again), dropping it after an error that means it
is gone, and turning every libvirt exception into a `lunbridge.errors` error.

A step that failed because the connection dropped is not retried: an attach may have
happened before the reply was lost. The caller's own retry finds it through idempotence.
"""

from __future__ import annotations

import logging
from typing import Any

from lunbridge.hypervisor.libvirt._libvirt import open_connection
from lunbridge.hypervisor.libvirt.faults import connection_lost, translate
from lunbridge.pooled import PooledSession

log = logging.getLogger(__name__)


class Session(PooledSession[Any]):
    """A libvirt connection with a bounded worker pool (`workers` concurrent calls)."""

    def __init__(self, uri: str, *, workers: int = 4) -> None:
        super().__init__(workers=workers, name="lunbridge-libvirt")
        self.uri = uri

    def __repr__(self) -> str:
        return f"Session(uri={self.uri!r})"

    def _open(self) -> Any:
        conn = open_connection(self.uri)
        log.info("connected to libvirt %s", self.uri)
        return conn

    def _alive(self, conn: Any) -> bool:
        try:
            return bool(conn.isAlive())
        except Exception:  # a closed handle raises instead of answering 0
            return False

    def _lost(self, exc: BaseException) -> bool:
        return connection_lost(exc)

    def _discard(self, conn: Any) -> None:
        conn.close()

    def _translate(self, exc: BaseException, what: str) -> BaseException | None:
        return translate(exc, what, self.uri)
