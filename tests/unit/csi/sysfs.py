"""A guest's sysfs as the node plugin reads it, built under a folder: SCSI hosts by PCI slot
and driver, disks with their VPD page 0x83, and the layout of a vSphere VM's PVSCSI
controllers, FC HBAs with the remote ports they are logged in to. Shared by the unit tests of
the guest helpers and the node service, and by the integration test that checks the node's
volume count against the simulator's VM layout."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

from lunbridge.san import wwn
from lunbridge_csi.guest import fc, scsi
from lunbridge_csi.guest.initiators import FC_HOSTS

NAA = "naa.6001405f3a1b2c3d4e5f60718293a4b5"


def vpd83(*descriptors: tuple[int, int, int, bytes]) -> bytes:
    """A VPD page 0x83 of (code set, association, type, value) descriptors."""
    body = b"".join(
        bytes([0x10 | code_set, (association << 4) | kind, 0, len(value)]) + value
        for code_set, association, kind, value in descriptors
    )
    return bytes([0, 0x83]) + len(body).to_bytes(2, "big") + body


# what tgtd's LUNs answer: a T10 vendor id, the NAA of the LU, and a relative port id
TGT_PAGE = vpd83(
    (2, 0, 1, b"IET     00010001"),
    (1, 0, 3, bytes.fromhex(NAA[4:])),
    (1, 1, 4, bytes.fromhex("00000001")),
)


def add_host(root: Path, host: str, pci: str, driver: str = "virtio_scsi") -> None:
    """SCSI host `host` (hostN) of a controller at PCI address `pci`, driven by `driver`."""
    real = root / "sys/devices/pci0000:00" / pci / "virtio2" / host / "scsi_host" / host
    real.mkdir(parents=True)
    (real / "scan").write_text("")
    (real / "proc_name").write_text(f"{driver}\n")
    link = root / scsi.SCSI_HOSTS / host
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(real, link.parent))


def add_disk(root: Path, hctl: str, name: str, page: bytes | None = TGT_PAGE) -> None:
    """A SCSI disk `name` (sdX) at H:C:T:L `hctl` whose VPD page 0x83 is `page` (None: none)."""
    device = root / "sys/devices/scsi" / hctl
    (device / "block" / name).mkdir(parents=True)
    for attribute in ("delete", "rescan"):
        (device / attribute).write_text("")
    if page is not None:
        (device / "vpd_pg83").write_bytes(page)
    (root / scsi.SCSI_DEVICES).mkdir(parents=True, exist_ok=True)
    (root / scsi.SCSI_DEVICES / hctl).symlink_to(device)
    (device / "state").write_text("running\n")
    block = root / scsi.BLOCK / name
    block.mkdir(parents=True)
    (block / "device").symlink_to(device)
    (block / "size").write_text("65536\n")


def naa_page(naa: str) -> bytes:
    """The VPD page 0x83 of a LUN with NAA `naa` (as tgtd's, without the other descriptors)."""
    return vpd83((1, 0, 3, bytes.fromhex(naa.removeprefix("naa."))))


def sd_name(index: int) -> str:
    """The kernel's name of the `index`-th SCSI disk: sda … sdz, sdaa …"""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"sd{letters}"


def pvscsi_guest(root: Path, units: Sequence[Collection[int]], first_disk: int = 0) -> list[str]:
    """The SCSI view of a vSphere guest: one vmw_pvscsi host per controller (host0 in PCI slot
    160, the first controller's slot on vCenter and on the lab's simulator, then 161…), and a
    disk with no NAA (a VMDK) at each unit of `units[controller]` (target = unit, LUN 0). The
    disks' names (sdX from `first_disk` on)."""
    names: list[str] = []
    for number, taken in enumerate(units):
        add_host(root, f"host{number}", f"0000:00:{160 + number:02x}.0", driver=scsi.PVSCSI)
        for unit in sorted(taken):
            names.append(sd_name(first_disk + len(names)))
            add_disk(root, f"{number}:0:{unit}:0", names[-1], page=None)
    return names


def _device_of(root: Path, host: str) -> Path:
    """The device folder of SCSI host `host` (…/hostN), where the FC transport puts its objects."""
    return Path(os.path.realpath(root / scsi.SCSI_HOSTS / host)).parent.parent


def _port_name(wwpn: str) -> str:
    """A WWPN as the FC transport class shows it: `0x` and 16 lowercase hex digits."""
    return "0x" + wwn(wwpn).replace(":", "") + "\n"


def add_fc_host(root: Path, host: str, pci: str, wwpn: str, driver: str = "qla2xxx") -> None:
    """An FC HBA: SCSI host `host` (hostN) of the card at PCI address `pci` and its fc_host,
    whose port_name is `wwpn` (any spelling)."""
    add_host(root, host, pci, driver=driver)
    real = _device_of(root, host) / "fc_host" / host
    real.mkdir(parents=True)
    (real / "port_name").write_text(_port_name(wwpn))
    link = root / FC_HOSTS / host
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(real)


def add_rport(
    root: Path,
    host: str,
    number: int,
    wwpn: str,
    target_id: int,
    state: str = "Online",
    roles: str = "FCP Target",
    channel: int = 0,
) -> str:
    """Remote port `number` of FC host `host` (added with `add_fc_host`): rport-H:B-R below the
    host with its fc_remote_ports attributes and, for a target id of 0 or more, the SCSI target
    folder targetH:B:T the kernel puts below it. Its name (rport-H:B-R)."""
    h = scsi.host_number(host)
    name = f"rport-{h}:{channel}-{number}"
    rport = _device_of(root, host) / name
    if target_id >= 0:
        (rport / f"target{h}:{channel}:{target_id}").mkdir(parents=True)
    real = rport / "fc_remote_ports" / name
    real.mkdir(parents=True)
    (real / "port_name").write_text(_port_name(wwpn))
    for attribute, text in (("port_state", state), ("roles", roles), ("scsi_target_id", str(target_id))):
        (real / attribute).write_text(f"{text}\n")
    link = root / fc.FC_REMOTE_PORTS / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(real)
    return name
