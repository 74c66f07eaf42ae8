"""Which SCSI address the next LUN takes on a guest's virtio-scsi controllers: the first one
no SCSI-bus device holds, a new controller when all are full, LimitExceeded past the limit."""

from __future__ import annotations

import pytest

from lunbridge.errors import LimitExceeded
from lunbridge.hypervisor.libvirt.domain import Controller, DomainDevices, DriveAddress, ScsiDevice
from lunbridge.hypervisor.libvirt.slots import Limits, Slot, free_count, new_controller_index, next_slot

V0 = Controller(0, "virtio-scsi", pci_slot=3)
V1 = Controller(1, "virtio-scsi", pci_slot=5)
LSI = Controller(2, "lsilogic", pci_slot=10)


def disk(controller: int, target: int, unit: int = 0, name: str = "") -> ScsiDevice:
    return ScsiDevice("disk", "lun", DriveAddress(controller, 0, target, unit), name or None, None, None)


def domain(controllers: list[Controller], devices: list[ScsiDevice]) -> DomainDevices:
    names = frozenset(d.target_dev for d in devices if d.target_dev)
    return DomainDevices(tuple(controllers), tuple(devices), names)


def test_first_free_target_on_the_first_virtio_controller() -> None:
    slot = next_slot(domain([V0], [disk(0, 0), disk(0, 1), disk(0, 3)]), Limits(), "g1")
    assert slot == Slot(DriveAddress(0, 0, 2, 0), pci_slot=3)


def test_devices_of_other_controllers_do_not_count() -> None:
    slot = next_slot(domain([V0, V1], [disk(1, 0)]), Limits(), "g1")
    assert slot.address == DriveAddress(0, 0, 0, 0)


def test_non_virtio_controllers_are_never_used() -> None:
    limits = Limits(targets=2)
    slot = next_slot(domain([LSI, V1], [disk(1, 0), disk(1, 1)]), limits, "g1")
    assert slot.new_controller
    assert slot.address.controller == 0


def test_units_of_a_target_before_the_next_target() -> None:
    limits = Limits(targets=4, units=2)
    slot = next_slot(domain([V0], [disk(0, 0, 0), disk(0, 0, 1), disk(0, 1, 0)]), limits, "g1")
    assert slot.address == DriveAddress(0, 0, 1, 1)


def test_a_full_controller_brings_a_new_one_at_the_lowest_free_index() -> None:
    limits = Limits(max_controllers=4, targets=2)
    devices = domain([V0, LSI], [disk(0, 0), disk(0, 1)])
    slot = next_slot(devices, limits, "g1")
    assert slot == Slot(DriveAddress(1, 0, 0, 0), pci_slot=None, new_controller=True)
    assert "a new virtio-scsi controller 1" in slot.describe()
    assert new_controller_index(domain([V1], [])) == 0


def test_past_the_controller_limit_is_limit_exceeded() -> None:
    limits = Limits(max_controllers=2, targets=1)
    with pytest.raises(LimitExceeded, match="VM g1 has no free SCSI address: it has 2 SCSI controllers"):
        next_slot(domain([V0, V1], [disk(0, 0), disk(1, 0)]), limits, "g1")


def test_free_count_includes_controllers_still_allowed() -> None:
    limits = Limits(max_controllers=3, targets=4)
    devices = domain([V0, LSI], [disk(0, 0), disk(0, 2), disk(0, 9)])  # target 9 is outside the range
    assert free_count(devices, limits) == 2 + 4


def test_merged_views_keep_every_address() -> None:
    live = domain([V0], [disk(0, 0, name="sda")])
    config = domain([V0, V1], [disk(0, 1, name="sdb")])
    both = live.merged(config)
    assert [c.index for c in both.controllers] == [0, 1]
    assert next_slot(both, Limits(), "g1").address == DriveAddress(0, 0, 2, 0)
    assert both.disk_names == {"sda", "sdb"}
