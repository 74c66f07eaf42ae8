"""Which SCSI unit the next RDM takes, and which RDM belongs to a LUN: rules the simulator
does not enforce (unit 7, units past 15, a fifth controller), checked without a vCenter."""

from __future__ import annotations

import pytest

from lunbridge.errors import LimitExceeded
from lunbridge.hypervisor.vsphere.slots import (
    NEW_CONTROLLER_KEY,
    USABLE_UNITS,
    Controller,
    Device,
    Rdm,
    VmDevices,
    free_slots,
    next_slot,
    plan_slots,
    rdm_is_lun,
    rdms_of,
)

NAA = "naa.6001405a42764eb0e281772b87dd006e"


def vm(controllers: list[Controller], devices: list[Device], rdms: tuple[Rdm, ...] = ()) -> VmDevices:
    return VmDevices(tuple(controllers), tuple(devices), rdms)


def full(controller: Controller, first_key: int) -> list[Device]:
    return [Device(first_key + i, controller.key, unit) for i, unit in enumerate(USABLE_UNITS)]


PV0 = Controller(key=1000, bus=0, paravirtual=True, pci_slot=160)
PV1 = Controller(key=1001, bus=1, paravirtual=True)
LSI2 = Controller(key=1002, bus=2, paravirtual=False)


def test_usable_units_are_0_to_15_without_7() -> None:
    assert USABLE_UNITS == (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15)


def test_first_free_unit_after_the_boot_disk() -> None:
    slot = next_slot(vm([PV0], [Device(2000, PV0.key, 0)]), "vm")
    assert (slot.controller_key, slot.bus, slot.unit, slot.pci_slot) == (PV0.key, 0, 1, 160)
    assert not slot.new_controller


def test_unit_7_is_skipped_and_gaps_are_reused() -> None:
    taken = [Device(2000 + u, PV0.key, u) for u in (0, 1, 2, 3, 4, 5, 6, 9)]
    assert next_slot(vm([PV0], taken), "vm").unit == 8
    taken = [Device(2000 + u, PV0.key, u) for u in (0, 2)]
    assert next_slot(vm([PV0], taken), "vm").unit == 1


def test_units_come_from_devices_not_from_the_controllers_device_list() -> None:
    # the model has no controller.device at all: a device on another controller (or a CD-ROM on
    # an IDE controller) does not take a unit here
    devices = [Device(3000, PV1.key, 0), Device(3001, 200, 0)]
    assert next_slot(vm([PV0, PV1], devices), "vm").unit == 0


def test_full_controller_moves_to_the_next_bus() -> None:
    slot = next_slot(vm([PV1, PV0], full(PV0, 2000)), "vm")
    assert (slot.controller_key, slot.bus, slot.unit) == (PV1.key, 1, 0)


def test_non_paravirtual_controllers_are_never_used() -> None:
    slot = next_slot(vm([PV0, LSI2], full(PV0, 2000)), "vm")
    assert slot.new_controller
    assert slot.bus == 1  # lowest free bus; bus 2 is the LSI controller's


def test_a_new_controller_takes_the_lowest_free_bus() -> None:
    pv2 = Controller(key=1003, bus=2, paravirtual=True)
    slot = next_slot(vm([PV0, pv2], full(PV0, 2000) + full(pv2, 3000)), "vm")
    assert (slot.new_controller, slot.controller_key, slot.bus, slot.unit) == (True, NEW_CONTROLLER_KEY, 1, 0)
    assert slot.pci_slot is None


def test_no_controller_at_all_gets_one_on_bus_0() -> None:
    slot = next_slot(vm([], []), "vm")
    assert (slot.new_controller, slot.bus, slot.unit) == (True, 0, 0)


def test_four_full_controllers_are_the_limit() -> None:
    controllers = [Controller(1000 + b, b, True) for b in range(4)]
    devices = [d for c in controllers for d in full(c, 10000 + 100 * c.bus)]
    assert len(devices) == 60
    with pytest.raises(LimitExceeded, match=r"VM node-7 has no free SCSI unit: it has 4 SCSI controllers"):
        next_slot(vm(controllers, devices), "node-7")


