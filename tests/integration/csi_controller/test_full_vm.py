"""Issue 12, case 2, on the real peers: a ControllerPublishVolume to a node whose vcsim VM has no
SCSI unit left for lunbridge (plain disks fill its PVSCSI controller, and new ones up to
vSphere's four) answers RESOURCE_EXHAUSTED at once, clears spec.nodeName, and the operator
takes the map away; once the disks are removed the same publish attaches. The VM's layout also
checks the node plugin's count: the units that filling took are exactly what NodeGetInfo
answers for that layout (59: four controllers of 15 units, one the boot disk's)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from lunbridge.hypervisor.vsphere.slots import MAX_SCSI_CONTROLLERS, USABLE_UNITS
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.guest import scsi
from tests.integration.csi_controller.test_controller import (
    code_of,
    create_request,
    publish_request,
    pvc_name,
)
from tests.integration.hypervisor.vcenter import WaitForTask, find, vim
from tests.integration.operator import observe
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState
from tests.unit.csi.sysfs import pvscsi_guest

FAIL_FAST = 30.0  # seconds: far below the controller's 240 s attach bound


def units_by_controller(vm: Any) -> dict[int, set[int]]:
    """ParaVirtual controller key -> the units its devices hold, read from each device."""
    devices = vm.config.hardware.device
    held: dict[int, set[int]] = {
        d.key: set() for d in devices if isinstance(d, vim.vm.device.ParaVirtualSCSIController)
    }
    for device in devices:
        if device.controllerKey in held and device.unitNumber is not None:
            held[device.controllerKey].add(device.unitNumber)
    return held


def flat_disk(key: int, controller_key: int, unit: int) -> Any:
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", fileName="")
    disk = vim.vm.device.VirtualDisk(
        key=key, controllerKey=controller_key, unitNumber=unit, capacityInKB=1024, backing=backing
    )
    return vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)


@contextlib.contextmanager
def filled(si: Any, vm_name: str) -> Iterator[int]:
    """Take every unit lunbridge could use on the VM with plain disks (the free usable units of
    its ParaVirtual controllers, and new ParaVirtual controllers full of disks up to four SCSI
    controllers); yields how many disks that took. Afterwards they and the controllers go."""
    vm = find(si, vim.VirtualMachine, vm_name)
    before = {d.key for d in vm.config.hardware.device}
    buses = {
        d.busNumber for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualSCSIController)
    }
    places = list(units_by_controller(vm).items())
    changes = []
    for index, bus in enumerate(sorted(set(range(MAX_SCSI_CONTROLLERS)) - buses)):
        controller = vim.vm.device.ParaVirtualSCSIController(
            key=-200 - index, busNumber=bus, sharedBus="noSharing"
        )
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=controller))
        places.append((controller.key, set()))
    disks = [(key, unit) for key, held in places for unit in USABLE_UNITS if unit not in held]
    changes += [flat_disk(-1000 - n, key, unit) for n, (key, unit) in enumerate(disks)]
    try:
        WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes)))
        yield len(disks)
    finally:
        vm = find(si, vim.VirtualMachine, vm_name)
        added = [d for d in vm.config.hardware.device if d.key not in before]
        for kind, operation in (
            (vim.vm.device.VirtualDisk, "destroy"),
            (vim.vm.device.VirtualSCSIController, None),
        ):
            gone = [
                vim.vm.device.VirtualDeviceSpec(operation="remove", fileOperation=operation, device=d)
                for d in added
                if isinstance(d, kind)
            ]
            if gone:
                WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=gone)))
        left = {d.key for d in find(si, vim.VirtualMachine, vm_name).config.hardware.device} - before
        assert not left, f"devices left on {vm_name}: {left}"


def nothing_held(lab: LabState, si: Any, vm_name: str, lun: dict[str, Any]) -> bool:
    """No map of the LUN in the backend, no LU serving it in tgtd, no RDM of it on the VM."""
    maps = [m for m in observe.backend_state(lab)["maps"] if m["lun"] == lun["name"]]
    rdms = [r for r in observe.rdms(si, vm_name) if r.device.endswith(lun["naa"])]
    return not maps and not observe.lus_with(lab.tgt, lun["naa"]) and not rdms


def test_a_publish_to_a_full_vm_is_resource_exhausted_at_once_and_leaves_nothing(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    controller: Any,
    volumes: list[str],
    tmp_path: Path,
) -> None:
    vm = vcsim.inventory.vms[2]  # the other tests of this package publish to vms[0] and vms[1]
    node_id = f"vsphere://{vm.bios_uuid}"
    layout = [held for _, held in sorted(units_by_controller(find(si, vim.VirtualMachine, vm.name)).items())]
    name = pvc_name()
    volumes.append(name)
    controller.CreateVolume(create_request(name), timeout=120)
    with filled(si, vm.name) as taken:
        # what the node plugin in this VM's guest would answer: exactly the units filling took
        pvscsi_guest(tmp_path, layout)
        assert scsi.volume_capacity(tmp_path, managed=()) == taken == 59

        started = time.monotonic()
        code, details = code_of(controller.ControllerPublishVolume, publish_request(name, node_id))
        took = time.monotonic() - started
        print(f"ControllerPublishVolume to a full VM answered {code.name} after {took:.1f}s")
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert took < FAIL_FAST
        assert f"VM {vm.name} has no free SCSI unit" in details  # the operator's own message
        disk = observe.get(lab, "vdisk", name)
        assert disk is not None
        assert "nodeName" not in disk["spec"]
        lun = disk["status"]["lun"]
        observe.eventually(lambda: nothing_held(lab, si, vm.name, lun), 180, f"no map or RDM of {lun['naa']}")
        after = observe.get(lab, "vdisk", name)
        assert after is not None
        assert not after["status"].get("attachment")

    # the VM has room again: the CO's retry attaches it
    context = controller.ControllerPublishVolume(publish_request(name, node_id), timeout=240).publish_context
    assert context["naa"] == lun["naa"]
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(lun["naa"])]
    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id=node_id)
    controller.ControllerUnpublishVolume(unpublish, timeout=240)
    assert not [r for r in observe.rdms(si, vm.name) if r.device.endswith(lun["naa"])]
