"""One watch of every VirtualDisk, shared by the controller's waits, so that a wait after a write
starts at once: no watch of its own to open (a thread, a request, the server's replay) between
the create or patch and the operator's answer.

The order rule, which needs no comparison of resourceVersions (the API treats them as opaque):
a wait registers with the feed (`Feed.following`) *before* its write, so the one stream brings,
in order, everything that happened to the object from then on. The event that carries the
write's own resourceVersion marks where the write sits in that stream: the events before it are
older versions (skipped), the events after it are the versions the wait judges.

When the feed cannot tell, the wait does what it did alone (`waiting.watched`: a read, then a
watch of that one object from it):
- the feed was not running when the wait registered;
- the feed lost events (its watch failed, or resumed past an expired resourceVersion): every
  registered wait is told (GAP);
- the write's own event did not come within SYNC_SECONDS (a write that changed nothing has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from lunbridge_csi.waiting import Changes

log = logging.getLogger(__name__)
V = TypeVar("V")
# the list's resourceVersion (a LIST of at most one object: only where to watch from matters)
Versioner = Callable[[], Awaitable[str]]
# (event type, object) of a watch from a resourceVersion; ends when the server ends it
Watcher = Callable[[str], AsyncIterator[tuple[str, dict[str, Any]]]]
SYNC_SECONDS = 2.0
SHORTEST_WATCH_SECONDS = 1.0  # a watch that ends sooner, having said nothing, counts as failed
RETRY_SECONDS = (0.2, 1.0, 2.0, 5.0)  # before a new start, by the quick failures before it
STEADY_SECONDS = 60.0
GAP = object()


def resource_version(body: dict[str, Any] | None) -> str | None:
    return ((body or {}).get("metadata") or {}).get("resourceVersion")


class Following:
    """What the feed saw of one object since a wait registered: (type, object) in order, and GAP
    when the feed lost events."""

    def __init__(self, name: str, usable: bool) -> None:
        self.name = name
        self.usable = usable  # False: the feed could not vouch for the order from the start
        self._events: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, kind: str, body: dict[str, Any]) -> None:
        self._events.put_nowait((kind, body))

    def gap(self) -> None:
        """The feed lost events from here on: what came before still holds."""
        self._events.put_nowait(GAP)

    def after(
        self, version: str | None, parse: Callable[[dict[str, Any] | None], V], fallback: Changes[V]
    ) -> Changes[V]:
        """`waiting.wait_until`'s `changes`: the versions after resourceVersion `version` (what the
        caller's own write returned), each made by `parse` from the object (None when deleted).
        The first stream ends when the feed cannot tell (see the module); every later one, and
        the first when the feed could not vouch from the start, is `fallback`'s."""
        tried = False

        async def later(last: V, seconds: float) -> AsyncGenerator[V, None]:
            nonlocal tried
            if tried or not self.usable or not version:
                async with contextlib.aclosing(fallback(last, seconds)) as stream:
                    async for found in stream:
                        yield found
                return
            tried = True
            synced = False
            while True:
                try:
                    async with asyncio.timeout(None if synced else SYNC_SECONDS):
                        item = await self._events.get()
                except TimeoutError:
                    log.debug("%s: its write's own event did not come; watching it alone", self.name)
                    return
                if item is GAP:
                    return
                kind, body = item
                if not synced:
                    synced = resource_version(body) == version
                    continue
                yield parse(None if kind == "DELETED" else body)

        return later


class Feed:
    """One watch of every object of a kind (`watch`, from where `list_version` says), handing each
    event to the waits registered for its object's name. It starts on first use and runs until
    `close`; a failed watch is started again from a new list, and the waits registered meanwhile
    are told of the gap."""

    def __init__(self, what: str, list_version: Versioner, watch: Watcher) -> None:
        self._what = what
        self._list_version = list_version
        self._watch = watch
        self._followers: dict[str, set[Following]] = {}
        self._live = False
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Whether the watch runs without a gap since the last list."""
        return self._live

    def start(self) -> None:
        """Start the watch if it does not run (idempotent; needs a running event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"feed of {self._what}")

    def close(self) -> None:
        self._live = False
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._tell_gap()

    @contextlib.contextmanager
    def following(self, name: str) -> Any:
        """Register a wait on object `name` for the duration of the block (enter it before the
        write); yields its `Following`."""
        self.start()
        follower = Following(name, self._live)
        self._followers.setdefault(name, set()).add(follower)
        try:
            yield follower
        finally:
            followers = self._followers.get(name)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._followers[name]

    async def _run(self) -> None:
        quick_failures = 0  # in a row, each less than STEADY_SECONDS after its start
        while True:
            began = time.monotonic()
            try:
                version = await self._list_version()
                self._live = True
                await self._follow(version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the list's and the watch's errors, whatever their class
                log.info("the %s feed stopped (%s); the waits watch alone meanwhile", self._what, exc)
            self._live = False
            self._tell_gap()
            steady = time.monotonic() - began >= STEADY_SECONDS
            quick_failures = 0 if steady else quick_failures + 1
            await asyncio.sleep(RETRY_SECONDS[min(quick_failures, len(RETRY_SECONDS) - 1)])

    async def _follow(self, version: str) -> None:
        """Hand on the watch's events from `version`, watching again from the last one each
        time the server ends the watch; raises when the watch fails (an expired version too)."""
        while True:
            began, said = time.monotonic(), False
            async for kind, body in self._watch(version):
                said = True
                version = resource_version(body) or version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    name = str((body.get("metadata") or {}).get("name"))
                    for follower in list(self._followers.get(name, ())):
                        follower.put(kind, body)
            if not said and time.monotonic() - began < SHORTEST_WATCH_SECONDS:
                raise ConnectionError(f"the {self._what} watch ended at once")

    def _tell_gap(self) -> None:
        for followers in self._followers.values():
            for follower in followers:
                follower.gap()
