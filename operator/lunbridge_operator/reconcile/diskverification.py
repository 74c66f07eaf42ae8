"""The DiskVerification action as plain async steps, each recorded in status before the next:

  check -> Cloning (a throwaway VirtualDisk restored from the snapshot, attached to the
  verifier node's VM) -> Checking (a node task for that node's plugin, through the node
  channel) -> the node's report -> Cleaning (the clone deleted: detached, unmapped, its LUN
  gone) -> Completed, and the outcome on the DiskSnapshot (condition Verified,
  status.lastVerification).

The clone is an ordinary VirtualDisk (`verify-<uid>`, labelled with the verification's name),
so attaching and tearing it down are the disk steps every other disk takes, crash-safe the
same way; the snapshot's source disk is never touched. Every step is idempotent and resumes
from status, so an operator killed at any step ends the same way. Whatever happens once the
clone exists (a damaged snapshot, a node that never answers, a clone that cannot attach) the
clone is deleted before the action ends. A damaged snapshot is an outcome (Completed, result
Failed); Failed means lunbridge could not verify, and the reason says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from lunbridge.api import (
    API_VERSION,
    DISK_SNAPSHOT_PLURAL,
    DISK_VERIFICATION_KIND,
    DISK_VERIFICATION_PLURAL,
    NODE_TASK_LABEL,
    VERIFICATION_LABEL,
    VIRTUAL_DISK_KIND,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.errors import AlreadyExists, InvalidArgument, LunbridgeError, NotFound, Unavailable
from lunbridge.models import (
    ConditionType,
    DiskSnapshot,
    DiskVerificationSpec,
    DiskVerificationStatus,
    NodeReport,
    NodeTask,
    Phase,
    PublishContext,
    SnapshotPhase,
    VerificationPhase,
    VerificationRecord,
    VerifyOutcome,
    VerifyRequest,
    VirtualDisk,
    merge_patch,
    node_task_label,
)
from lunbridge.models.conditions import VERIFIED, now
from lunbridge.models.diskverification import VERIFY_TASK
from lunbridge_operator.reconcile.diskrestore import Refused
from lunbridge_operator.reconcile.services import Events, Services
from lunbridge_operator.reconcile.tracked import Tracked

KIND = DISK_VERIFICATION_KIND
POLL_SECONDS = 1.0
CLONE_TIMEOUT = 600.0  # the clone restored, mapped and attached
PICKUP_TIMEOUT = 180.0  # the verifier's node plugin says it started (Running)
GONE_TIMEOUT = 600.0  # the clone's teardown
LiveReport = Callable[[], dict[str, Any] | None]  # the object's status.nodeReport as last seen


class Verification(Tracked[DiskVerificationSpec, DiskVerificationStatus]):
    plural = DISK_VERIFICATION_PLURAL
    spec_model = DiskVerificationSpec
    status_model = DiskVerificationStatus

    @property
    def clone_name(self) -> str:
        return f"verify-{self.uid.lower()}"

    def record(self, phase: VerificationPhase, reason: str, message: str) -> None:
        self.status.phase, self.status.message = phase, message
        self.status.observed_generation = self.generation
        done = phase in (VerificationPhase.COMPLETED, VerificationPhase.FAILED)
        self.condition(done, reason, message)


async def _step(svc: Services, action: Verification, step: str) -> None:
    await action.save(svc)
    if svc.after_step is not None:
        await svc.after_step(KIND, step)


async def _snapshot(svc: Services, spec: DiskVerificationSpec) -> DiskSnapshot:
    try:
        return DiskSnapshot.from_dict(await svc.kube.get(DISK_SNAPSHOT_PLURAL, spec.snapshot))
    except NotFound:
        raise Refused(
            "SnapshotNotFound", f"spec.snapshot {spec.snapshot}: the DiskSnapshot does not exist"
        ) from None


async def _source_hints(svc: Services, snap: DiskSnapshot) -> tuple[str | None, str | None]:
    """The source disk's declared fsType and volumeMode (hints for the node), if it still exists."""
    name = snap.source_disk
    if not name:
        return None, None
    try:
        disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
    except (NotFound, InvalidArgument):
        return None, None
    return disk.spec.fs_type.value, disk.spec.volume_mode.value


