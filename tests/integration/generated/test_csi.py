"""Generated malformed CSI requests against the controller service (running against the lab)
and a node service on this machine that reaches no disk: never INTERNAL or UNKNOWN, never OK,
a refusal (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION) names the bad
field, and nothing is touched first (no VirtualDisk made; on the node no command run, no state
written, nothing removed). Every example runs, and what went wrong is collected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given

from tests.integration.generated.csi_requests import Call, controller_calls, node_calls
from tests.integration.generated.strategies import generated
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.peers

EXAMPLES = {"controller": 100, "node": 150}
CALL_TIMEOUT = 10.0  # a request that is not refused at once waits for the operator: cut it short
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
NAMING = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}


class Findings:
    def __init__(self) -> None:
        self.problems: dict[str, str] = {}  # one per kind of call and fault: the first input
        self.codes: dict[str, int] = {}

    def add(self, key: str, call: Call, text: str) -> None:
        self.problems.setdefault(key, f"{text}\n    input: {call.describe()}")

    def answer(self, stub: Any, call: Call) -> tuple[grpc.StatusCode, str]:
        try:
            getattr(stub, call.method)(call.request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        else:
            code, details = grpc.StatusCode.OK, ""
        self.codes[code.name] = self.codes.get(code.name, 0) + 1
        what = "+".join(sorted(b.what for b in call.bad))
        if code in NEVER:
            self.add(f"{call.method} {code.name} {what}", call, f"{code.name}: {details}")
        elif code is grpc.StatusCode.OK and not call.ok_allowed:
            self.add(f"{call.method} OK {what}", call, "accepted (OK), not refused")
        elif code in NAMING and not call.names_a_bad_field(details):
            self.add(f"{call.method} unnamed {what}", call, f"{code.name} does not name the field: {details}")
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
            self.add(f"{call.method} waited {what}", call, f"not refused at once: {details}")
        return code, details

    def report(self, who: str) -> None:
        print(f"{who}: {sum(self.codes.values())} calls: {json.dumps(self.codes, sort_keys=True)}")
        assert not self.problems, f"{len(self.problems)} faults:\n" + "\n".join(
            f"{key}: {text}" for key, text in sorted(self.problems.items())
        )


def _disks(lab: LabState) -> set[str]:
    return set(kubectl(lab, "get", "vdisk", "-o", "name").stdout.split())


def test_generated_controller_requests(lab: LabState, controller: Any) -> None:
    found = Findings()
    before = _disks(lab)

    @given(controller_calls())
    @generated(EXAMPLES["controller"])
    def example(call: Call) -> None:
        found.answer(controller, call)
        made = _disks(lab) - before
        if made:
            found.add(f"{call.method} made a disk", call, f"made {sorted(made)}")
            for name in made:
                kubectl(lab, "delete", name, "--wait=true", "--timeout=60s")

    example()
    found.report("controller")


def test_generated_node_requests(node: Any, node_scratch: Path) -> None:
    found = Findings()
    commands, state = node_scratch / "commands.jsonl", node_scratch / "state"
    bait = node_scratch / "cwd" / "relative" / "path"

    @given(node_calls(str(node_scratch / "paths")))
    @generated(EXAMPLES["node"])
    def example(call: Call) -> None:
        found.answer(node, call)
        ran = commands.read_text() if commands.exists() else ""
        if ran:
            found.add(f"{call.method} ran commands", call, f"ran {ran.strip()}")
            commands.unlink()
        written = sorted(p.name for p in state.glob("*")) if state.exists() else []
        if written:
            found.add(f"{call.method} wrote state", call, f"wrote {written}")
            for path in state.glob("*"):
                path.unlink()
        if not bait.exists():
            found.add(f"{call.method} removed a file", call, f"removed {bait} (the service's relative/path)")
            bait.parent.mkdir(parents=True, exist_ok=True)
            bait.write_text("bait")

    example()
    found.report("node")
