"""A guest's SCSI devices read from its domain XML, and the XML of the devices lunbridge adds.

It exists as pure functions over plain dataclasses so the rules can be tested without a
libvirt daemon: which controllers are SCSI controllers and in which PCI slot, which device
holds which `<address type='drive'>` (only devices on the SCSI bus: an IDE or SATA disk's
drive address names an IDE/SATA controller of the same index), which disk is lunbridge's for
a given LUN (by its `ua-lunbridge-<naa>` alias, or by its iSCSI source), and the
`<disk type='network' device='lun'>` that passes an iSCSI LUN through to the guest.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from lunbridge.errors import Conflict
from lunbridge.hypervisor.libvirt.refs import Portal, disk_alias, naa_of_alias

VIRTIO_SCSI = "virtio-scsi"


@dataclass(frozen=True)
class Controller:
    """A `<controller type='scsi'>`; `index` is what drive addresses call `controller`."""

    index: int
    model: str | None
    pci_slot: int | None = None
    alias: str | None = None

    @property
    def virtio(self) -> bool:
        return self.model == VIRTIO_SCSI


@dataclass(frozen=True, order=True)
class DriveAddress:
    controller: int
    bus: int
    target: int
    unit: int

    def __str__(self) -> str:
        return f"{self.controller}:{self.bus}:{self.target}:{self.unit}"


@dataclass(frozen=True)
class IscsiSource:
    """Where QEMU's initiator logs in for a network disk: `<source protocol='iscsi'>`."""

    target: str  # the target IQN
    lun: int
    hosts: tuple[tuple[str, int], ...]
    initiator: str | None

    def same_lun(self, target: str, lun: int) -> bool:
        return self.target.lower() == target.lower() and self.lun == lun


@dataclass(frozen=True)
class ScsiDevice:
    """A device on a SCSI controller: a disk (disk, lun, cdrom) or a SCSI hostdev."""

    element: str  # "disk" or "hostdev"
    device: str  # disk: disk/lun/cdrom; hostdev: scsi
    address: DriveAddress | None
    target_dev: str | None
    alias: str | None
    source: IscsiSource | None
    xml: str = field(default="", repr=False, compare=False)  # the element as libvirt wrote it

    @property
    def naa(self) -> str | None:
        """The LUN this is, if lunbridge attached it (read from its alias)."""
        return naa_of_alias(self.alias)


@dataclass(frozen=True)
class DomainDevices:
    controllers: tuple[Controller, ...]
    scsi: tuple[ScsiDevice, ...]
    disk_names: frozenset[str]  # every <disk><target dev=...>, all buses (they must be unique)

    def controller(self, index: int) -> Controller | None:
        return next((c for c in self.controllers if c.index == index), None)

    def merged(self, other: DomainDevices) -> DomainDevices:
        """Both views of a persistent domain (live and next boot): a new disk must fit both."""
        controllers = {c.index: c for c in other.controllers} | {c.index: c for c in self.controllers}
        return DomainDevices(
            controllers=tuple(sorted(controllers.values(), key=lambda c: c.index)),
            scsi=self.scsi + other.scsi,
            disk_names=self.disk_names | other.disk_names,
        )


def _int(value: str | None, what: str) -> int:
    try:
        return int(value or "", 0)  # libvirt writes PCI numbers as 0x.., drive numbers decimal
    except ValueError:
        raise Conflict(f"the domain XML has a bad {what}: {value!r}") from None


def _drive_address(element: ET.Element) -> DriveAddress | None:
    address = element.find("address")
    if address is None or address.get("type") != "drive":
        return None
    return DriveAddress(
        controller=_int(address.get("controller", "0"), "drive controller"),
        bus=_int(address.get("bus", "0"), "drive bus"),
        target=_int(address.get("target", "0"), "drive target"),
        unit=_int(address.get("unit", "0"), "drive unit"),
    )


def _alias(element: ET.Element) -> str | None:
    alias = element.find("alias")
    return alias.get("name") if alias is not None else None


def _iscsi_source(disk: ET.Element) -> IscsiSource | None:
    source = disk.find("source")
    if disk.get("type") != "network" or source is None or source.get("protocol") != "iscsi":
        return None
    target, _, lun = (source.get("name") or "").rpartition("/")
    if not target:
        target, lun = source.get("name") or "", "0"
    hosts = tuple(
        (host.get("name") or "", _int(host.get("port") or "3260", "iSCSI port"))
        for host in source.findall("host")
    )
    iqn = source.find("initiator/iqn")
    return IscsiSource(
        target=target,
        lun=_int(lun or "0", "iSCSI LUN"),
        hosts=hosts,
        initiator=iqn.get("name") if iqn is not None else None,
    )


