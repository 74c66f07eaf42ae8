"""Blocking steps of raw device mappings: read a VM's SCSI devices into the plain model of
`slots`, find a LUN among a host's SCSI LUNs by NAA, and start the reconfigure tasks that
add or remove an RDM.

An RDM is a small mapping file (a "pointer" .vmdk in the VM's folder) whose backing names
the host's LUN; the guest then talks SCSI to the LUN itself (physical compatibility mode).
Removing it with fileOperation `destroy` deletes that mapping file only: vSphere never
writes to a raw LUN when it deletes an RDM's backing, so the data stays on the storage
server, while leaving the operation out would strand one mapping file per detach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lunbridge.hypervisor.base import Host, Vm
from lunbridge.hypervisor.vsphere._vmomi import vim
from lunbridge.hypervisor.vsphere.inventory import host_of
from lunbridge.hypervisor.vsphere.session import Api
from lunbridge.hypervisor.vsphere.slots import Controller, Device, Rdm, Slot, VmDevices


@dataclass(frozen=True)
class HostLun:
    """A LUN as one host sees it."""

    canonical_name: str
    uuid: str
    device_path: str
    capacity_bytes: int | None
    key: str = ""  # the host's key of the LUN (`ScsiLun.key`), which its SCSI topology names


def _as_rdm(dev: Any) -> Rdm | None:
    """The device as an RDM, if it is a disk backed by a raw LUN."""
    backing = dev.backing
    if dev.controllerKey is None or dev.unitNumber is None:
        return None
    if not isinstance(dev, vim.vm.device.VirtualDisk) or not isinstance(
        backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo
    ):
        return None
    return Rdm(
        key=int(dev.key),
        controller_key=int(dev.controllerKey),
        unit=int(dev.unitNumber),
        device_name=str(backing.deviceName or ""),
        lun_uuid=str(backing.lunUuid or ""),
        compatibility_mode=str(backing.compatibilityMode or ""),
    )


_LIST_PATHS = ("name", "config.uuid", "config.instanceUuid", "runtime.host", "config.hardware.device")


def list_rdms(api: Api) -> list[tuple[Vm, Rdm]]:
    """Every RDM of every VM in the inventory, with its VM (read in one property collection;
    a VM registered on no host, e.g. a template, has none that matter and is left out)."""
    hosts: dict[str, Host] = {}
    found: list[tuple[Vm, Rdm]] = []
    for moref, values in sorted(api.find_all("VirtualMachine", _LIST_PATHS).items()):
        rdms = [rdm for dev in values.get("config.hardware.device") or [] if (rdm := _as_rdm(dev))]
        host_obj = values.get("runtime.host")
        if not rdms or host_obj is None:
            continue
        if host_obj._moId not in hosts:
            hosts[host_obj._moId] = host_of(api, host_obj)
        instance = values.get("config.instanceUuid")
        vm = Vm(
            name=str(values.get("name") or moref),
            id=moref,
            bios_uuid=str(values.get("config.uuid") or "").lower(),
            instance_uuid=str(instance).lower() if instance else None,
            host=hosts[host_obj._moId],
        )
        found += [(vm, rdm) for rdm in rdms]
    return found


def read_devices(api: Api, vm_id: str) -> tuple[VmDevices, dict[int, Any]]:
    """The VM's SCSI controllers, unit-holding devices and RDMs, read fresh; plus the raw
    device objects by key (a remove spec must carry the device as vCenter has it)."""
    vm_obj = api.ref("VirtualMachine", vm_id)
    raw = list(api.props(vm_obj, ("config.hardware.device",)).get("config.hardware.device") or [])
    controllers: list[Controller] = []
    devices: list[Device] = []
    rdms: list[Rdm] = []
    for dev in raw:
        if isinstance(dev, vim.vm.device.VirtualSCSIController):
            slot_info = dev.slotInfo
            pci = getattr(slot_info, "pciSlotNumber", None) if slot_info is not None else None
            controllers.append(
                Controller(
                    key=int(dev.key),
                    bus=int(dev.busNumber),
                    paravirtual=isinstance(dev, vim.vm.device.ParaVirtualSCSIController),
                    pci_slot=int(pci) if pci is not None else None,
                )
            )
        if dev.controllerKey is None or dev.unitNumber is None:
            continue
        devices.append(
            Device(key=int(dev.key), controller_key=int(dev.controllerKey), unit=int(dev.unitNumber))
        )
        rdm = _as_rdm(dev)
        if rdm is not None:
            rdms.append(rdm)
    model = VmDevices(controllers=tuple(controllers), devices=tuple(devices), rdms=tuple(rdms))
    return model, {int(dev.key): dev for dev in raw}


def host_luns(api: Api, host_id: str) -> dict[str, HostLun]:
    """Every SCSI LUN the host lists (one read of its storage device list), by canonical name
    (`naa.…`, lowercase)."""
    host_obj = api.ref("HostSystem", host_id)
    luns = api.props(host_obj, ("config.storageDevice.scsiLun",)).get("config.storageDevice.scsiLun") or []
    found: dict[str, HostLun] = {}
    for lun in luns:
        name = str(lun.canonicalName or "").lower()
        path = getattr(lun, "devicePath", None) or lun.deviceName
        capacity = getattr(lun, "capacity", None)
        size = int(capacity.block) * int(capacity.blockSize) if capacity is not None else None
        found[name] = HostLun(
            canonical_name=name, uuid=str(lun.uuid), device_path=str(path), capacity_bytes=size,
            key=str(lun.key),
        )  # fmt: skip
    return found


def host_lun_keys(api: Api, host_id: str) -> frozenset[str]:
    """The keys of the SCSI LUNs the host reaches through any of its adapters' targets (one
    read of its SCSI topology). A topology entry is three short fields where a LUN of
    `host_luns` is dozens, descriptors and byte arrays among them: about a tenth of the
    decoding, for a listing that grows with the LUNs a host sees."""
    host_obj = api.ref("HostSystem", host_id)
    topology = api.props(host_obj, ("config.storageDevice.scsiTopology",)).get(
        "config.storageDevice.scsiTopology"
    )
    return frozenset(
        str(lun.scsiLun)
        for adapter in (getattr(topology, "adapter", None) or [])
        for target in (adapter.target or [])
        for lun in (target.lun or [])
    )


def add_rdms(api: Api, vm_id: str, placed: list[tuple[Slot, HostLun]]) -> Any:
    """Start the one reconfigure that adds each LUN as a physical-mode RDM at its slot (and the
    new PVSCSI controller a slot may need, before the disks that name it); returns the task."""
    changes = []
    for index, (slot, lun) in enumerate(placed, start=1):
        if slot.new_controller:
            controller = vim.vm.device.ParaVirtualSCSIController(
                key=slot.controller_key, busNumber=slot.bus, sharedBus="noSharing", hotAddRemove=True
            )
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=controller))
        backing = vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo(
            compatibilityMode="physicalMode",
            deviceName=lun.device_path,  # exactly the host's device, never a guessed path
            lunUuid=lun.uuid,
            diskMode="independent_persistent",
            fileName="",  # the mapping file goes to the VM's folder
        )
        disk = vim.vm.device.VirtualDisk(
            key=-index, controllerKey=slot.controller_key, unitNumber=slot.unit, backing=backing
        )
        if lun.capacity_bytes:
            disk.capacityInKB = lun.capacity_bytes // 1024
            disk.capacityInBytes = lun.capacity_bytes
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk))
    vm_obj = api.ref("VirtualMachine", vm_id)
    return vm_obj.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes))


def remove_rdms(api: Api, vm_id: str, devices: list[Any]) -> Any:
    """Start the reconfigure that removes RDM disks, deleting their mapping files (not the
    LUN's data, see the module docstring); returns the task."""
    changes = [
        vim.vm.device.VirtualDeviceSpec(operation="remove", fileOperation="destroy", device=device)
        for device in devices
    ]
    vm_obj = api.ref("VirtualMachine", vm_id)
    return vm_obj.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes))