def test_four_controllers_with_a_full_lsi_one_are_the_limit_too() -> None:
    controllers = [Controller(1000 + b, b, b != 3) for b in range(4)]
    devices = [d for c in controllers[:3] for d in full(c, 10000 + 100 * c.bus)]
    with pytest.raises(LimitExceeded):
        next_slot(vm(controllers, devices), "vm")


def test_free_slots_counts_what_is_left() -> None:
    assert len(free_slots(vm([PV0, PV1], [Device(2000, PV0.key, 0)]))) == 29


def rdm(device_name: str = "", lun_uuid: str = "") -> Rdm:
    return Rdm(1, PV0.key, 1, device_name, lun_uuid, "physicalMode")


# --- several RDMs in one reconfigure ------------------------------------------------------------
def test_a_reconfigure_fills_free_units_then_one_new_controller() -> None:
    boot = Device(2000, PV0.key, 0)
    slots = plan_slots(vm([PV0], [boot]), 20, "vm")
    assert [(s.controller_key, s.unit) for s in slots[:14]] == [(PV0.key, u) for u in USABLE_UNITS[1:]]
    assert all(not s.new_controller for s in slots[:14])
    first, *rest = slots[14:]
    assert (first.controller_key, first.bus, first.unit) == (NEW_CONTROLLER_KEY, 1, 0)
    assert first.new_controller
    assert [(s.controller_key, s.bus, s.unit, s.new_controller) for s in rest] == [
        (NEW_CONTROLLER_KEY, 1, u, False) for u in USABLE_UNITS[1:6]
    ]
    assert len({(s.controller_key, s.unit) for s in slots}) == 20


def test_a_second_new_controller_waits_for_the_next_reconfigure() -> None:
    slots = plan_slots(vm([PV0], full(PV0, 2000)), 40, "vm")
    assert len(slots) == len(USABLE_UNITS)  # bus 1's units; bus 2's controller comes next time
    assert [s.new_controller for s in slots] == [True] + [False] * (len(USABLE_UNITS) - 1)
    assert {s.bus for s in slots} == {1}


def test_a_reconfigure_stops_at_the_vms_last_unit_and_a_full_vm_is_refused() -> None:
    pvs = [Controller(1000 + b, b, True) for b in range(4)]
    taken = [d for c in pvs for d in full(c, 2000 + 100 * c.bus)][2:]  # two units free on bus 0
    slots = plan_slots(vm(pvs, taken), 5, "vm")
    assert [(s.controller_key, s.unit) for s in slots] == [(1000, 0), (1000, 1)]
    with pytest.raises(LimitExceeded, match="VM vm has no free SCSI unit"):
        plan_slots(vm(pvs, [d for c in pvs for d in full(c, 2000 + 100 * c.bus)]), 3, "vm")


def test_rdm_found_by_device_path() -> None:
    assert rdm_is_lun(rdm(device_name=f"/vmfs/devices/disks/{NAA}"), NAA)
    assert not rdm_is_lun(rdm(device_name="/vmfs/devices/disks/naa.6001405aaaaaaaaaaaaaaaaaaaaaaaaa"), NAA)


def test_rdm_found_by_lun_uuid_and_vml_name() -> None:
    # what ESXi writes: 02 + LUN number + 0000 + NAA hex + model hex
    uuid = "0200010000" + NAA.removeprefix("naa.") + "564952545541"
    assert rdm_is_lun(rdm(lun_uuid=uuid), NAA)
    assert rdm_is_lun(rdm(device_name=f"/vmfs/devices/disks/vml.{uuid}"), NAA)
    other = "0200010000" + "6001405" + "b" * 25 + "564952545541"
    assert not rdm_is_lun(rdm(lun_uuid=other), NAA)


def test_rdms_of_selects_only_that_lun() -> None:
    mine = Rdm(5, PV0.key, 1, f"/vmfs/devices/disks/{NAA}", "", "physicalMode")
    other = Rdm(6, PV0.key, 2, "/vmfs/devices/disks/naa.6001405bbbbbbbbbbbbbbbbbbbbbbbbb", "", "physicalMode")
    assert rdms_of(vm([PV0], [], (mine, other)), NAA) == [mine]
