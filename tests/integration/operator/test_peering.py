"""Two operator replicas never work on the same object: they meet in the ClusterKopfPeering
and the one with the lower priority pauses while the other runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab import operator as operator_lab
from tests.lab import procs
from tests.lab.lab import LabState

REPLICAS = ("operator-replica-a", "operator-replica-b")


@pytest.fixture(scope="module")
def replicas(lab: LabState) -> Iterator[tuple[str, ...]]:
    for name in REPLICAS:
        operator_lab.start(lab, name=name, extra_env={"POD_ID": name, "LUNBRIDGE_PEERING": "lunbridge"})
    yield REPLICAS
    for name in REPLICAS:
        operator_lab.stop(lab, name=name)


def _log(lab: LabState, name: str) -> str:
    return procs.log_file(Path(lab.lab_dir), name).read_text(errors="replace")


def test_only_one_replica_reconciles(lab: LabState, replicas: tuple[str, ...], disks: Disks,
                                     lab_vms: list[LabVm]) -> None:  # fmt: skip
    paused = observe.eventually(
        lambda: [n for n in replicas if "Pausing operations in favour of" in _log(lab, n)] or None,
        60,
        "one replica pausing in favour of the other",
    )
    assert len(paused) == 1
    working = next(n for n in replicas if n not in paused)
    name = disks.make(node=lab_vms[0].node)
    observe.wait_ready(lab, name)
    assert "Handler 'reconcile_virtual_disk' succeeded" in _log(lab, working)
    assert "Handler 'reconcile_virtual_disk'" not in _log(lab, paused[0])