def clone_manifest(action: Verification, snap: DiskSnapshot, node: str) -> dict[str, Any]:
    """The throwaway VirtualDisk: the snapshot restored onto its backend, attached to `node`."""
    size = snap.status.restore_size or 0
    quantity = f"{size >> 20}Mi" if size and size % (1 << 20) == 0 else str(size)  # as a user writes it
    return {
        "apiVersion": API_VERSION,
        "kind": VIRTUAL_DISK_KIND,
        "metadata": {
            "name": action.clone_name,
            "labels": {VERIFICATION_LABEL: action.name},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": action.name,
                    "uid": action.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "size": quantity,
            "backend": snap.status.backend,
            "nodeName": node,
            "source": {"snapshot": snap.name},
            "reclaimPolicy": "Delete",
        },
    }


async def _clone(svc: Services, action: Verification, snap: DiskSnapshot, node: str) -> VirtualDisk:
    """The clone disk, made if missing; refused if a disk of that name is not this action's."""
    name = action.clone_name
    with contextlib.suppress(AlreadyExists):
        await svc.kube.create(VIRTUAL_DISK_PLURAL, clone_manifest(action, snap, node))
    disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
    if disk.metadata.labels.get(VERIFICATION_LABEL) != action.name:
        raise Refused("CloneNameTaken", f"VirtualDisk {name} exists and is not this verification's clone")
    return disk


async def _attached(svc: Services, name: str, stopped: asyncio.Event) -> VirtualDisk:
    """Wait (bounded) until the clone is Ready on its node; Refused when it cannot get there."""
    deadline = time.monotonic() + CLONE_TIMEOUT
    while True:
        disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
        if disk.status.phase is Phase.READY and disk.status.attachment is not None:
            return disk
        if disk.status.phase is Phase.FAILED:
            raise Refused("CloneFailed", f"the clone VirtualDisk {name} failed: {disk.status.message}")
        if time.monotonic() > deadline:
            raise Refused("CloneTimeout", f"the clone VirtualDisk {name} was not attached within "
                                          f"{CLONE_TIMEOUT:.0f}s: {disk.status.message}")  # fmt: skip
        await _pause(stopped)


async def _pause(stopped: asyncio.Event) -> None:
    if stopped.is_set():
        raise asyncio.CancelledError
    try:
        await asyncio.wait_for(stopped.wait(), POLL_SECONDS)
    except TimeoutError:
        return
    raise asyncio.CancelledError


def _task(
    action: Verification, spec: DiskVerificationSpec, clone: VirtualDisk, hints: tuple[str | None, str | None]
) -> NodeTask:
    old = action.status.node_task
    if old is not None and old.id.startswith(action.uid):
        return old
    context = PublishContext.from_status(clone.status).to_dict()
    request = VerifyRequest(context=context, fs_type=hints[0], volume_mode=hints[1], check=spec.check)
    return NodeTask(id=f"{action.uid}-1", node=spec.verifier_node, type=VERIFY_TASK,
                    params=request.to_params(), timeout_seconds=spec.timeout_seconds,
                    issued_at=now())  # fmt: skip


