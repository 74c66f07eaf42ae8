"""DiskVerification rules on the fakes, the node's answer played by the test: a clone of the
snapshot is attached to the verifier's VM and given to that node as a task; its result lands on
the verification and on the snapshot (Verified); the clone is deleted whatever the outcome; a
missing snapshot or Node, and a node that reports an error, end Failed with the reason and
leave no clone; a verification resumed after the result was recorded does not clone again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lunbridge.api import API_VERSION, DISK_SNAPSHOT_PLURAL, DISK_VERIFICATION_PLURAL, VERIFICATION_LABEL
from lunbridge.models import DiskSnapshot, NodeTask, VerificationPhase
from lunbridge.models.diskverification import VERIFY_TASK
from lunbridge_operator.reconcile import diskverification
from lunbridge_operator.reconcile.diskverification import Verification
from tests.fakes import Lab

NODE = "vm1-node"


async def _lab_with_snapshot() -> Lab:
    lab = Lab.build()
    lab.add_node(NODE, "esx-1")
    await lab.create_disk("d1")
    body = {"apiVersion": API_VERSION, "kind": "DiskSnapshot", "metadata": {"name": "s1"},
            "spec": {"source": {"virtualDisk": "d1"}}}  # fmt: skip
    await lab.kube.create(DISK_SNAPSHOT_PLURAL, body)
    return lab


async def _verification(lab: Lab, snapshot: str = "s1", node: str = NODE) -> Verification:
    body = {"apiVersion": API_VERSION, "kind": "DiskVerification", "metadata": {"name": "v1"},
            "spec": {"snapshot": snapshot, "verifierNode": node}}  # fmt: skip
    made = await lab.kube.create(DISK_VERIFICATION_PLURAL, body)
    meta = made["metadata"]
    return Verification.from_object(meta["name"], meta["uid"], 1, made["spec"], made.get("status"))


class Node:
    """The verifier node's plugin, as the test plays it: answers the task it is given."""

    def __init__(self, lab: Lab, answer: dict[str, Any]) -> None:
        self.lab, self.answer = lab, answer
        self.tasks: list[NodeTask] = []
        self.clone_attached: list[bool] = []

    def __call__(self) -> dict[str, Any] | None:
        status = self.lab.kube.read(DISK_VERIFICATION_PLURAL, "v1").get("status") or {}
        if not status.get("nodeTask"):
            return None
        task = NodeTask.from_dict(status["nodeTask"])
        if not self.tasks:
            self.tasks.append(task)
            clones = [
                d
                for d in self.lab.kube.disks.values()
                if VERIFICATION_LABEL in d["metadata"].get("labels", {})
            ]
            self.clone_attached.append(bool(clones) and clones[0]["status"].get("attachment") is not None)
        return {"id": task.id, "node": task.node, "state": "Done", **self.answer}


def _events() -> Any:
    said: list[str] = []

    def post(reason: str, message: str, *, warning: bool = False) -> None:
        said.append(reason)

    post.said = said  # type: ignore[attr-defined]
    return post


def _clones(lab: Lab) -> list[str]:
    return [n for n, d in lab.kube.disks.items() if VERIFICATION_LABEL in d["metadata"].get("labels", {})]


async def test_a_passed_check_is_recorded_on_both_objects_and_the_clone_is_deleted() -> None:
    lab = await _lab_with_snapshot()
    action = await _verification(lab)
    result = {"result": "Passed", "reason": "Passed", "summary": "clean", "checker": "e2fsck -fn /dev/sdb",
              "filesystem": "ext4", "durationSeconds": "1.5"}  # fmt: skip
    node = Node(lab, {"result": result})
    await diskverification.run(lab.services, action, node, asyncio.Event(), _events())
    assert node.clone_attached == [True], "the node got its task before the clone was attached"
    task = node.tasks[0]
    assert (task.type, task.node) == (VERIFY_TASK, NODE)
    assert task.params["context.naa"].startswith("naa.")
    done = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["status"]
    assert (done["phase"], done["result"], done["checker"]) == ("Completed", "Passed", "e2fsck -fn /dev/sdb")
    assert done["durationSeconds"] == 1.5
    assert _clones(lab) == [], "the clone VirtualDisk is left"
    snap = DiskSnapshot.from_dict(lab.kube.read(DISK_SNAPSHOT_PLURAL, "s1"))
    verified = snap.status.condition("Verified")
    assert verified is not None
    assert (verified.status.value, verified.reason) == ("True", "Passed")
    assert snap.status.last_verification is not None
    assert snap.status.last_verification.name == "v1"
    labels = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["metadata"].get("labels") or {}
    assert "lunbridge.io/node-task" not in labels, "the node still sees the task"