def parse_domain(text: str) -> DomainDevices:
    """The SCSI controllers and SCSI-bus devices of a domain XML (live or inactive)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise Conflict(f"libvirt returned a domain XML that does not parse: {exc}") from None
    devices = root.find("devices")
    if devices is None:
        return DomainDevices((), (), frozenset())
    controllers = []
    for element in devices.findall("controller"):
        if element.get("type") != "scsi":
            continue
        pci = element.find("address")
        slot = pci.get("slot") if pci is not None and pci.get("type") == "pci" else None
        controllers.append(
            Controller(
                index=_int(element.get("index", "0"), "controller index"),
                model=element.get("model"),
                pci_slot=_int(slot, "PCI slot") if slot is not None else None,
                alias=_alias(element),
            )
        )
    scsi: list[ScsiDevice] = []
    names: set[str] = set()
    for disk in devices.findall("disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if dev:
            names.add(dev)
        if target is None or target.get("bus") != "scsi":
            continue
        scsi.append(
            ScsiDevice(
                element="disk",
                device=disk.get("device", "disk"),
                address=_drive_address(disk),
                target_dev=dev,
                alias=_alias(disk),
                source=_iscsi_source(disk),
                xml=ET.tostring(disk, encoding="unicode"),
            )
        )
    for hostdev in devices.findall("hostdev"):
        if hostdev.get("type") == "scsi":
            address, alias = _drive_address(hostdev), _alias(hostdev)
            scsi.append(ScsiDevice("hostdev", "scsi", address, None, alias, None))
    return DomainDevices(
        controllers=tuple(sorted(controllers, key=lambda c: c.index)),
        scsi=tuple(scsi),
        disk_names=frozenset(names),
    )


def disks_of(devices: DomainDevices, naa: str, address: tuple[str, int] | None = None) -> list[ScsiDevice]:
    """The disks that carry LUN `naa`: lunbridge's (by alias), and, when the LUN's current
    address = (target IQN, LUN) is known, an iSCSI disk someone else attached from there
    (a disk with a lunbridge alias for another NAA is never taken for this one)."""
    found = []
    for device in devices.scsi:
        if device.naa == naa or (
            device.naa is None
            and address is not None
            and device.source is not None
            and device.source.same_lun(*address)
        ):
            found.append(device)
    return found


def disk_name(index: int, prefix: str = "sd") -> str:
    """libvirt's disk names: 0 → sda, 25 → sdz, 26 → sdaa, 701 → sdzz, 702 → sdaaa."""
    letters = ""
    while True:
        letters = chr(ord("a") + index % 26) + letters
        index = index // 26 - 1
        if index < 0:
            return prefix + letters


def free_disk_name(taken: Iterable[str]) -> str:
    """The first `sdX` name no disk of the domain uses (libvirt wants them unique)."""
    used = set(taken)
    index = 0
    while disk_name(index) in used:
        index += 1
    return disk_name(index)


def disk_xml(
    naa: str,
    address: DriveAddress,
    portal: Portal,
    target_iqn: str,
    lun: int,
    initiator: str,
    dev: str,
) -> str:
    """The passthrough disk of LUN `naa`: QEMU logs in to `portal` as `initiator` and hands
    the guest the LUN's own SCSI (`device='lun'`: its NAA, serial and VPD pages), at
    `address` on a virtio-scsi controller. The alias marks it as lunbridge's."""
    disk = ET.Element("disk", type="network", device="lun")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none")
    source = ET.SubElement(disk, "source", protocol="iscsi", name=f"{target_iqn}/{lun}")
    ET.SubElement(source, "host", name=portal.address, port=str(portal.port))
    ET.SubElement(ET.SubElement(source, "initiator"), "iqn", name=initiator)
    ET.SubElement(disk, "target", dev=dev, bus="scsi")
    ET.SubElement(disk, "alias", name=disk_alias(naa))
    ET.SubElement(
        disk,
        "address",
        type="drive",
        controller=str(address.controller),
        bus=str(address.bus),
        target=str(address.target),
        unit=str(address.unit),
    )
    return ET.tostring(disk, encoding="unicode")


def controller_xml(index: int) -> str:
    """A virtio-scsi controller; libvirt picks its PCI slot."""
    return ET.tostring(ET.Element("controller", type="scsi", index=str(index), model=VIRTIO_SCSI), "unicode")