async def _report(task: NodeTask, live: LiveReport, stopped: asyncio.Event) -> NodeReport:
    """Wait for the node's final report (bounded: picked up, then the task's own limit)."""
    started = time.monotonic()
    picked = False
    while True:
        raw = live()
        report = NodeReport.from_dict(raw, "status.nodeReport") if raw else None
        if report is not None and report.id == task.id:
            if report.answers(task):
                return report
            picked = True
        waited = time.monotonic() - started
        if not picked and waited > PICKUP_TIMEOUT:
            raise Refused("NodeDidNotAnswer", f"the node plugin of {task.node} did not take the task within "
                          f"{PICKUP_TIMEOUT:.0f}s: is it running there with --node-name {task.node} and a "
                          "Kubernetes API it can reach?")  # fmt: skip
        if waited > task.timeout_seconds + PICKUP_TIMEOUT:
            raise Refused(
                "NodeTimeout", f"the node {task.node} did not finish within {task.timeout_seconds}s"
            )
        await _pause(stopped)


async def _delete_clone(svc: Services, action: Verification, stopped: asyncio.Event) -> None:
    """Delete the clone and wait until its teardown is done (bounded; Unavailable after it)."""
    name = action.clone_name
    try:
        await svc.kube.delete_object(VIRTUAL_DISK_PLURAL, name)
    except NotFound:
        return
    deadline = time.monotonic() + GONE_TIMEOUT
    while True:
        try:
            disk = VirtualDisk.from_dict(await svc.kube.get(VIRTUAL_DISK_PLURAL, name))
        except NotFound:
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"the clone VirtualDisk {name} is not gone yet: {disk.status.message}")
        await _pause(stopped)


async def _mark_snapshot(svc: Services, action: Verification, outcome: VerifyOutcome, events: Events) -> None:
    """The outcome on the DiskSnapshot: condition Verified and status.lastVerification."""
    assert action.spec is not None
    try:
        raw = await svc.kube.get(DISK_SNAPSHOT_PLURAL, action.spec.snapshot)
    except NotFound:
        return
    snap = DiskSnapshot.from_dict(raw)
    before = snap.status.to_dict()
    passed = outcome.result.value == "Passed"
    by = f"DiskVerification {action.name}"
    words = outcome.summary.splitlines()[-1] if outcome.summary else ""
    snap.status.set_condition(VERIFIED, passed, outcome.result.value,
                              f"{by}: {outcome.reason}: {words}"[:512], snap.metadata.generation)  # fmt: skip
    snap.status.last_verification = VerificationRecord(
        name=action.name, result=outcome.result.value, time=action.status.completion_time or now(),
        duration_seconds=outcome.duration_seconds, checker=outcome.checker,
    )  # fmt: skip
    patch = merge_patch(before, snap.status.to_dict())
    if patch:
        await svc.kube.patch_status(DISK_SNAPSHOT_PLURAL, snap.name, patch)
    said = f"({outcome.checker or outcome.reason}) in {outcome.duration_seconds:.1f}s"
    reason = "Verified" if passed else "VerificationFailed"
    events(reason, f"DiskSnapshot {snap.name}: {outcome.result.value} {said}", warning=not passed)


def _outcome_of(report: NodeReport) -> VerifyOutcome:
    if report.error:
        raise Refused("NodeError", f"the node {report.node} could not check the clone: {report.error}")
    return VerifyOutcome.from_result(report.result)


