"""Where does this OS run: which hypervisor, if any, and which VM is it?

The node plugin runs inside the guest and must name its VM to the operator the way the
hypervisor knows it (a providerID); on bare metal there is no hypervisor to ask and no
providerID. Everything here reads files under a root folder, so tests feed it fixture trees.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from lunbridge.api import PROVIDER_LIBVIRT, PROVIDER_VSPHERE

DMI = Path("sys/class/dmi/id")


class Platform(enum.StrEnum):
    BARE_METAL = "bare-metal"
    VMWARE = "vmware"
    KVM = "kvm"  # QEMU/KVM, libvirt
    HYPERV = "hyperv"
    XEN = "xen"
    VIRTUALBOX = "virtualbox"
    OTHER_VIRTUAL = "virtual"  # a hypervisor we cannot name (CPUID hypervisor bit only)


# (DMI field, lowercase substring) -> platform; first match wins.
_DMI_SIGNS: tuple[tuple[str, str, Platform], ...] = (
    ("sys_vendor", "vmware", Platform.VMWARE),
    ("product_name", "vmware", Platform.VMWARE),
    ("sys_vendor", "qemu", Platform.KVM),
    ("product_name", "kvm", Platform.KVM),
    ("sys_vendor", "red hat", Platform.KVM),
    ("sys_vendor", "nutanix", Platform.KVM),
    ("sys_vendor", "openstack", Platform.KVM),
    ("sys_vendor", "microsoft corporation", Platform.HYPERV),
    ("sys_vendor", "xen", Platform.XEN),
    ("sys_vendor", "innotek", Platform.VIRTUALBOX),
    ("product_name", "virtualbox", Platform.VIRTUALBOX),
)

_VMWARE_SERIAL = re.compile(r"^VMware-([0-9a-f ]{23})-([0-9a-f ]{23})$", re.IGNORECASE)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NIL_UUIDS = {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"}


@dataclass(frozen=True)
class Identity:
    platform: Platform
    vendor: str
    product: str
    bios_uuid: str | None  # lowercase, in the hypervisor's own byte order

    @property
    def virtual(self) -> bool:
        return self.platform is not Platform.BARE_METAL

    @property
    def provider_id(self) -> str | None:
        """The Kubernetes providerID form the operator understands, when there is one."""
        if self.bios_uuid is None:
            return None
        if self.platform is Platform.VMWARE:
            return f"{PROVIDER_VSPHERE}{self.bios_uuid}"
        if self.platform is Platform.KVM:
            return f"{PROVIDER_LIBVIRT}{self.bios_uuid}"
        return None


def _read(root: Path, relative: Path | str) -> str:
    try:
        return (root / relative).read_text(errors="replace").strip()
    except OSError:
        return ""


def platform(root: Path = Path("/")) -> Platform:
    """Guest or bare metal, and which hypervisor: DMI first, then /sys/hypervisor, then CPU flags."""
    fields = {name: _read(root, DMI / name).lower() for name in ("sys_vendor", "product_name")}
    for field, sign, found in _DMI_SIGNS:
        if sign in fields[field]:
            return found
    hypervisor_type = _read(root, "sys/hypervisor/type").lower()
    if hypervisor_type == "xen":
        return Platform.XEN
    if hypervisor_type:
        return Platform.OTHER_VIRTUAL
    for line in _read(root, "proc/cpuinfo").splitlines():
        if line.startswith("flags"):
            return (
                Platform.OTHER_VIRTUAL
                if "hypervisor" in line.split(":", 1)[1].split()
                else Platform.BARE_METAL
            )
    return Platform.BARE_METAL


def bios_uuid(root: Path = Path("/"), found: Platform | None = None) -> str | None:
    """The VM's BIOS UUID as its hypervisor reports it (vSphere `config.uuid`), or None.

    On VMware the SMBIOS product_uuid of older virtual hardware has its first three fields
    byte-swapped; product_serial (`VMware-42 1a ...`) carries the bytes in vSphere's order,
    so it wins when present.
    """
    found = found or platform(root)
    if found is Platform.VMWARE:
        match = _VMWARE_SERIAL.match(_read(root, DMI / "product_serial"))
        if match:
            digits = (match.group(1) + match.group(2)).replace(" ", "").lower()
            return _as_uuid(digits)
    value = _read(root, DMI / "product_uuid").lower()
    if _UUID.match(value) and value not in _NIL_UUIDS:
        return value
    return None


def _as_uuid(digits: str) -> str | None:
    if len(digits) != 32:
        return None
    value = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
    return None if value in _NIL_UUIDS else value


def detect(root: Path = Path("/")) -> Identity:
    found = platform(root)
    return Identity(
        platform=found,
        vendor=_read(root, DMI / "sys_vendor"),
        product=_read(root, DMI / "product_name"),
        bios_uuid=bios_uuid(root, found),
    )