async def test_a_damaged_snapshot_is_a_completed_verification_that_failed() -> None:
    lab = await _lab_with_snapshot()
    action = await _verification(lab)
    result = {"result": "Failed", "reason": "CheckFailed", "summary": "Inode 12 ref count is 5, should be 1."}
    await diskverification.run(
        lab.services, action, Node(lab, {"result": result}), asyncio.Event(), _events()
    )
    done = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["status"]
    assert (done["phase"], done["result"]) == ("Completed", "Failed")
    snap = DiskSnapshot.from_dict(lab.kube.read(DISK_SNAPSHOT_PLURAL, "s1"))
    verified = snap.status.condition("Verified")
    assert verified is not None
    assert (verified.status.value, verified.reason) == ("False", "Failed")
    assert _clones(lab) == []


async def test_a_node_error_fails_the_verification_and_deletes_the_clone() -> None:
    lab = await _lab_with_snapshot()
    action = await _verification(lab)
    node = Node(lab, {"error": "the disk at host2:0:0:1 (sdc) carries naa.6001, not naa.6002"})
    await diskverification.run(lab.services, action, node, asyncio.Event(), _events())
    done = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["status"]
    assert done["phase"] == VerificationPhase.FAILED.value
    ready = next(c for c in done["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NodeError"
    assert "carries naa.6001" in ready["message"]
    assert _clones(lab) == []
    snap = DiskSnapshot.from_dict(lab.kube.read(DISK_SNAPSHOT_PLURAL, "s1"))
    assert snap.status.condition("Verified") is None, "an error of lunbridge is no verdict on the snapshot"


async def test_a_missing_snapshot_or_node_fails_by_name_and_makes_nothing() -> None:
    for snapshot, node, reason in (("nope", NODE, "SnapshotNotFound"), ("s1", "ghost", "NodeNotFound")):
        lab = await _lab_with_snapshot()
        action = await _verification(lab, snapshot, node)
        await diskverification.run(lab.services, action, Node(lab, {}), asyncio.Event(), _events())
        done = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["status"]
        ready = next(c for c in done["conditions"] if c["type"] == "Ready")
        assert (done["phase"], ready["reason"]) == ("Failed", reason)
        assert _clones(lab) == []


async def test_a_verification_resumed_after_its_result_does_not_clone_again() -> None:
    lab = await _lab_with_snapshot()
    action = await _verification(lab)
    result = {"result": "Passed", "reason": "Passed", "summary": "clean"}
    await diskverification.run(
        lab.services, action, Node(lab, {"result": result}), asyncio.Event(), _events()
    )
    stored = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")
    stored["status"]["phase"] = "Cleaning"  # as if the operator died right after recording the result
    again = Verification.from_object("v1", stored["metadata"]["uid"], 1, stored["spec"], stored["status"])
    created_before = len([c for c in lab.kube.calls if c.method == "create"])
    await diskverification.run(lab.services, again, Node(lab, {}), asyncio.Event(), _events())
    assert len([c for c in lab.kube.calls if c.method == "create"]) == created_before, "it cloned again"
    assert lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["status"]["phase"] == "Completed"


async def test_a_node_that_never_takes_the_task_fails_it_by_name_and_the_clone_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(diskverification, "PICKUP_TIMEOUT", 0.2)
    monkeypatch.setattr(diskverification, "POLL_SECONDS", 0.05)
    lab = await _lab_with_snapshot()
    action = await _verification(lab)
    await diskverification.run(lab.services, action, lambda: None, asyncio.Event(), _events())
    done = lab.kube.read(DISK_VERIFICATION_PLURAL, "v1")["status"]
    ready = next(c for c in done["conditions"] if c["type"] == "Ready")
    assert (done["phase"], ready["reason"]) == ("Failed", "NodeDidNotAnswer")
    assert f"--node-name {NODE}" in ready["message"]
    assert _clones(lab) == []
