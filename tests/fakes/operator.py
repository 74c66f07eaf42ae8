"""The operator as kopf would run it, minus kopf's machinery: the REAL handlers of
`lunbridge_operator.handlers` (so the real `reconcile`/`delete` steps, and errors turned into
status by the handlers' own `_failed` and `classify`), run against the fakes whenever the fake
API server says an object was created, had its spec changed or is being deleted.

What kopf does around a handler is played here: the finalizer is added before the first run
and removed after a successful delete; a handler's `kopf.TemporaryError` is kept for `retry()`
and a `PermanentError` waits for a spec change; Events the handlers post through kopf are
collected from kopf's own event queue. Changes are handled at once and in order (one worker),
unless the operator is stopped: then they wait for `start()`, which is how a test holds the
operator back. `OperatorCrashed` (from `crash_after`, or a fake's `fail_next`) kills it like
SIGKILL: nothing more is written until `restart()` resumes every object, as kopf does.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import kopf
from kopf._core.engines.posting import K8sEvent, event_queue_loop_var, event_queue_var, settings_var

from lunbridge.api import (
    DISK_GROUP_SNAPSHOT_PLURAL,
    DISK_RESTORE_PLURAL,
    DISK_SNAPSHOT_PLURAL,
    FINALIZER,
    INITIATOR_GROUP_PLURAL,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.concurrency import KeyedLocks
from lunbridge_operator.handlers import diskgroupsnapshot as group_handlers
from lunbridge_operator.handlers import diskrestore as restore_handlers
from lunbridge_operator.handlers import disksnapshot as snapshot_handlers
from lunbridge_operator.handlers import initiatorgroup as igroup_handlers
from lunbridge_operator.handlers import virtualdisk as disk_handlers
from lunbridge_operator.reconcile.services import Services
from tests.fakes.kube import FakeKube

Handler = Callable[..., object]  # a kopf handler: keyword arguments, a coroutine to await


async def _no_teardown(**_: object) -> None:
    """A kind with no delete handler (an action that owns nothing): kopf adds no finalizer."""


HANDLERS: dict[str, tuple[Handler, Handler]] = {  # plural -> (create/update/resume, delete)
    VIRTUAL_DISK_PLURAL: (disk_handlers.reconcile_virtual_disk, disk_handlers.delete_virtual_disk),
    DISK_SNAPSHOT_PLURAL: (snapshot_handlers.reconcile_disk_snapshot, snapshot_handlers.delete_disk_snapshot),
    DISK_RESTORE_PLURAL: (restore_handlers.restore_disk, _no_teardown),
    DISK_GROUP_SNAPSHOT_PLURAL: (
        group_handlers.reconcile_disk_group_snapshot,
        group_handlers.delete_disk_group_snapshot,
    ),
    INITIATOR_GROUP_PLURAL: (
        igroup_handlers.reconcile_initiator_group,
        igroup_handlers.delete_initiator_group,
    ),
}
Key = tuple[str, str]  # (plural, name)


class OperatorCrashed(Exception):
    """The operator process died here (SIGKILL): no handler gets to record anything."""


@dataclass(frozen=True)
class Event:
    kind: str
    name: str
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Failure:
    """A handler run that ended in a kopf error: kopf retries a temporary one after `delay`."""

    plural: str
    name: str
    error: kopf.TemporaryError | kopf.PermanentError

    @property
    def retryable(self) -> bool:
        return isinstance(self.error, kopf.TemporaryError)

    @property
    def delay(self) -> float | None:
        return self.error.delay if isinstance(self.error, kopf.TemporaryError) else None


class FakeOperator:
    def __init__(self, kube: FakeKube, services: Services, *, running: bool = True) -> None:
        self.kube = kube
        # as lifecycle.started() fills it (config: only what the handlers read of it)
        self.memo = kopf.Memo(
            services=services,
            locks=KeyedLocks[tuple[str, str]](),
            checked={},
            config=SimpleNamespace(resync_seconds=0.0),
        )
        self.running = running
        self.events: list[Event] = []
        self.failures: list[Failure] = []
        self.crashes: list[OperatorCrashed] = []
        self._queue: deque[Key] = deque()
        self._retrying: set[Key] = set()
        self._retries: dict[Key, int] = {}
        self._draining = False
        self._settings = kopf.OperatorSettings()
        self._settings.posting.level = logging.WARNING  # as the operator sets it
        kube.watch(self._changed)

    @property
    def services(self) -> Services:
        found: Services = self.memo.services
        return found

    # --- what tests do ------------------------------------------------------------------------
    def stop(self) -> None:
        """Hold the operator: changes wait until `start()`."""
        self.running = False

    async def start(self) -> None:
        self.running = True
        await self._drain()

    async def restart(self) -> None:
        """A new operator process: every object is resumed (reconciled, or deleted if marked)."""
        self.memo.locks = KeyedLocks[tuple[str, str]]()
        self._queue = deque(
            (plural, name) for plural in HANDLERS for name in self.kube.objects.get(plural, {})
        )
        await self.start()

    async def retry(self) -> None:
        """kopf's retry, now, of every handler whose last run failed with a TemporaryError."""
        self._queue.extend(key for key in sorted(self._retrying) if key not in self._queue)
        await self._drain()

    async def recheck(self, name: str) -> None:
        """The periodic re-check (the kopf timer) of VirtualDisk `name`, as if its interval passed."""
        await self._run((VIRTUAL_DISK_PLURAL, name), disk_handlers.recheck_virtual_disk)

    def crash_after(self, kind: str, step: str) -> None:
        """Die once, right after `kind`'s step `step` has written its status."""

        async def after(done_kind: str, done_step: str) -> None:
            if (done_kind, done_step) == (kind, step):
                self.services.after_step = None
                raise OperatorCrashed(f"killed after {kind}:{step}")

        self.services.after_step = after

    def events_of(self, name: str) -> list[Event]:
        return [event for event in self.events if event.name == name]

    def reasons(self, name: str) -> list[str]:
        return [event.reason for event in self.events_of(name)]

    def failures_of(self, name: str) -> list[Failure]:
        return [failure for failure in self.failures if failure.name == name]

    # --- the worker ---------------------------------------------------------------------------
    async def _changed(self, plural: str, name: str) -> None:
        if plural in HANDLERS and (plural, name) not in self._queue:
            self._queue.append((plural, name))
        await self._drain()

    async def _drain(self) -> None:
        if self._draining:
            return  # the running worker takes it next
        self._draining = True
        try:
            while self.running and self._queue:
                await self._handle(self._queue.popleft())
        finally:
            self._draining = False

    async def _handle(self, key: Key) -> None:
        plural, name = key
        stored = self.kube.objects.get(plural, {}).get(name)
        if stored is None:
            return
        reconcile, delete = HANDLERS[plural]
        meta = stored["metadata"]
        if meta.get("deletionTimestamp"):
            # as kopf: the finalizer goes when the handler succeeded, or failed permanently
            if FINALIZER in meta.get("finalizers", []):
                before = len(self.failures)
                if await self._run(key, delete) or self._gave_up(before):
                    self.kube.remove_finalizer(plural, name, FINALIZER)
            return
        self.kube.add_finalizer(plural, name, FINALIZER)
        await self._run(key, reconcile)

    def _gave_up(self, before: int) -> bool:
        """The run that began when `failures` had `before` entries failed permanently."""
        return len(self.failures) > before and not self.failures[-1].retryable

    async def _run(self, key: Key, handler: Handler) -> bool:
        """One handler run as kopf makes it; True if it succeeded."""
        body = kopf.Body(cast(kopf.RawBody, self.kube.read(*key)))
        try:
            with self.posting():
                result = handler(body=body, memo=self.memo, retry=self._retries.get(key, 0))
                if inspect.isawaitable(result):
                    await result
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            self.failures.append(Failure(key[0], key[1], exc))
            self._retries[key] = self._retries.get(key, 0) + 1
            (self._retrying.add if isinstance(exc, kopf.TemporaryError) else self._retrying.discard)(key)
            return False
        except OperatorCrashed as exc:
            self.crashes.append(exc)
            self.running = False
            self._queue.clear()
            return False
        self._retries.pop(key, None)
        self._retrying.discard(key)
        return True

    @contextmanager
    def posting(self) -> Iterator[None]:
        """kopf's event posting, into a queue this fake empties into `events` (what a handler
        run has; tests that call the operator's code outside a handler use it too)."""
        queue: asyncio.Queue[K8sEvent] = asyncio.Queue()
        tokens = (
            settings_var.set(self._settings),
            event_queue_var.set(queue),
            event_queue_loop_var.set(asyncio.get_running_loop()),
        )
        try:
            yield
        finally:
            event_queue_loop_var.reset(tokens[2])
            event_queue_var.reset(tokens[1])
            settings_var.reset(tokens[0])
            while not queue.empty():
                posted = queue.get_nowait()
                ref: Any = posted.ref
                self.events.append(
                    Event(ref["kind"], ref["name"], posted.type, posted.reason, posted.message)
                )
