"""The Node index behind `node_by_id` (`lunbridge_csi.nodes`): answers from memory while its
watch runs, lists again on a miss (a Node made a moment ago is found) and after its watch
failed (a Node deleted meanwhile is not answered), and shares one LIST between lookups that
miss at once."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lunbridge.errors import NotFound, Unavailable
from lunbridge_csi.nodes import NodeIndex


def node(name: str, provider_id: str | None, version: int) -> dict[str, Any]:
    spec = {"providerID": provider_id} if provider_id else {}
    return {"metadata": {"name": name, "resourceVersion": str(version)}, "spec": spec}


class Nodes:
    """The API server's Nodes as the index sees them: LISTs counted, and watches that give every
    event after their resourceVersion, but only of changes made `loudly` (a quiet change is one
    whose event has not arrived yet); `break_watches` fails the open ones."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.lists = 0
        self.watches: list[str] = []  # the resourceVersion each watch started from
        self.events: list[tuple[int, Any]] = []  # (resourceVersion, event or error)
        self.list_delay = 0.0
        self._news = asyncio.Event()

    def add(self, name: str, provider_id: str | None, loudly: bool = True) -> None:
        self.version += 1
        self.nodes[name] = node(name, provider_id, self.version)
        if loudly:
            self._send(("ADDED", copy.deepcopy(self.nodes[name])))

    def delete(self, name: str, loudly: bool = True) -> None:
        self.version += 1
        gone = self.nodes.pop(name)
        if loudly:
            self._send(
                ("DELETED", {**gone, "metadata": {**gone["metadata"], "resourceVersion": str(self.version)}})
            )

    def break_watches(self) -> None:
        self._send(Unavailable("watch Nodes: the connection dropped"))

    def _send(self, item: object) -> None:
        self.events.append((self.version, item))
        self._news.set()
        self._news = asyncio.Event()

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        await asyncio.sleep(self.list_delay)
        return [copy.deepcopy(n) for n in self.nodes.values()], str(self.version)

    async def watch(self, since: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watches.append(since)
        begun, seen = len(self.events), 0
        while True:
            if seen == len(self.events):
                await self._news.wait()
                continue
            version, item = self.events[seen]
            seen += 1
            if isinstance(item, Exception):
                if seen > begun:  # an error breaks the watches open then, not later ones
                    raise item
            elif version > int(since):
                yield item


@pytest.fixture
def nodes() -> Nodes:
    made = Nodes()
    made.add("node-a", "vsphere://a")
    made.add("node-b", "libvirt://b")
    made.add("node-c", None)
    return made


@pytest.fixture
async def index(nodes: Nodes) -> AsyncIterator[NodeIndex]:
    made = NodeIndex(nodes.list, nodes.watch)
    yield made
    made.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_lookups_answer_from_the_index_without_listing_again(nodes: Nodes, index: NodeIndex) -> None:
    assert await index.node_by_id("vsphere://a") == "node-a"
    assert await index.node_by_id("libvirt://b") == "node-b"
    assert await index.node_by_id("node-c") == "node-c"  # no providerID: found by its name
    assert await index.node_by_id("node-a") == "node-a"
    assert nodes.lists == 1
    await settle()
    assert nodes.watches == ["3"]  # from the LIST's resourceVersion
    assert index.live


async def test_a_provider_id_wins_over_a_node_of_that_name(nodes: Nodes, index: NodeIndex) -> None:
    nodes.add("vsphere://z", None)
    nodes.add("node-z", "vsphere://z")
    assert await index.node_by_id("vsphere://z") == "node-z"


async def test_a_node_made_after_the_index_was_filled_is_found_by_listing_again(
    nodes: Nodes, index: NodeIndex
) -> None:
    assert await index.node_by_id("vsphere://a") == "node-a"
    await settle()
    nodes.add("node-d", "vsphere://d", loudly=False)  # its watch event is still on the way
    assert await index.node_by_id("vsphere://d") == "node-d"
    assert nodes.lists == 2
    nodes.add("node-e", "vsphere://e")  # told by the watch: no LIST
    await settle()
    assert await index.node_by_id("vsphere://e") == "node-e"
    assert nodes.lists == 2
    with pytest.raises(NotFound, match=r"no Node has spec\.providerID vsphere://x or is named vsphere://x"):
        await index.node_by_id("vsphere://x")
    assert nodes.lists == 3


async def test_a_node_deleted_is_not_answered_once_its_watch_event_came(
    nodes: Nodes, index: NodeIndex
) -> None:
    assert await index.node_by_id("vsphere://a") == "node-a"
    await settle()
    nodes.delete("node-a")
    await settle()
    with pytest.raises(NotFound):
        await index.node_by_id("vsphere://a")
    with pytest.raises(NotFound):
        await index.node_by_id("node-a")


async def test_a_moved_provider_id_follows_the_watch(nodes: Nodes, index: NodeIndex) -> None:
    assert await index.node_by_id("vsphere://a") == "node-a"
    await settle()
    nodes.add("node-a", "vsphere://a2")
    await settle()
    assert await index.node_by_id("vsphere://a2") == "node-a"
    assert nodes.lists == 1
    with pytest.raises(NotFound):
        await index.node_by_id("vsphere://a")


async def test_after_the_watch_failed_a_lookup_lists_again_and_sees_what_changed(
    nodes: Nodes, index: NodeIndex
) -> None:
    assert await index.node_by_id("vsphere://a") == "node-a"
    await settle()
    nodes.break_watches()
    await settle()
    assert not index.live
    nodes.delete("node-a", loudly=False)  # no watch to tell it
    with pytest.raises(NotFound):
        await index.node_by_id("vsphere://a")
    assert nodes.lists == 2
    await settle()
    assert index.live
    assert nodes.watches == ["3", "4"]


async def test_a_watch_that_keeps_ending_at_once_leaves_the_index_stale_not_spinning() -> None:
    watches = 0

    async def listed() -> tuple[list[dict[str, Any]], str]:
        return [node("node-a", "vsphere://a", 1)], "1"

    async def ends(since: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        nonlocal watches
        watches += 1
        return
        yield

    index = NodeIndex(listed, ends)
    assert await index.node_by_id("vsphere://a") == "node-a"
    await asyncio.sleep(0.05)
    assert watches == 1
    assert not index.live


async def test_lookups_that_miss_at_once_share_one_list(nodes: Nodes, index: NodeIndex) -> None:
    nodes.list_delay = 0.02
    found = await asyncio.gather(*(index.node_by_id(f"node-{n}") for n in "abcab"))
    assert found == ["node-a", "node-b", "node-c", "node-a", "node-b"]
    assert nodes.lists == 1


async def test_a_failed_list_is_the_lookups_error_and_the_next_lookup_lists_again(nodes: Nodes) -> None:
    calls = 0

    async def flaky() -> tuple[list[dict[str, Any]], str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("list Nodes: the Kubernetes API cannot be reached")
        return await nodes.list()

    index = NodeIndex(flaky, nodes.watch)
    with pytest.raises(Unavailable):
        await index.node_by_id("vsphere://a")
    assert await index.node_by_id("vsphere://a") == "node-a"
    index.close()
