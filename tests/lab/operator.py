"""Run `lunbridge-operator` against a lab, as a user would after `source .lab/env`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.lab import procs
from tests.lab.lab import LabState

NAME = "operator"


def start(state: LabState, name: str = NAME, extra_env: Mapping[str, str] | None = None,
          args: tuple[str, ...] = ()) -> int:  # fmt: skip
    """Start the operator with the lab's environment; wait until it logged in and started."""
    lab_dir = Path(state.lab_dir)
    # retries five times sooner than the default: tests wait for faults to be retried, users
    # keep the default pacing
    # the allocator the chart gives the operator (charts/lunbridge/templates/operator.yaml)
    chart = {"PYTHONMALLOC": "malloc"}
    env = {**state.env(), **chart, "LUNBRIDGE_METRICS_PORT": "0", "LUNBRIDGE_RETRY_SCALE": "0.2",
           **(extra_env or {})}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    log = procs.log_file(lab_dir, name)
    offset = log.stat().st_size if log.exists() else 0
    pid = procs.spawn(lab_dir, name, [sys.executable, "-m", "lunbridge_operator", *args], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")[offset:] if log.exists() else ""
        if "Activity 'started' succeeded" in text:
            return pid
        if procs.read_pid(lab_dir, name) is None:
            raise procs.LabError(f"lunbridge-operator exited while starting:\n{text[-2000:]}")
        time.sleep(0.2)
    raise procs.LabError(f"lunbridge-operator did not start within 60s; see {log}")


def stop(state: LabState, name: str = NAME) -> None:
    procs.stop(Path(state.lab_dir), name, timeout=15)
