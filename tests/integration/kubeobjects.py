"""Reading the lab's API server the way a user would (`kubectl get`), and waiting for what it
shows: shared by the end-to-end packages (storageclass, installed)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.lab.lab import LabState, kubectl


def get(lab: LabState, *args: str) -> dict[str, Any] | None:
    """`kubectl get ARGS -o json` as a dict; None when the object does not exist."""
    done = kubectl(lab, "get", *args, "--ignore-not-found", "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def wait(
    what: str,
    check: Callable[[], Any],
    timeout: float = 240,
    explain: Callable[[], str] = str,
    every: float = 1.0,
) -> Any:
    """`check()`'s first truthy answer, polled every `every` seconds; after `timeout` seconds an
    AssertionError saying `what` was not seen, followed by `explain()` (logs, a report)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout:.0f}s\n{explain()}")
