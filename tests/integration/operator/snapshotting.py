"""DiskSnapshots of one test, as the snapshot and restore tests make and clean them up; the
storage snapshots tgtd holds; the data a snapshot test writes after the cut."""

from __future__ import annotations

import json
import uuid
from typing import Any

from lunbridge.api import API_VERSION
from tests.integration.operator import observe
from tests.integration.operator.guestdisk import Staged, read_digest
from tests.lab import libvirt as libvirt_lab
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


def storage_snapshots(lab: LabState) -> dict[str, Any]:
    found: dict[str, Any] = observe.backend_state(lab).get("snapshots", {})
    return found


def write_again(guest: libvirt_lab.LibvirtGuest, staged: Staged) -> str:
    """Write the staged disk's file anew (other random data, fsynced); its new digest."""
    guest.run(f"dd if=/dev/urandom of={staged.mount}/data bs=64k count=32 conv=fsync 2>/dev/null",
              timeout=120, check=True)  # fmt: skip
    return read_digest(guest, staged.mount)
