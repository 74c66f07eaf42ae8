"""Keyed asyncio coordination, written once for every part of lunbridge.

Both hypervisor layers, the operator and the CSI plugin guard work per object (a VM, a
host, a custom resource, a volume): one change at a time per key, and expensive refreshes
(a host's HBA rescan, an iSCSI discovery) shared by every caller that asked for them at
once. Written separately, each copy kept a lock per key forever; here the per-key entry
exists only while someone holds or waits for it, so the tables never grow with the number
of keys ever seen.

- `KeyedLocks`: `async with locks.hold(key):` mutual exclusion per key (FIFO);
  `async with locks.try_hold(key) as held:` the same without waiting (False when busy).
- `Coalescer`: `await coalescer.run(key, work)` runs `work` once for every caller of the
  same key that asked before that run started.
- `both(first, second)`: two independent steps at once, each run to its end, failing as
  running them in that order would have.

Everything here runs on one event loop and holds no thread lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
B = TypeVar("B")


@dataclass
class _Entry:
    """What a key holds while it is in use: its lock and how many callers hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


E = TypeVar("E", bound=_Entry)


class _Table(Generic[K, E]):
    """Entries per key, each removed as soon as its last user leaves."""

    def __init__(self, make: Callable[[], E]) -> None:
        self._make = make
        self._entries: dict[K, E] = {}

    def __len__(self) -> int:
        """How many keys are in use (held or waited for) now."""
        return len(self._entries)

    def held(self, key: K) -> bool:
        """True while someone holds or waits for `key`."""
        return key in self._entries

    @contextlib.contextmanager
    def _use(self, key: K) -> Iterator[E]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = self._make()
        entry.users += 1
        try:
            yield entry
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]


class KeyedLocks(_Table[K, _Entry]):
    """One asyncio lock per key, alive only while it is held or waited for."""

    def __init__(self) -> None:
        super().__init__(_Entry)

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold `key` for the block, after whoever holds or waits for it already (FIFO)."""
        with self._use(key) as entry:
            async with entry.lock:
                yield

    @contextlib.asynccontextmanager
    async def try_hold(self, key: K) -> AsyncIterator[bool]:
        """Hold `key` for the block if no one holds or waits for it (yields True), else
        hold nothing and yield False at once (a caller that answers "busy, retry")."""
        if self.held(key):
            yield False
            return
        async with self.hold(key):
            yield True


@dataclass
class _Runs(_Entry):
    """A key's runs: `started` counts them; `concluded` is the number of the last one that
    ended (not cancelled), and `error` what it raised (None: it succeeded)."""

    started: int = 0
    concluded: int = 0
    error: BaseException | None = None


class Coalescer(_Table[K, _Runs]):
    """Runs of idempotent work per key (a rescan, a discovery), one at a time, each shared
    by every caller that asked before it started.

    A caller that arrives while a run is in progress waits for the next run (the one in
    progress may have read the state before the caller's reason for asking existed); every
    caller that asked while that run was queued shares it, its result and its exception.
    A run whose caller was cancelled counts for no one: the next waiter runs the work again.
    """

    def __init__(self) -> None:
        super().__init__(_Runs)
        self.runs = 0  # runs started, all keys (for tests and metrics)
        self.failures = 0  # runs that raised

    async def run(self, key: K, work: Callable[[], Awaitable[None]]) -> None:
        """Return once a run of `work` for `key` that started after this call has succeeded;
        raise what it raised if it failed."""
        with self._use(key) as state:
            asked_at = state.started
            async with state.lock:
                if state.concluded > asked_at:  # the run that started after we asked has ended
                    if state.error is not None:
                        raise state.error
                    return
                state.started += 1
                self.runs += 1
                number = state.started
                try:
                    await work()
                except asyncio.CancelledError:
                    raise  # not concluded: the next waiter runs it again
                except BaseException as exc:
                    state.concluded, state.error = number, exc
                    self.failures += 1
                    raise
                state.concluded, state.error = number, None


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await `first` and `second` at once and return their results. Neither is cut short by
    the other's failure (a step that changes something ends as it would have alone); if
    either failed, `first`'s error is raised if it has one, else `second`'s. Cancelling the
    caller cancels both."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    a, b = results
    return a, b  # type: ignore[return-value]
