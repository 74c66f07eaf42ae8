"""The operator killed with SIGKILL right after a step was recorded (its fault injection,
LUNBRIDGE_CRASH_AFTER_STEP=VirtualDisk:<step>), then started again without it: the disk
converges, and there is still exactly one LUN, one map, one LU and one RDM for it; deleted
after that, nothing is left. The same for a crash in the middle of a deletion.

These tests run their own operator (not the module-wide one), since they kill it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator import expect, observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab import operator as operator_lab
from tests.lab import procs
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl

CRASH = "LUNBRIDGE_CRASH_AFTER_STEP"
HANDLED = "kopf.zalando.org/last-handled-configuration"
# the phase status shows once each step is recorded (reconcile/virtualdisk.py `save`)
PHASE_AFTER = {"provision": "Provisioning", "map": "Mapping", "rescan": "Attaching", "attach": "Ready"}


@dataclass
class Operator:
    """The operator of one test: started, killed by its own fault injection, started again.

    Every start is the same pod's container restarted (kopf's peering identity POD_ID is the
    pod name): the new process takes over the peering entry the killed one left. A process
    of another identity would pause until that entry's lease ran out (up to 60 s)."""

    lab: LabState
    pod: str = field(default_factory=lambda: f"lunbridge-operator-{uuid.uuid4().hex[:6]}")

    def start(self, crash_after: str | None = None) -> None:
        """Start it (to kill itself after step `crash_after`)."""
        env = {"POD_ID": self.pod, **({CRASH: f"VirtualDisk:{crash_after}"} if crash_after else {})}
        operator_lab.start(self.lab, extra_env=env)

    def wait_dead(self, timeout: float = 60) -> None:
        lab_dir = Path(self.lab.lab_dir)
        observe.eventually(
            lambda: procs.read_pid(lab_dir, operator_lab.NAME) is None, timeout, "the operator killed itself"
        )
        log = procs.log_file(lab_dir, operator_lab.NAME).read_text(errors="replace")
        assert "Traceback" not in log[-3000:], log[-3000:]  # it died of SIGKILL, not of an error

    def stop(self) -> None:
        operator_lab.stop(self.lab)


@pytest.fixture
def own_operator(lab: LabState) -> Iterator[Operator]:
    made = Operator(lab)
    yield made
    made.stop()


def handled(disk: dict[str, Any] | None) -> bool:
    """kopf marks a change handled (this annotation) only once its handler returned, and the
    killed operator never returned: so only the restarted one can have marked it."""
    return disk is not None and HANDLED in disk["metadata"].get("annotations", {})


def one_lun_more(lab: LabState, before: set[str], disk: dict[str, Any]) -> None:
    """The backend holds exactly one LUN more than before the test: this disk's."""
    name = disk["status"]["lun"]["name"]
    assert set(observe.backend_state(lab)["luns"]) - before == {name}
    assert {f.removesuffix(".img") for f in observe.pool_files(lab)} - before == {name}


@pytest.mark.parametrize("step", list(PHASE_AFTER))
def test_killed_after_a_step_the_restarted_operator_converges_without_duplicates(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    lab_vms: list[LabVm],
    own_operator: Operator,
    disks: Disks,
    step: str,
) -> None:
    vm = next(v for v in lab_vms if v.host.cluster)
    before = set(observe.backend_state(lab)["luns"])
    own_operator.start(crash_after=step)
    name = disks.make(vm.node)
    own_operator.wait_dead()
    at_crash = observe.get(lab, "vdisk", name)
    assert at_crash is not None
    assert at_crash["status"]["phase"] == PHASE_AFTER[step]

    restarted = time.monotonic()
    own_operator.start()
    observe.eventually(lambda: handled(observe.get(lab, "vdisk", name)), 120, "the restart handling it")
    disk = observe.wait_ready(lab, name)
    print(f"Ready {time.monotonic() - restarted:.1f}s after the restart")
    one_lun_more(lab, before, disk)
    expect.exactly_one(lab, si, disk, [v.name for v in lab_vms])

    assert kubectl(lab, "delete", "vdisk", name, "--timeout=60s").returncode == 0
    hosts = [h.name for h in vcsim.inventory.hosts]
    expect.nothing_left(lab, si, [disk["status"]["lun"]], [v.name for v in lab_vms], hosts)


@pytest.mark.parametrize("step", ["detach", "unmap"])
def test_killed_while_deleting_the_restarted_operator_finishes_the_deletion(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    lab_vms: list[LabVm],
    own_operator: Operator,
    disks: Disks,
    step: str,
) -> None:
    vm = next(v for v in lab_vms if v.host.cluster)
    own_operator.start()
    disk = observe.wait_ready(lab, disks.make(vm.node))
    name, lun = disk["metadata"]["name"], disk["status"]["lun"]
    own_operator.stop()

    own_operator.start(crash_after=step)
    assert kubectl(lab, "delete", "vdisk", name, "--wait=false").returncode == 0
    own_operator.wait_dead()
    at_crash = observe.get(lab, "vdisk", name)
    assert at_crash is not None  # the finalizer holds it
    assert at_crash["status"]["phase"] == "Deleting"
    assert "attachment" not in at_crash["status"]
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(lun["naa"])] == []

    restarted = time.monotonic()
    own_operator.start()
    observe.wait_gone(lab, "vdisk", name, timeout=120)
    print(f"deleted {time.monotonic() - restarted:.1f}s after the restart")
    hosts = [h.name for h in vcsim.inventory.hosts]
    expect.nothing_left(lab, si, [lun], [v.name for v in lab_vms], hosts)
