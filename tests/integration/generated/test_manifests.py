"""Generated VirtualDisk and InitiatorGroup manifests against the lab's API server and the real
operator: the API server refuses one naming the field, or it is stored and the operator brings
it to Ready True or False (a known reason; False for a fault of the spec names the field), never
logs a traceback and stays up; each example's object is deleted and waited for.

Every example runs to its end and what went wrong is collected, so one run lists every fault
(no shrinking: an example costs seconds)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from lunbridge.api import INITIATOR_GROUP_PLURAL, VIRTUAL_DISK_PLURAL
from lunbridge_operator.handlers.common import ERROR_TABLE
from tests.integration.generated.strategies import (
    TEST_LABEL,
    Case,
    generated,
    initiator_groups,
    virtual_disks,
)
from tests.lab import procs
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl, node_name

pytestmark = pytest.mark.peers

EXAMPLES = {"VirtualDisk": 25, "InitiatorGroup": 12}
SETTLE_SECONDS = 20.0  # how long the operator may take to write Ready for a generation
GONE_SECONDS = 60.0
KNOWN_REASONS = {reason for reason, _ in ERROR_TABLE.values()} | {
    "Error",
    "Ready",
    "Provisioned",
    "Reconciling",
    "DeleteBlocked",
    "InSync",
    "NoInitiators",
}
PLURALS = {"VirtualDisk": VIRTUAL_DISK_PLURAL, "InitiatorGroup": INITIATOR_GROUP_PLURAL}


def _get(lab: LabState, plural: str, name: str) -> dict[str, Any] | None:
    result = kubectl(lab, "get", plural, name, "-o", "json", "--ignore-not-found")
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None


def _ready(obj: dict[str, Any]) -> dict[str, Any] | None:
    generation = obj["metadata"].get("generation")
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("observedGeneration") == generation:
            if cond.get("status") == "False" and cond.get("reason") == "Reconciling":
                return None  # on its way
            return dict(cond)
    return None


class Run:
    """One test's examples: submits each, checks it, cleans up, and collects what went wrong."""

    def __init__(self, lab: LabState, log: Path, operator_pid: int) -> None:
        self.lab, self.log, self.operator_pid = lab, log, operator_pid
        self.problems: list[str] = []
        self.outcomes: dict[str, int] = {}
        self.log_offset = log.stat().st_size

    def problem(self, case: Case, text: str) -> None:
        self.problems.append(f"{text}\n    input: {case.describe()}")

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __call__(self, case: Case) -> None:
        plural = PLURALS[case.kind]
        created = kubectl(self.lab, "create", "-f", "-", "-o", "json", input_text=json.dumps(case.manifest))
        try:
            if created.returncode != 0:
                self.refused(case, created.stderr.strip())
            else:
                self.stored(case, plural, json.loads(created.stdout))
        finally:
            if created.returncode == 0:
                self.delete(case, plural, json.loads(created.stdout)["metadata"]["name"])
            self.operator_healthy(case)

    def refused(self, case: Case, message: str) -> None:
        self.count("refused by the API server")
        if not case.planted:
            self.problem(case, f"a valid manifest was refused: {message}")
        elif not case.names_a_planted_field(message):
            self.problem(case, f"the refusal does not name {sorted(case.planted)}: {message}")

    def stored(self, case: Case, plural: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        deadline = time.monotonic() + SETTLE_SECONDS
        ready = None
        while ready is None and time.monotonic() < deadline:
            time.sleep(0.3)
            now = _get(self.lab, plural, name)
            ready = _ready(now) if now else None
        if ready is None:
            self.count("stored, no Ready")
            status = (now or {}).get("status")
            self.problem(
                case, f"stored, but no Ready condition within {SETTLE_SECONDS:.0f}s (status {status})"
            )
            return
        self.count(f"stored, Ready {ready['status']} {ready.get('reason')}")
        if ready.get("status") not in ("True", "False"):
            self.problem(case, f"Ready is {ready.get('status')}: {ready}")
        if ready.get("reason") not in KNOWN_REASONS:
            self.problem(case, f"Ready reason {ready.get('reason')!r} is not one the operator knows: {ready}")
        if ready.get("status") == "False":
            message = str(ready.get("message", ""))
            if not case.planted:
                self.problem(case, f"a valid spec is not Ready: {ready.get('reason')}: {message}")
            elif not case.names_a_planted_field(message):
                self.problem(
                    case,
                    f"Ready False does not name {sorted(case.planted)}: {ready.get('reason')}: {message}",
                )

    def delete(self, case: Case, plural: str, name: str) -> None:
        if case.kind == "VirtualDisk":  # a retained LUN would outlive the test
            patch = json.dumps({"spec": {"reclaimPolicy": "Delete"}})
            kubectl(self.lab, "patch", plural, name, "--type=merge", "-p", patch)
        kubectl(self.lab, "delete", plural, name, "--wait=false", "--ignore-not-found")
        deadline = time.monotonic() + GONE_SECONDS
        while time.monotonic() < deadline:
            if _get(self.lab, plural, name) is None:
                return
            time.sleep(0.3)
        obj = _get(self.lab, plural, name) or {}
        self.problem(case, f"not deleted within {GONE_SECONDS:.0f}s (status {obj.get('status')})")
        kubectl(
            self.lab,
            "patch",
            plural,
            name,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"finalizers": None}}),
        )

    def operator_healthy(self, case: Case) -> None:
        text = self.log.read_text(errors="replace")[self.log_offset :]
        self.log_offset += len(text)
        if "Traceback (most recent call last)" in text:
            start = text.index("Traceback (most recent call last)")
            self.problem(
                case, f"the operator logged a traceback:\n{text[max(0, start - 300) : start + 1500]}"
            )
        if procs.read_pid(Path(self.lab.lab_dir), "operator-generated") != self.operator_pid:
            self.problem(case, "the operator is not running any more")

    def leftovers(self, plural: str, test_id: str) -> list[str]:
        result = kubectl(self.lab, "get", plural, "-l", f"{TEST_LABEL}={test_id}", "-o", "name")
        return result.stdout.split()

    def report(self, kind: str) -> None:
        print(f"{kind}: {sum(self.outcomes.values())} examples: {json.dumps(self.outcomes, sort_keys=True)}")
        assert not self.problems, f"{len(self.problems)} faults:\n" + "\n".join(self.problems)


def test_generated_virtual_disks(lab: LabState, operator: int, operator_log: Path) -> None:
    test_id = uuid.uuid4().hex[:10]
    run = Run(lab, operator_log, operator)

    @given(virtual_disks(test_id, missing_node="gen-no-such-node"))
    @generated(EXAMPLES["VirtualDisk"])
    def example(case: Case) -> None:
        run(case)

    example()
    assert not run.leftovers(VIRTUAL_DISK_PLURAL, test_id)
    run.report("VirtualDisk")


def test_generated_initiator_groups(
    lab: LabState, operator: int, operator_log: Path, vcsim: vcsim_lab.VcsimPeer
) -> None:
    test_id = uuid.uuid4().hex[:10]
    run = Run(lab, operator_log, operator)
    hosts = [h.name for h in vcsim.inventory.hosts]
    nodes = [node_name(vm.name) for vm in vcsim.inventory.vms]

    @given(initiator_groups(test_id, hosts, nodes, missing_node="gen-no-such-node"))
    @generated(EXAMPLES["InitiatorGroup"])
    def example(case: Case) -> None:
        run(case)

    example()
    assert not run.leftovers(INITIATOR_GROUP_PLURAL, test_id)
    run.report("InitiatorGroup")
