"""The operator killed with SIGKILL right after a step was recorded (its fault injection,
LUNBRIDGE_CRASH_AFTER_STEP=VirtualDisk:<step>), then started again without it: the disk
converges, and there is still exactly one LUN, one map, one LU and one RDM for it; deleted
after that, nothing is left. The same for a crash in the middle of a deletion.

These tests run their own operator (not the module-wide one), since they kill it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.operator import expect, observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.integration.operator.crashing import Operator
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl

HANDLED = "kopf.zalando.org/last-handled-configuration"
# the phase status shows after each step (reconcile/virtualdisk.py `save`): none after the
# provision and the map, whose results a restart finds by name, so they write no status
PHASE_AFTER = {"provision": None, "map": None, "rescan": "Attaching", "attach": "Ready"}


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
    assert (at_crash.get("status") or {}).get("phase") == PHASE_AFTER[step]

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
