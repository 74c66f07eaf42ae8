"""Issue 19 on the real peers: a link of a disk's chain broken by hand behind lunbridge's back
shows up within a re-check interval as the VirtualDisk's `Healthy` condition False with the
link as its reason and a Warning Event of it; a link lunbridge can repair is repaired
(`Repaired`, an Event) and the map or RDM is there again on tgtd or in vCenter; a LUN deleted
on the storage server is not replaced by an empty one: the disk says `LunMissing` and stays
so, and deleting the VirtualDisk still works."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.hypervisor.vcenter import WaitForTask, find, rdm_disks, vim
from tests.integration.operator import observe
from tests.integration.operator.conftest import RESYNC, Disks, LabVm
from tests.lab.lab import LabState

pytestmark = pytest.mark.usefixtures("operator", "quick_recheck")
WITHIN = 4 * RESYNC + 15  # a re-check interval, the listings' age, a busy machine


def reasons(lab: LabState, disk: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, reason) of the disk's Events, oldest first."""

    def when(event: dict[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event["metadata"]["creationTimestamp"])

    found = sorted(observe.events(lab, disk), key=when)
    return [(e.get("type", ""), e["reason"]) for e in found]


def repaired(lab: LabState, name: str, link: str) -> dict[str, Any]:
    """The disk once Healthy says Repaired after `link` broke, with both Events posted."""

    def done() -> dict[str, Any] | None:
        disk = observe.get(lab, "vdisk", name) or {}
        healthy = observe.condition(disk, "Healthy")
        if healthy.get("status") != "True" or healthy.get("reason") != "Repaired":
            return None
        said = reasons(lab, disk)
        return disk if ("Warning", link) in said and ("Normal", "Repaired") in said else None

    return observe.eventually(done, WITHIN, f"VirtualDisk {name} repaired after {link}", every=0.5)


@pytest.mark.timeout(300)
def test_a_map_removed_on_the_storage_server_is_named_and_repaired(
    lab: LabState, disks: Disks, lab_vms: list[LabVm]
) -> None:
    name = disks.make(lab_vms[0].node)
    ready = observe.wait_ready(lab, name)
    assert observe.condition(ready, "Healthy")["reason"] == "Verified"
    lun, igroup = ready["status"]["lun"]["name"], ready["status"]["initiatorGroup"]

    observe.on_backend(lab, lambda backend: backend.unmap_lun(lun, igroup))
    assert not [m for m in observe.backend_state(lab)["maps"] if m["lun"] == lun]

    disk = repaired(lab, name, "MapMissing")
    assert "mapped to no igroup" in observe.condition(disk, "Healthy")["message"]
    assert [m["igroup"] for m in observe.backend_state(lab)["maps"] if m["lun"] == lun] == [igroup]
    assert observe.is_ready(disk)


@pytest.mark.timeout(300)
def test_an_rdm_removed_in_vcenter_is_named_and_repaired(
    lab: LabState, si: Any, disks: Disks, lab_vms: list[LabVm]
) -> None:
    vm = lab_vms[1]
    name = disks.make(vm.node)
    naa = observe.wait_ready(lab, name)["status"]["lun"]["naa"]
    obj = find(si, vim.VirtualMachine, vm.name)
    [rdm] = [d for d in rdm_disks(obj) if d.backing.deviceName.endswith(naa)]

    remove = vim.vm.device.VirtualDeviceSpec(operation="remove", device=rdm)  # "Remove from virtual machine"
    WaitForTask(obj.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[remove])))

    disk = repaired(lab, name, "RdmMissing")
    assert naa in observe.condition(disk, "Healthy")["message"]
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa)]
    assert observe.is_ready(disk)


@pytest.mark.timeout(300)
def test_a_lun_deleted_on_the_storage_server_is_named_and_not_replaced(lab: LabState, disks: Disks) -> None:
    name = disks.make()  # unattached: nothing maps it, so the backend deletes it
    ready = observe.wait_ready(lab, name)
    lun, naa = ready["status"]["lun"]["name"], ready["status"]["lun"]["naa"]

    observe.delete_lun(lab, lun)

    def said() -> dict[str, Any] | None:
        disk = observe.get(lab, "vdisk", name) or {}
        healthy = observe.condition(disk, "Healthy")
        ready = observe.condition(disk, "Ready")
        return disk if healthy.get("reason") == "LunMissing" and ready.get("status") == "False" else None

    disk = observe.eventually(said, WITHIN, f"VirtualDisk {name} LunMissing", every=0.5)
    healthy = observe.condition(disk, "Healthy")
    assert healthy["status"] == "False"
    assert naa in healthy["message"]
    assert "does not put an empty LUN in its place" in observe.condition(disk, "Ready")["message"]
    assert ("Warning", "LunMissing") in reasons(lab, disk)
    assert lun not in observe.backend_state(lab)["luns"]  # no empty LUN made in its place
    assert f"{lun}.img" not in observe.pool_files(lab)
    time.sleep(2 * RESYNC)  # more re-checks: still so, told once
    assert lun not in observe.backend_state(lab)["luns"]
    assert [r for _, r in reasons(lab, disk)].count("LunMissing") == 1
