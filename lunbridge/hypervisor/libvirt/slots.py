"""Where on a guest's virtio-scsi controllers the next LUN goes.

libvirt would pick an address itself, but lunbridge must tell the guest exactly which address
to rescan, and libvirt's own choice (unit N on target 0, seven per controller, from the disk
name) collides with addresses chosen by anyone else. So every attach names an explicit
`<address type='drive'>`: the first (target, unit) that no SCSI-bus device of the domain holds,
on the lowest-index virtio-scsi controller that has one; a new virtio-scsi controller when all
are full, up to `max_controllers` SCSI controllers; then LimitExceeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lunbridge.errors import LimitExceeded
from lunbridge.hypervisor.base import Attachment
from lunbridge.hypervisor.libvirt.domain import DomainDevices, DriveAddress
from lunbridge.san import ScsiAddress


@dataclass(frozen=True)
class PassthroughAttachment(Attachment):
    """A LUN passed through to a domain (`<disk device='lun'>`) at a drive address on a
    virtio-scsi controller; the guest sees it at channel = bus, target, LUN = unit."""

    address: DriveAddress

    @property
    def guest_address(self) -> ScsiAddress:
        return ScsiAddress(self.address.bus, self.address.target, self.address.unit)

    def detail(self) -> dict[str, int]:
        return {"controller": self.address.controller, "bus": self.address.bus,
                "target": self.address.target, "unit": self.address.unit}  # fmt: skip

    def describe(self) -> str:
        return f"virtio-scsi controller {self.address.controller} address {self.address}"


@dataclass(frozen=True)
class Limits:
    max_controllers: int = 4
    targets: int = 256
    units: int = 1

    @property
    def per_controller(self) -> int:
        return self.targets * self.units


@dataclass(frozen=True)
class Slot:
    """Where to put the next disk; `new_controller` means a virtio-scsi controller with index
    `address.controller` must be added first (its PCI slot is known only after that)."""

    address: DriveAddress
    pci_slot: int | None
    new_controller: bool = False

    def describe(self) -> str:
        where = "a new virtio-scsi controller" if self.new_controller else "virtio-scsi controller"
        a = self.address
        return f"{where} {a.controller} (bus {a.bus}) target {a.target} unit {a.unit}"


def used_addresses(devices: DomainDevices) -> set[DriveAddress]:
    return {device.address for device in devices.scsi if device.address is not None}


def free_slots(devices: DomainDevices, limits: Limits) -> Iterator[Slot]:
    """Every free address on the existing virtio-scsi controllers, by controller, target, unit."""
    used = used_addresses(devices)
    for controller in devices.controllers:
        if not controller.virtio:
            continue
        for target in range(limits.targets):
            for unit in range(limits.units):
                address = DriveAddress(controller.index, 0, target, unit)
                if address not in used:
                    yield Slot(address, controller.pci_slot)


def new_controller_index(devices: DomainDevices) -> int:
    taken = {c.index for c in devices.controllers}
    return min(set(range(len(taken) + 1)) - taken)


def next_slot(devices: DomainDevices, limits: Limits, vm_name: str) -> Slot:
    """The first free address; else unit 0 of target 0 on a new virtio-scsi controller;
    LimitExceeded once the guest has `max_controllers` SCSI controllers and all are full."""
    for slot in free_slots(devices, limits):
        return slot
    if len(devices.controllers) >= limits.max_controllers:
        virtio = sum(1 for c in devices.controllers if c.virtio)
        raise LimitExceeded(
            f"VM {vm_name} has no free SCSI address: it has {len(devices.controllers)} SCSI controllers "
            f"(the limit lunbridge is configured with), {virtio} of them virtio-scsi with all "
            f"{limits.per_controller} addresses in use; detach a volume from this VM or run the "
            "workload on another node"
        )
    return Slot(DriveAddress(new_controller_index(devices), 0, 0, 0), None, new_controller=True)


def free_count(devices: DomainDevices, limits: Limits) -> int:
    """How many more LUNs the guest can take (free addresses plus controllers still allowed),
    e.g. for a node's maximum volume count."""
    used = used_addresses(devices)
    free = 0
    for controller in devices.controllers:
        if controller.virtio:
            taken = sum(
                1
                for a in used
                if a.controller == controller.index
                and a.bus == 0
                and a.target < limits.targets
                and a.unit < limits.units
            )
            free += limits.per_controller - taken
    free += max(limits.max_controllers - len(devices.controllers), 0) * limits.per_controller
    return free
