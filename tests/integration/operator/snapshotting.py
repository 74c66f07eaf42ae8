"""DiskSnapshots of one test, as the snapshot and restore tests make and clean them up."""

from __future__ import annotations

import json
import uuid
from typing import Any

from lunbridge.api import API_VERSION
from tests.integration.operator import observe
from tests.lab.lab import LabState, kubectl

TEST_LABEL = "lunbridge.io/test"


class Snapshots:
    """DiskSnapshots of one test, labelled like its disks; deleted (and waited for) after it."""

    def __init__(self, lab: LabState, test_id: str) -> None:
        self.lab, self.test_id = lab, test_id

    def make(self, source: dict[str, str], policy: str = "Delete") -> str:
        name = f"snap-{uuid.uuid4().hex[:10]}"
        body = {
            "apiVersion": API_VERSION,
            "kind": "DiskSnapshot",
            "metadata": {"name": name, "labels": {TEST_LABEL: self.test_id}},
            "spec": {"source": source, "deletionPolicy": policy},
        }
        observe.apply(self.lab, body)
        return name

    def get(self, name: str) -> dict[str, Any] | None:
        return observe.get(self.lab, "dsnap", name)

    def wait_ready(self, name: str, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            found = self.get(name)
            return found if found and (found.get("status") or {}).get("readyToUse") else None

        return observe.eventually(ready, timeout, f"DiskSnapshot {name} readyToUse")

    def mine(self) -> list[dict[str, Any]]:
        return observe.items(self.lab, "dsnap", "-l", f"{TEST_LABEL}={self.test_id}")

    def delete_all(self) -> None:
        kubectl(self.lab, "delete", "dsnap", "-l", f"{TEST_LABEL}={self.test_id}", "--wait=false")
        try:
            observe.eventually(lambda: not self.mine(), 120, f"DiskSnapshots of test {self.test_id} gone")
        except AssertionError:
            for snap in self.mine():
                patch = json.dumps({"metadata": {"finalizers": None}})
                kubectl(self.lab, "patch", "dsnap", snap["metadata"]["name"], "--type=merge", "-p", patch)
            raise


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return observe.condition(obj, "Ready")
