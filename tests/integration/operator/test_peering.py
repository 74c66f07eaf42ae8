"""Two operator replicas never work on the same object: they meet in the ClusterKopfPeering
and the one with the lower priority stays frozen while the other runs."""

from __future__ import annotations

import time
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
    # the replicas meet in the peering object within a keep-alive or two; whichever has the
    # lower priority is frozen (from its start, or it logs that it pauses when the other comes)
    time.sleep(5)
    names = [disks.make(node=vm.node) for vm in lab_vms[:3]]
    for name in names:
        observe.wait_ready(lab, name)

    def all_handled() -> dict[str, int] | None:
        """The replicas' counts of reconciles logged as succeeded, once one has logged all."""
        counts = {n: _log(lab, n).count("Handler 'reconcile_virtual_disk' succeeded") for n in replicas}
        return counts if max(counts.values()) >= len(names) else None

    # a disk's Ready may reach the API server a moment before its handler logs that it succeeded
    counts = observe.eventually(all_handled, 30, f"one replica logging {len(names)} reconciles succeeded")
    assert min(counts.values()) == 0, counts
