"""Where on a VM's SCSI controllers the next raw device mapping goes, and which RDM is a LUN's.

It exists as pure functions over a plain model of the VM's devices because these are the
rules the simulator does not enforce (it accepts unit 7, unit 16, a fifth controller, the
same LUN twice) and a real vCenter refuses late and vaguely. Units are computed from every
device's own `controllerKey`/`unitNumber`, never from a controller's `device` list, which
the simulator never updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lunbridge.errors import LimitExceeded
from lunbridge.hypervisor.base import Attachment
from lunbridge.san import ScsiAddress

MAX_SCSI_CONTROLLERS = 4  # SCSI controllers of any type per VM (buses 0-3)
RESERVED_UNIT = 7  # the controller's own SCSI id
USABLE_UNITS: tuple[int, ...] = tuple(unit for unit in range(16) if unit != RESERVED_UNIT)
NEW_CONTROLLER_KEY = -100  # a temporary key; vCenter assigns the real one in the same reconfigure


@dataclass(frozen=True)
class RdmAttachment(Attachment):
    """An RDM on a VM's paravirtual SCSI controller: one controller per bus, the disk at
    `unit_number`; the guest sees it at SCSI target = unit, LUN 0 of that controller's host."""

    controller_key: int
    bus_number: int
    unit_number: int
    disk_key: int

    @property
    def guest_address(self) -> ScsiAddress:
        return ScsiAddress(0, self.unit_number, 0)

    def detail(self) -> dict[str, int]:
        return {"controllerKey": self.controller_key, "busNumber": self.bus_number,
                "unitNumber": self.unit_number, "diskKey": self.disk_key}  # fmt: skip

    def describe(self) -> str:
        return f"controller {self.controller_key} (bus {self.bus_number}) unit {self.unit_number}"


@dataclass(frozen=True)
class Controller:
    key: int
    bus: int
    paravirtual: bool
    pci_slot: int | None = None


@dataclass(frozen=True)
class Device:
    """Any device that occupies a unit on a controller (disks, CD-ROMs, passthrough...)."""

    key: int
    controller_key: int
    unit: int


@dataclass(frozen=True)
class Rdm:
    """A raw device mapping disk as the VM's configuration holds it."""

    key: int
    controller_key: int
    unit: int
    device_name: str
    lun_uuid: str
    compatibility_mode: str


@dataclass(frozen=True)
class VmDevices:
    controllers: tuple[Controller, ...]
    devices: tuple[Device, ...]
    rdms: tuple[Rdm, ...]

    def controller(self, key: int) -> Controller | None:
        return next((c for c in self.controllers if c.key == key), None)


@dataclass(frozen=True)
class Slot:
    """Where to put the next disk; `new_controller` means a PVSCSI controller must be added
    on `bus` first (its key is NEW_CONTROLLER_KEY until vCenter assigns one)."""

    controller_key: int
    bus: int
    unit: int
    pci_slot: int | None
    new_controller: bool = False


def used_units(devices: Iterable[Device]) -> dict[int, set[int]]:
    """Controller key → units taken, from each device's own controllerKey/unitNumber."""
    used: dict[int, set[int]] = {}
    for device in devices:
        used.setdefault(device.controller_key, set()).add(device.unit)
    return used


def free_slots(vm: VmDevices) -> list[Slot]:
    """Every free unit on the VM's ParaVirtual controllers, by bus then unit."""
    used = used_units(vm.devices)
    slots: list[Slot] = []
    for controller in sorted(vm.controllers, key=lambda c: c.bus):
        if not controller.paravirtual:
            continue
        taken = used.get(controller.key, set())
        slots += [
            Slot(controller.key, controller.bus, unit, controller.pci_slot)
            for unit in USABLE_UNITS
            if unit not in taken
        ]
    return slots


