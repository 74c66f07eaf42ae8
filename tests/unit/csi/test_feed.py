"""The shared VirtualDisk feed (`lunbridge_csi.feed`): a wait judges only the versions after its
own write, learns of every gap, and otherwise falls back to watching its disk alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from lunbridge_csi import feed as feed_module
from lunbridge_csi.feed import Feed, Following


def version(name: str, rv: int, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}, **fields}


def parse(body: dict[str, Any] | None) -> str:
    return "gone" if body is None else str(body["metadata"]["resourceVersion"])


def fallback_of(seen: list[tuple[str, float]]) -> Any:
    async def alone(last: str, seconds: float) -> AsyncGenerator[str, None]:
        seen.append((last, seconds))
        yield "alone"

    return alone


async def drain(changes: Any, last: str = "0", limit: int = 10) -> list[str]:
    found: list[str] = []
    async with contextlib.aclosing(changes(last, 5.0)) as stream:
        async for item in stream:
            found.append(item)
            if len(found) == limit:
                break
    return found


async def test_the_versions_before_the_writes_own_are_skipped_and_the_later_ones_judged() -> None:
    following = Following("d", usable=True)
    following.put("MODIFIED", version("d", 7, status={"phase": "Failed"}))  # older, came late
    following.put("MODIFIED", version("d", 9))  # the write's own
    following.put("MODIFIED", version("d", 12))
    following.put("DELETED", version("d", 13))
    changes = following.after("9", parse, fallback_of([]))
    assert await drain(changes, limit=2) == ["12", "gone"]


async def test_a_gap_ends_the_stream_and_the_next_one_is_the_fallbacks() -> None:
    seen: list[tuple[str, float]] = []
    following = Following("d", usable=True)
    following.put("MODIFIED", version("d", 9))
    following.put("MODIFIED", version("d", 10))
    following.gap()
    changes = following.after("9", parse, fallback_of(seen))
    assert await drain(changes) == ["10"]
    assert await drain(changes, last="10") == ["alone"]
    assert seen == [("10", 5.0)]


async def test_a_write_whose_own_event_never_comes_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "SYNC_SECONDS", 0.05)
    seen: list[tuple[str, float]] = []
    following = Following("d", usable=True)
    following.put("MODIFIED", version("d", 8))  # not the write's own: the write changed nothing
    changes = following.after("9", parse, fallback_of(seen))
    assert await drain(changes) == []
    assert await drain(changes) == ["alone"]


async def test_a_following_the_feed_cannot_vouch_for_goes_to_the_fallback_at_once() -> None:
    seen: list[tuple[str, float]] = []
    changes = Following("d", usable=False).after("9", parse, fallback_of(seen))
    assert await drain(changes) == ["alone"]
    assert len(seen) == 1


class Server:
    """A list and a watch whose events the test sends; `fail()` ends the current watch with an
    error, `end()` ends it as the server's time limit does."""

    def __init__(self) -> None:
        self.version = 100
        self.lists = 0
        self.watched_from: list[str] = []
        self.events: asyncio.Queue[Any] = asyncio.Queue()

    async def list_version(self) -> str:
        self.lists += 1
        return str(self.version)

    async def watch(self, since: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(since)
        while True:
            item = await self.events.get()
            if item == "end":
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def send(self, kind: str, body: dict[str, Any]) -> None:
        self.events.put_nowait((kind, body))


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the condition never held")


@contextlib.asynccontextmanager
async def live_feed(server: Server) -> AsyncIterator[Feed]:
    """A feed of `server`'s VirtualDisks, started and live; closed at the end."""
    feed = Feed("VirtualDisk", server.list_version, server.watch)
    feed.start()
    try:
        await until(lambda: feed.live)
        yield feed
    finally:
        feed.close()


async def test_the_feed_hands_each_event_to_the_waits_on_its_object_only() -> None:
    server = Server()
    async with live_feed(server) as feed:
        with feed.following("a") as a, feed.following("b") as b:
            assert a.usable
            assert b.usable
            server.send("ADDED", version("a", 101))
            server.send("MODIFIED", version("b", 102))
            server.send("MODIFIED", version("a", 103))
            server.send("MODIFIED", version("b", 104))
            assert await drain(a.after("101", parse, fallback_of([])), limit=1) == ["103"]
            assert await drain(b.after("102", parse, fallback_of([])), limit=1) == ["104"]


async def test_the_feed_resumes_from_the_last_version_and_bookmark_when_the_server_ends_it() -> None:
    server = Server()
    async with live_feed(server):
        server.send("MODIFIED", version("a", 101))
        server.send("BOOKMARK", version("", 140))
        server.events.put_nowait("end")
        await until(lambda: len(server.watched_from) == 2)
        assert server.watched_from == ["100", "140"]
        assert server.lists == 1  # no gap: nothing listed again


async def test_a_failed_watch_tells_every_wait_of_the_gap_and_the_feed_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed_module, "RETRY_SECONDS", (0.01,))
    server = Server()
    async with live_feed(server) as feed:
        with feed.following("a") as a:
            server.send("MODIFIED", version("a", 101))  # the write's own
            server.events.put_nowait(ConnectionError("dropped"))
            changes = a.after("101", parse, fallback_of([]))
            assert await drain(changes) == []  # the gap ends the feed's stream
            assert await drain(changes) == ["alone"]
        server.version = 200
        await until(lambda: server.lists == 2 and feed.live)
        assert server.watched_from[-1] == "200"
        with feed.following("a") as again:
            assert again.usable


async def test_a_wait_that_joins_while_the_feed_is_down_watches_alone() -> None:
    server = Server()
    feed = Feed("VirtualDisk", server.list_version, server.watch)
    with feed.following("a") as a:  # starts the feed, which has not listed yet
        assert not a.usable
    feed.close()
