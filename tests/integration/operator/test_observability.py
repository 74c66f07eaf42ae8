"""What an operator's user watches: Prometheus metrics by step, and JSON logs with no secret."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab import operator as operator_lab
from tests.lab import procs
from tests.lab.lab import LabState

NAME = "operator-observed"


@pytest.fixture(scope="module")
def observed(lab: LabState) -> Iterator[int]:
    """An operator with metrics on and JSON logs (the module's only operator)."""
    port = procs.free_port()
    operator_lab.start(
        lab, name=NAME, extra_env={"LUNBRIDGE_METRICS_PORT": str(port), "LUNBRIDGE_LOG_FORMAT": "json"}
    )
    yield port
    operator_lab.stop(lab, name=NAME)


def test_metrics_count_steps_and_logs_are_json_without_the_password(
    lab: LabState, observed: int, disks: Disks, lab_vms: list[LabVm]
) -> None:
    node = lab_vms[0].node
    observe.wait_ready(lab, disks.make(node=node))
    with urllib.request.urlopen(f"http://127.0.0.1:{observed}/metrics", timeout=10) as response:
        text = response.read().decode()
    for step in ("provision", "mask", "rescan", "attach"):
        assert f'lunbridge_reconcile_steps_total{{kind="VirtualDisk",step="{step}"}}' in text
    assert 'lunbridge_reconcile_step_seconds_bucket{kind="VirtualDisk"' in text

    log = procs.log_file(Path(lab.lab_dir), NAME).read_text()
    assert lab.vsphere_password not in log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any("attached" in r.get("message", "") for r in records), "no JSON record of the attach"
