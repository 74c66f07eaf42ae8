"""What the libvirt tests read from the guest and from tgtd themselves, never through lunbridge:
the guest's SCSI hosts by PCI slot, its disks by WWID and address, a targeted rescan, and the
initiators logged in to tgtd's targets (I_T nexus)."""

from __future__ import annotations

import re

from tests.lab.libvirt import LibvirtGuest
from tests.lab.tgt import Tgt

_PCI = re.compile(r"/pci0000:00/0000:00:([0-9a-f]{2})\.0/")


def scsi_hosts(guest: LibvirtGuest) -> dict[int, str]:
    """PCI slot → hostN of every SCSI host in the guest (from each host's sysfs path)."""
    out = guest.run(
        "for h in /sys/class/scsi_host/host*; do echo ${h##*/} $(readlink -f $h); done",
        timeout=30,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, path = line.split(maxsplit=1)
        match = _PCI.search(path)
        if match:
            found[int(match.group(1), 16)] = name
    return found


def disks(guest: LibvirtGuest) -> dict[str, tuple[str, str]]:
    """wwid → (sdX, H:C:T:L) of every SCSI disk the guest kernel knows."""
    out = guest.run(
        "for d in /sys/block/sd*; do [ -e $d/device/wwid ] && "
        "echo ${d##*/} $(cat $d/device/wwid) $(basename $(readlink -f $d/device)); done; true",
        timeout=30,
        check=True,
    ).stdout
    return {wwid: (name, hctl) for name, wwid, hctl in (line.split() for line in out.splitlines())}


def rescan(guest: LibvirtGuest, host: str, address: tuple[int, int, int]) -> None:
    """The targeted rescan the node plugin does: exactly channel, target and LUN of one host."""
    channel, target, lun = address
    guest.run(f"echo '{channel} {target} {lun}' > /sys/class/scsi_host/{host}/scan", timeout=60, check=True)


def vpd83_hex(guest: LibvirtGuest, sd: str) -> str:
    """The disk's Device Identification VPD page (0x83) as the guest kernel read it, in hex."""
    out = guest.run(f"od -An -v -tx1 /sys/block/{sd}/device/vpd_pg83", timeout=30, check=True).stdout
    return "".join(out.split())


def delete_disk(guest: LibvirtGuest, sd: str) -> None:
    guest.run(f"echo 1 > /sys/block/{sd}/device/delete", timeout=30, check=True)


def nexus_initiators(tgt: Tgt, target_prefix: str) -> list[str]:
    """Initiators with an I_T nexus (a logged-in session) on tgtd targets under `target_prefix`."""
    shown = tgt.adm("--op", "show", "--mode", "target").stdout
    found: list[str] = []
    current = ""
    for line in shown.splitlines():
        if line.startswith("Target "):
            current = line.split(": ", 1)[1].strip()
        elif line.strip().startswith("Initiator:") and current.startswith(target_prefix):
            found.append(line.split(":", 1)[1].split()[0])
    return found
