"""kopf handlers of DiskVerification actions; they only adapt kopf to `reconcile.diskverification`.

A verification waits on others (the clone's attach, the verifier node's check), so it runs as a
kopf daemon: one per unfinished object, started on create and again on operator start, with a
live view of the object (the node's report arrives in its status). Transient errors are
recorded and the run starts again after a backoff (every step is idempotent). Deleting an
unfinished verification stops its daemon and deletes its clone.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from lunbridge.api import DISK_VERIFICATION_PLURAL, GROUP, VERIFICATION_LABEL, VERSION, VIRTUAL_DISK_PLURAL
from lunbridge.errors import LunbridgeError, NotFound
from lunbridge.models import VerificationPhase
from lunbridge_operator.handlers.common import classify, events_for, retry_delay, services
from lunbridge_operator.reconcile import diskverification
from lunbridge_operator.reconcile.diskverification import Verification

DONE = (VerificationPhase.COMPLETED.value, VerificationPhase.FAILED.value)


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in DONE


def _action(body: kopf.Body) -> Verification:
    meta = body.metadata
    return Verification.from_object(
        meta.name or "", meta.uid or "", meta.get("generation"), body.spec, body.status
    )


@kopf.daemon(GROUP, VERSION, DISK_VERIFICATION_PLURAL, when=_unfinished, cancellation_timeout=5.0)
async def verify_snapshot(*, body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    svc = services(memo)
    events = events_for(body)
    stop = asyncio.Event()
    retry = 0

    def live() -> dict[str, Any] | None:
        report = body.status.get("nodeReport")
        return dict(report) if report else None

    watcher = asyncio.create_task(_mirror(stopped, stop))
    try:
        while not stop.is_set():
            action = _action(body)
            try:
                await diskverification.run(svc, action, live, stop, events)
                return
            except LunbridgeError as exc:
                reason, delay = classify(exc)
                action.condition(False, reason, str(exc))
                action.status.message = str(exc)
                with contextlib.suppress(LunbridgeError):
                    await action.save(svc)
                if delay is None:  # a spec that cannot be read: nothing was made yet
                    action.status.phase = VerificationPhase.FAILED
                    with contextlib.suppress(LunbridgeError):
                        await action.save(svc)
                    events(reason, str(exc), warning=True)
                    return
                retry += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry_delay(exc, retry) or 0.0)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise  # the operator stops: the next start resumes from status
    finally:
        watcher.cancel()


async def _mirror(stopped: kopf.DaemonStopped, stop: asyncio.Event) -> None:
    """kopf's stop flag as an asyncio.Event the reconcile steps can wait on."""
    await stopped.wait()
    stop.set()


@kopf.on.delete(GROUP, VERSION, DISK_VERIFICATION_PLURAL)
async def forget_verification(*, body: kopf.Body, memo: Any, **_: Any) -> None:
    """The clone of a verification deleted before it finished goes too (its own teardown)."""
    if body.status.get("phase") in DONE:
        return
    name = _action(body).clone_name
    svc = services(memo)
    with contextlib.suppress(NotFound):
        found = await svc.kube.get(VIRTUAL_DISK_PLURAL, name)
        if found.get("metadata", {}).get("labels", {}).get(VERIFICATION_LABEL) == body.metadata.name:
            await svc.kube.delete_object(VIRTUAL_DISK_PLURAL, name)
