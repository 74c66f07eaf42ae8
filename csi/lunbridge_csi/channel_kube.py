"""The node channel's API calls on the official client (`lunbridge.kubeapi`): a labelled list,
a watch from its resourceVersion, a merge patch of `status.nodeReport`, and the node's own
LunbridgeNode (created, or its spec merged).

The client's watch is a blocking stream, so it runs in a daemon thread that hands each object to
the event loop; the server ends a watch after WATCH_SECONDS and the channel lists again. An
expired resourceVersion (410) ends the watch the same way. Imported only when the node plugin
is given its node name, so a node plugin without a channel never loads the client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import kubernetes.watch
from kubernetes.client.exceptions import ApiException

from lunbridge.api import API_VERSION, GROUP, LUNBRIDGE_NODE_KIND, LUNBRIDGE_NODE_PLURAL, VERSION
from lunbridge.errors import AlreadyExists
from lunbridge.kubeapi import KubeApi, translate

WATCH_SECONDS = 240
_END = object()
watch_module: Any = kubernetes.watch  # untyped, like `lunbridge.kubeapi.client`


class ChannelKube(KubeApi):
    async def list_objects(self, plural: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        found: dict[str, Any] = await self._call(
            f"list {plural} ({label_selector})",
            lambda: self._custom.list_cluster_custom_object(
                GROUP, VERSION, plural, label_selector=label_selector
            ),
        )
        return list(found.get("items", [])), str(found.get("metadata", {}).get("resourceVersion", ""))

    async def watch_objects(
        self, plural: str, label_selector: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def stream() -> None:
            watch = watch_module.Watch()
            try:
                for event in watch.stream(
                    self._watch_custom.list_cluster_custom_object, GROUP, VERSION, plural,
                    label_selector=label_selector, resource_version=resource_version,
                    timeout_seconds=WATCH_SECONDS,
                ):  # fmt: skip
                    if stop.is_set():
                        break
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        loop.call_soon_threadsafe(queue.put_nowait, event["object"])
            except ApiException as exc:
                if exc.status != 410:  # gone: list again
                    loop.call_soon_threadsafe(queue.put_nowait, translate(f"watch {plural}", exc))
            except Exception as exc:  # the stream's connection errors, whatever their class
                loop.call_soon_threadsafe(queue.put_nowait, translate(f"watch {plural}", exc))
            finally:
                watch.stop()
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        threading.Thread(target=stream, name=f"watch {plural}", daemon=True).start()
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()

    async def publish_node(self, name: str, spec: dict[str, Any]) -> None:
        """Create this node's LunbridgeNode, or merge `spec` into the one there."""
        body = {
            "apiVersion": API_VERSION,
            "kind": LUNBRIDGE_NODE_KIND,
            "metadata": {"name": name},
            "spec": spec,
        }
        try:
            await self._call(
                f"create LunbridgeNode {name}",
                lambda: self._custom.create_cluster_custom_object(
                    GROUP, VERSION, LUNBRIDGE_NODE_PLURAL, body
                ),
            )
        except AlreadyExists:
            await self._call(
                f"update LunbridgeNode {name}",
                lambda: self._custom.patch_cluster_custom_object(
                    GROUP, VERSION, LUNBRIDGE_NODE_PLURAL, name, {"spec": spec}
                ),
            )

    async def patch_report(self, plural: str, name: str, report: dict[str, Any]) -> None:
        body = {"status": {"nodeReport": report}}
        await self._call(
            f"report to {plural} {name}",
            lambda: self._custom.patch_cluster_custom_object_status(GROUP, VERSION, plural, name, body),
        )
