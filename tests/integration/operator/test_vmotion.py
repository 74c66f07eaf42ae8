"""A VM with a lunbridge disk that moves to another host (vMotion, DRS, HA; on the lab, the
simulator's RelocateVM_Task, which refuses a VM whose RDM names a LUN the destination does not
see, as vCenter does). At cluster scope every host of the cluster sees the LUN, so the VM moves,
and the next re-check records the new host while the disk stays Ready and attached: the same
RDM, no detach. At host scope only the VM's host sees the LUN, so the move is refused and the
disk stays as it was (what host scope gives up, README)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.hypervisor.vcenter import WaitForTask, find, vim
from tests.integration.operator import observe
from tests.integration.operator.conftest import RESYNC, Disks, LabVm
from tests.lab.lab import LabState

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def mover(si: Any, lab_vms: list[LabVm]) -> Iterator[tuple[LabVm, str]]:
    """A VM on a clustered host (the third of its host: other tests use the first two), and
    another host of its cluster; the VM is back on its own host after the test."""
    vm = next(v for v in lab_vms if v.host.cluster is not None and v.name.endswith("_VM2"))
    other = next(v.host for v in lab_vms if v.host.cluster == vm.host.cluster and v.host.name != vm.host.name)
    try:
        yield vm, other.name
    finally:
        obj = find(si, vim.VirtualMachine, vm.name)
        if obj.runtime.host.name != vm.host.name:
            relocate(si, obj, vm.host.name)


def relocate(si: Any, vm: Any, host_name: str) -> None:
    WaitForTask(vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=find(si, vim.HostSystem, host_name))))


def disk_named(disks: Disks, name: str) -> dict[str, Any]:
    return next(d for d in disks.mine() if d["metadata"]["name"] == name)


@pytest.mark.timeout(300)
def test_a_cluster_disks_vm_moves_and_the_disk_follows_it_without_a_detach(
    lab: LabState, si: Any, disks: Disks, mover: tuple[LabVm, str], quick_recheck: None
) -> None:
    vm, other = mover
    name = disks.make(vm.node, scope="cluster")
    ready = observe.wait_cluster_ready(lab, name, timeout=120)
    assert ready["status"]["attachment"]["host"] == vm.host.name
    naa = ready["status"]["lun"]["naa"]
    before = [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa)]
    assert len(before) == 1

    relocate(si, find(si, vim.VirtualMachine, vm.name), other)

    def moved() -> dict[str, Any] | None:
        found = disk_named(disks, name)
        return found if found["status"]["attachment"]["host"] == other else None

    after = observe.eventually(moved, 4 * RESYNC + 10, f"status naming host {other}", every=0.5)
    assert observe.is_ready(after)
    assert observe.condition(after, "Attached")["reason"] == "RdmAttached"
    assert observe.condition(after, "ClusterReady")["status"] == "True"
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa)] == before  # the same RDM
    assert "Detached" not in {e["reason"] for e in observe.events(lab, after)}


@pytest.mark.timeout(300)
def test_a_host_scope_disks_vm_cannot_move_to_a_host_that_does_not_see_the_lun(
    lab: LabState, si: Any, disks: Disks, mover: tuple[LabVm, str]
) -> None:
    vm, other = mover
    name = disks.make(vm.node, scope="host")
    ready = observe.wait_cluster_ready(lab, name, timeout=120)
    assert observe.is_ready(ready)
    pinned = observe.condition(ready, "ClusterReady")
    assert (pinned["status"], pinned["reason"]) == ("False", "NotMovable")  # told before the move
    naa = ready["status"]["lun"]["naa"]
    assert naa not in observe.host_luns(si, other)
    obj = find(si, vim.VirtualMachine, vm.name)
    with pytest.raises(vim.fault.RDMPointsToInaccessibleDisk):
        relocate(si, obj, other)
    assert obj.runtime.host.name == vm.host.name
    assert observe.is_ready(disk_named(disks, name))
