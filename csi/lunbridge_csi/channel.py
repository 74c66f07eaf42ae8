"""The node plugin's one channel to the Kubernetes API: how it learns of work for its node and
reports back (the CSI node RPCs keep their contract; the kubelet alone drives them).

The operator writes a `NodeTask` into an object's `status.nodeTask` and labels the object
`lunbridge.io/node-task=<node_task_label(node)>` (`lunbridge.models.nodetask`). `NodeChannel`
lists, then watches, the objects of each served kind that carry this node's label value; for a
task addressed to this node whose report is not `Done` it runs the worker registered for the
task's `type`, within the task's time limit, and merge-patches `status.nodeReport` (`Running`,
then `Done` with the worker's result, or with `error`). A task runs once per process at a time;
a node plugin restarted mid-task runs it again (workers are idempotent); a report that could
not be written is sent again, without running the task again, when the object is next seen.
The same channel publishes what the node is: its attachment mode and its own initiators
(`publication`, a LunbridgeNode named after the node, `lunbridge.models.lunbridgenode`), at
start and again whenever they change (read every PUBLISH_SECONDS). Guest-side volume health
will use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from lunbridge.errors import InvalidArgument, LunbridgeError
from lunbridge.models import NodeReport, NodeTask, TaskState, node_task_label
from lunbridge.models.conditions import now

log = logging.getLogger(__name__)

Worker = Callable[[NodeTask, str], Awaitable[dict[str, str]]]  # (task, object name) -> result
RETRY_SECONDS = 5.0
PUBLISH_SECONDS = 60.0
REMEMBERED = 64  # finished reports kept to send again without re-running their task


class TaskApi(Protocol):
    """The API calls of the channel (a fake implements it in unit tests)."""

    async def list_objects(self, plural: str, label_selector: str) -> tuple[list[dict[str, Any]], str]: ...
    def watch_objects(
        self, plural: str, label_selector: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]: ...
    async def patch_report(self, plural: str, name: str, report: dict[str, Any]) -> None: ...
    async def publish_node(self, name: str, spec: dict[str, Any]) -> None: ...


class NodeChannel:
    """The channel of node `node`: `workers` by task type, served for the kinds `plurals`, and
    the node's LunbridgeNode spec as `publication` reads it (None: nothing is published)."""

    def __init__(
        self,
        api: TaskApi,
        node: str,
        workers: Mapping[str, Worker],
        plurals: tuple[str, ...],
        publication: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.api = api
        self.publication = publication
        self.published: dict[str, Any] | None = None
        self.node = node
        self.workers = dict(workers)
        self.plurals = plurals
        self.selector = f"lunbridge.io/node-task={node_task_label(node)}"
        self._running: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._finished: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()

    async def run(self) -> None:
        """Serve until cancelled; API failures are logged and retried."""
        log.info("node channel of %s: watching %s (%s)", self.node, ", ".join(self.plurals), self.selector)
        loops = [self._follow(plural) for plural in self.plurals]
        if self.publication is not None:
            loops.append(self._publish())
        try:
            await asyncio.gather(*loops)
        finally:
            for task in self._running.values():
                task.cancel()

    async def _follow(self, plural: str) -> None:
        while True:
            try:
                items, version = await self.api.list_objects(plural, self.selector)
                for item in items:
                    self.consider(plural, item)
                async for item in self.api.watch_objects(plural, self.selector, version):
                    self.consider(plural, item)
            except LunbridgeError as exc:
                log.warning("node channel: %s: %s; again in %.0fs", plural, exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)

    async def publish_once(self) -> bool:
        """Publish the node's LunbridgeNode spec if it changed since the last publication; True
        when it was written."""
        assert self.publication is not None
        spec = await asyncio.to_thread(self.publication)
        if spec == self.published:
            return False
        await self.api.publish_node(self.node, spec)
        self.published = spec
        log.info("node channel: published LunbridgeNode %s: %s", self.node, spec)
        return True

    async def _publish(self) -> None:
        while True:
            try:
                await self.publish_once()
            except LunbridgeError as exc:
                log.warning("node channel: cannot publish LunbridgeNode %s: %s", self.node, exc)
            await asyncio.sleep(PUBLISH_SECONDS if self.published is not None else RETRY_SECONDS)

    def consider(self, plural: str, obj: Mapping[str, Any]) -> None:
        """Start the object's task if it is this node's and not answered yet."""
        name = str(obj.get("metadata", {}).get("name", ""))
        status = obj.get("status") or {}
        try:
            task = (
                NodeTask.from_dict(status["nodeTask"], "status.nodeTask") if status.get("nodeTask") else None
            )
            report = NodeReport.from_dict(status["nodeReport"]) if status.get("nodeReport") else None
        except InvalidArgument as exc:
            log.warning("node channel: %s %s: %s", plural, name, exc)
            return
        if task is None or task.node != self.node or (report is not None and report.answers(task)):
            return
        key = (plural, name, task.id)
        if key in self._running:
            return
        self._running[key] = asyncio.create_task(self._run(key, task), name=f"node-task {plural}/{name}")

    async def _run(self, key: tuple[str, str, str], task: NodeTask) -> None:
        plural, name, _ = key
        try:
            final = self._finished.get(key)
            if final is None:
                final = await self._work(plural, name, task)
                self._finished[key] = final
                while len(self._finished) > REMEMBERED:
                    self._finished.popitem(last=False)
            await self.api.patch_report(plural, name, final)
        except LunbridgeError as exc:  # the report is sent again when the object is next seen
            log.warning("node channel: cannot report task %s of %s %s: %s", task.id, plural, name, exc)
        finally:
            self._running.pop(key, None)

    async def _work(self, plural: str, name: str, task: NodeTask) -> dict[str, Any]:
        base = {"id": task.id, "node": self.node, "startedAt": now()}
        running = {
            **base,
            "state": TaskState.RUNNING.value,
            "finishedAt": None,
            "result": None,
            "error": None,
        }
        with contextlib.suppress(LunbridgeError):  # a merge patch: an earlier task's keys go
            await self.api.patch_report(plural, name, running)
        worker = self.workers.get(task.type)
        report: dict[str, Any] = {**base, "state": TaskState.DONE.value, "result": None, "error": None}
        if worker is None:
            report["error"] = f"this node plugin has no worker for task type {task.type!r}"
            return {**report, "finishedAt": now()}
        log.info("node task %s (%s) of %s %s: started", task.id, task.type, plural, name)
        try:
            report["result"] = await asyncio.wait_for(worker(task, name), task.timeout_seconds)
        except TimeoutError:
            report["error"] = f"the node did not finish the task within {task.timeout_seconds}s"
        except LunbridgeError as exc:
            report["error"] = str(exc)
        log.info("node task %s of %s %s: %s", task.id, plural, name, report.get("error") or "done")
        return {**report, "finishedAt": now()}