def next_slot(vm: VmDevices, vm_name: str) -> Slot:
    """The first free unit on a PVSCSI controller; else a new PVSCSI controller on the lowest
    free bus; LimitExceeded once the VM has its four SCSI controllers and no free unit."""
    free = free_slots(vm)
    if free:
        return free[0]
    if len(vm.controllers) >= MAX_SCSI_CONTROLLERS:
        paravirtual = sum(1 for c in vm.controllers if c.paravirtual)
        raise LimitExceeded(
            f"VM {vm_name} has no free SCSI unit: it has {len(vm.controllers)} SCSI controllers "
            f"(the vSphere maximum), {paravirtual} of them ParaVirtual with all "
            f"{len(USABLE_UNITS)} units in use; detach a volume from this VM or run the "
            "workload on another node"
        )
    buses = {c.bus for c in vm.controllers}
    bus = min(set(range(MAX_SCSI_CONTROLLERS)) - buses)
    return Slot(NEW_CONTROLLER_KEY, bus, USABLE_UNITS[0], None, new_controller=True)


def plan_slots(vm: VmDevices, count: int, vm_name: str) -> list[Slot]:
    """Slots for up to `count` RDMs added by one reconfigure, in `next_slot`'s order; a new
    PVSCSI controller is added at most once (its later units name it by NEW_CONTROLLER_KEY
    too), so the list is shorter when the disks need a second one: the next reconfigure adds
    it. LimitExceeded (`next_slot`'s) when not even one fits."""
    slots: list[Slot] = []
    model = vm
    while len(slots) < count:
        try:
            slot = next_slot(model, vm_name)
        except LimitExceeded:
            if slots:
                break
            raise
        if slot.new_controller and any(s.new_controller for s in slots):
            break
        slots.append(slot)
        added = (Controller(slot.controller_key, slot.bus, True, None),) if slot.new_controller else ()
        model = VmDevices(
            model.controllers + added,
            (*model.devices, Device(-len(slots), slot.controller_key, slot.unit)),
            model.rdms,
        )
    return slots


def naa_hex(naa: str) -> str:
    """`naa.6001...` → `6001...` (the argument must already be canonical, see san.naa)."""
    return naa.removeprefix("naa.")


def rdm_is_lun(rdm: Rdm, naa: str) -> bool:
    """True if the RDM maps the LUN `naa` (canonical `naa.<hex>`).

    Two spellings are found in the wild: a deviceName ending in the canonical name
    (`/vmfs/devices/disks/naa.<hex>`), and ESXi's `vml.`/lunUuid form, which is
    `02` + 4 hex (LUN number) + `0000` + the NAA hex + the model in hex; vCenter rewrites
    deviceName to the vml path, so lunUuid is what stays reliable.
    """
    device = rdm.device_name.rsplit("/", 1)[-1].lower()
    if device == naa:
        return True
    ident = naa_hex(naa)
    for value in (rdm.lun_uuid.lower(), device.removeprefix("vml.")):
        if value[10 : 10 + len(ident)] == ident:
            return True
    return False


def rdm_naa(rdm: Rdm) -> str | None:
    """The NAA (`naa.<hex>`) of the LUN an RDM maps, read from either spelling `rdm_is_lun`
    knows (the NAA's first digit gives its length: 6 is 32 hex digits, the others 16); None
    for an RDM of a LUN without an NAA id."""
    device = rdm.device_name.rsplit("/", 1)[-1].lower()
    candidates = [device.removeprefix("naa.")] if device.startswith("naa.") else []
    candidates += [value[10:] for value in (rdm.lun_uuid.lower(), device.removeprefix("vml.")) if value]
    for ident in candidates:
        length = 32 if ident[:1] == "6" else 16
        digits = ident[:length]
        if len(digits) == length and all(c in "0123456789abcdef" for c in digits):
            return f"naa.{digits}"
    return None


def rdms_of(vm: VmDevices, naa: str) -> list[Rdm]:
    return [rdm for rdm in vm.rdms if rdm_is_lun(rdm, naa)]


def describe_slot(slot: Slot) -> str:
    where = "a new PVSCSI controller" if slot.new_controller else f"controller {slot.controller_key}"
    return f"{where} (bus {slot.bus}) unit {slot.unit}"


def summarize(rdms: Sequence[Rdm]) -> str:
    return ", ".join(f"disk {r.key} at {r.controller_key}:{r.unit}" for r in rdms)
