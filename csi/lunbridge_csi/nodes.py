"""Which Node a CSI node_id names, without listing every Node on each publish and unpublish: an
index of the Nodes by spec.providerID and by name, filled by one LIST and kept fresh by a watch
from that LIST's resourceVersion.

The rules, so that an answer is never staler than the watch that keeps it:
- the index answers only while its watch runs; a miss lists again, so a Node made a moment ago
  (before its watch event arrived) is found;
- a watch that fails (or keeps ending at once) leaves the index stale: the next lookup lists again
  and starts a new watch, so a Node deleted meanwhile is not answered from memory;
- one LIST at a time: a lookup that missed while one ran takes its answer from it when it has
  one, else shares the next LIST with the others that missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from lunbridge.errors import NotFound

log = logging.getLogger(__name__)
# every Node as the API server sends them (camelCase dicts), and the list's resourceVersion
Lister = Callable[[], Awaitable[tuple[list[dict[str, Any]], str]]]
# (event type, Node) of a watch from a resourceVersion; ends when the server ends it
Watcher = Callable[[str], AsyncIterator[tuple[str, dict[str, Any]]]]
SHORTEST_WATCH_SECONDS = 1.0  # a watch that ends sooner, having said nothing, counts as failed


def not_found(node_id: str) -> NotFound:
    return NotFound(f"no Node has spec.providerID {node_id} or is named {node_id}")


class NodeIndex:
    """Node names by spec.providerID, and the Node names themselves (see the module's rules)."""

    def __init__(self, list_nodes: Lister, watch_nodes: Watcher) -> None:
        self._list = list_nodes
        self._watch = watch_nodes
        self._provider_ids: dict[str, str | None] = {}  # Node name -> its spec.providerID
        self._names: dict[str, str] = {}  # spec.providerID -> Node name
        self._live = False
        self._begun = 0  # LISTs begun, numbered
        self._fresh_from = 0  # the number of the last LIST that succeeded
        self._listing = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Whether a watch keeps the index fresh (else the next lookup lists again)."""
        return self._live

    async def node_by_id(self, node_id: str) -> str:
        """The name of the Node whose spec.providerID is `node_id`, else `node_id` itself when a
        Node has that name. NotFound when neither exists after a fresh LIST; the list's errors
        (Unavailable...) as they come."""
        if self._live and (name := self._find(node_id)) is not None:
            return name
        missed_at = self._begun
        async with self._listing:
            if self._live and (name := self._find(node_id)) is not None:
                return name  # a LIST made while this lookup waited has it
            if self._fresh_from <= missed_at:  # no LIST begun after the miss succeeded
                await self._relist()
        name = self._find(node_id)
        if name is None:
            raise not_found(node_id)
        return name

    def close(self) -> None:
        """Stop the watch; the next lookup lists again."""
        self._live = False
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None

    def _find(self, node_id: str) -> str | None:
        name = self._names.get(node_id)
        if name is None and node_id in self._provider_ids:
            return node_id
        return name

    async def _relist(self) -> None:
        """One LIST, which replaces the index and starts a watch from its resourceVersion."""
        self._begun += 1
        number = self._begun
        nodes, version = await self._list()
        self.close()
        self._provider_ids.clear()
        self._names.clear()
        for node in nodes:
            self._put(node)
        self._fresh_from = number
        self._live = True
        self._follower = asyncio.create_task(self._follow(version), name="watch Nodes")

    async def _follow(self, version: str) -> None:
        """Apply the watch's events from `version` on, watching again each time the server ends
        the watch; on a failure, mark the index stale and stop."""
        me = asyncio.current_task()
        try:
            while True:
                began, said = time.monotonic(), False
                async for kind, node in self._watch(version):
                    said = True
                    version = (node.get("metadata") or {}).get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED"):
                        self._put(node)
                    elif kind == "DELETED":
                        self._drop(node)
                if not said and time.monotonic() - began < SHORTEST_WATCH_SECONDS:
                    raise ConnectionError("the Node watch ended at once")
        except Exception as exc:  # the watch's errors, whatever their class
            if self._follower is me:
                log.info("the Node watch stopped (%s); the next lookup lists the Nodes again", exc)
                self._live = False

    def _put(self, node: dict[str, Any]) -> None:
        name = (node.get("metadata") or {}).get("name")
        if not name:
            return
        self._drop(node)
        provider_id = (node.get("spec") or {}).get("providerID")
        self._provider_ids[name] = provider_id
        if provider_id:
            self._names[provider_id] = name

    def _drop(self, node: dict[str, Any]) -> None:
        name = (node.get("metadata") or {}).get("name")
        old = self._provider_ids.pop(name, None) if name else None
        if old and self._names.get(old) == name:
            del self._names[old]
