"""A crash between any two steps (the operator killed right after a step wrote its status, as
LUNBRIDGE_CRASH_AFTER_STEP does on the lab) and a restart end where an uninterrupted run ends:
the same status, one LUN, one map, one RDM; or, for a delete, nothing left."""

from __future__ import annotations

from typing import Any

import pytest

from lunbridge.models import Phase
from tests.fakes import Lab, OperatorCrashed

KIND = "VirtualDisk"
STEPS = {
    "create": ("provision", "map", "record", "rescan", "attach", "cluster"),
    "unattached": ("provision", "ready"),
    "move": ("provision", "detach", "map", "record", "rescan", "attach"),
    "detach": ("provision", "detach", "ready"),
    "delete": ("detach", "unmap"),
}
CASES = [(flow, step) for flow, steps in STEPS.items() for step in steps]


async def run(lab: Lab, flow: str, crash_at: str | None = None) -> None:
    """Make the disk of `flow`, arming the crash for the flow's last change only."""
    if flow != "create" and flow != "unattached":
        await lab.create_disk("d1", node_name="node-a")

    def arm() -> None:
        if crash_at is not None:
            lab.operator.crash_after(KIND, crash_at)

    arm()
    if flow == "create":
        await lab.create_disk("d1", node_name="node-a")
    elif flow == "unattached":
        await lab.create_disk("d1")
    elif flow == "move":
        await lab.patch("d1", node_name="node-c")
    elif flow == "detach":
        await lab.patch("d1", node_name=None)
    else:
        await lab.delete("d1")


def status_of(lab: Lab) -> dict[str, Any] | None:
    """The disk's status without the times of the conditions."""
    stored = lab.kube.disks.get("d1")
    if stored is None:
        return None
    status = dict(stored["status"])
    status["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
    ]
    return status


@pytest.mark.parametrize(("flow", "step"), CASES)
async def test_a_restart_after_a_crash_at_any_step_converges(flow: str, step: str) -> None:
    reference = Lab.build()
    await run(reference, flow)
    lab = Lab.build()
    await run(lab, flow, crash_at=step)
    assert [str(crash) for crash in lab.operator.crashes] == [f"killed after {KIND}:{step}"]
    await lab.operator.restart()
    assert status_of(lab) == status_of(reference)
    assert lab.operator.failures == []
    storage, hypervisor = lab.storage, lab.hypervisor
    if flow == "delete":
        assert (storage.luns, storage.maps, hypervisor.all_rdms()) == ({}, [], [])
        return
    assert lab.disk("d1").status.phase is Phase.READY
    [lun] = storage.luns.values()
    attached = flow in ("create", "move")
    assert [m.lun for m in storage.maps] == ([lun.name] if attached else [])
    assert [rdm.naa for rdm in hypervisor.all_rdms()] == ([lun.naa] if attached else [])
    assert storage.snapshots == {}


async def test_a_crash_before_the_first_status_write_finds_the_lun_by_its_name() -> None:
    lab = Lab.build()
    lab.kube.fail_next("patch_status", OperatorCrashed("killed before the status said so"))
    await lab.create_disk("d1", node_name="node-a")
    assert lab.operator.crashes
    assert "status" not in lab.kube.disks["d1"]
    [lun] = lab.storage.luns.values()
    await lab.operator.restart()
    assert list(lab.storage.luns.values()) == [lun]
    assert lab.disk("d1").status.phase is Phase.READY
    assert [rdm.naa for rdm in lab.hypervisor.all_rdms()] == [lun.naa]