async def _verify(
    svc: Services, action: Verification, live: LiveReport, stopped: asyncio.Event
) -> VerifyOutcome:
    """Clone, attach, hand the check to the node, and read its outcome (the clone stays)."""
    spec = action.spec
    assert spec is not None
    status = action.status
    if status.result is not None and status.node_task is not None:  # checked before a restart
        return VerifyOutcome(result=status.result, reason=status.result.value, summary=status.summary or "",
                             checker=status.checker, filesystem=status.filesystem,
                             duration_seconds=status.duration_seconds or 0.0)  # fmt: skip
    snap = await _snapshot(svc, spec)
    while not snap.ready:
        if snap.status.phase is SnapshotPhase.FAILED:
            raise Refused("SnapshotFailed", f"spec.snapshot {snap.name} failed: {snap.status.message}")
        action.record(VerificationPhase.PENDING, "SnapshotNotReady", f"waiting for DiskSnapshot {snap.name}")
        await action.save(svc)
        await _pause(stopped)
        snap = await _snapshot(svc, spec)
    try:
        await svc.kube.node(spec.verifier_node)
    except NotFound:
        raise Refused("NodeNotFound", f"spec.verifierNode {spec.verifier_node}: no such Node") from None
    hints = await _source_hints(svc, snap)
    status.clone_disk = action.clone_name
    action.record(VerificationPhase.CLONING, "Cloning", f"cloning DiskSnapshot {snap.name} into VirtualDisk "
                  f"{action.clone_name} on node {spec.verifier_node}")  # fmt: skip
    await _step(svc, action, "cloning")
    await _clone(svc, action, snap, spec.verifier_node)
    clone = await _attached(svc, action.clone_name, stopped)
    task = _task(action, spec, clone, hints)
    status.clone_naa = clone.status.lun.naa if clone.status.lun else None
    status.node_task = task
    action.record(VerificationPhase.CHECKING, "Checking", f"node {spec.verifier_node} checks the clone "
                  f"({status.clone_naa})")  # fmt: skip
    await svc.kube.patch_labels(
        DISK_VERIFICATION_PLURAL, action.name, {NODE_TASK_LABEL: node_task_label(task.node)}
    )
    await _step(svc, action, "checking")
    return _outcome_of(await _report(task, live, stopped))


async def run(
    svc: Services, action: Verification, live: LiveReport, stopped: asyncio.Event, events: Events
) -> None:
    """The whole verification, once; a done action is left as it is. Transient errors are
    raised (the caller runs it again); Refused ends it as Failed, the clone deleted first."""
    status = action.status
    if status.done:
        return
    if action.spec is None:
        raise action.spec_error or InvalidArgument("spec is missing")
    if status.start_time is None:
        status.start_time = now()
    cleaning = status.condition(ConditionType.READY)
    if status.phase is VerificationPhase.CLEANING and status.result is None and cleaning is not None:
        await _finish_failed(svc, action, Refused(cleaning.reason, status.summary or ""), stopped, events)
        return  # it was failing (Refused) when the operator stopped: the clone's deletion resumes
    try:
        outcome = await _verify(svc, action, live, stopped)
    except Refused as exc:
        await _finish_failed(svc, action, exc, stopped, events)
        return
    status.result, status.summary, status.checker = outcome.result, outcome.summary, outcome.checker
    status.filesystem, status.duration_seconds = outcome.filesystem, outcome.duration_seconds
    action.record(VerificationPhase.CLEANING, "Cleaning", f"{outcome.result.value}; deleting the clone "
                  f"{action.clone_name}")  # fmt: skip
    await _step(svc, action, "checked")
    await _delete_clone(svc, action, stopped)
    await svc.kube.patch_labels(DISK_VERIFICATION_PLURAL, action.name, {NODE_TASK_LABEL: None})
    status.completion_time = status.completion_time or now()
    await _mark_snapshot(svc, action, outcome, events)  # first: saving Completed ends this run
    action.record(VerificationPhase.COMPLETED, outcome.result.value, outcome.summary.splitlines()[-1]
                  if outcome.summary else outcome.result.value)  # fmt: skip
    await action.save(svc)


async def _finish_failed(
    svc: Services, action: Verification, exc: LunbridgeError, stopped: asyncio.Event, events: Events
) -> None:
    reason = getattr(exc, "reason", "Error")
    action.status.summary = str(exc)
    action.record(VerificationPhase.CLEANING, reason, f"{exc}; deleting the clone {action.clone_name}")
    await action.save(svc)
    await _delete_clone(svc, action, stopped)
    await svc.kube.patch_labels(DISK_VERIFICATION_PLURAL, action.name, {NODE_TASK_LABEL: None})
    action.status.completion_time = now()
    events(reason, f"could not verify: {exc}", warning=True)
    action.record(VerificationPhase.FAILED, reason, str(exc))
    await action.save(svc)  # the last step: kopf stops the daemon once the phase is done
