"""A VirtualDisk used inside the KVM guest by hand, as the node plugin's stage would: a
targeted rescan of the address status records, the device found by its NAA, a file system
made, mounted, one file of random data written and synced; its digest read back from the
disk (page cache dropped) to compare after a restart, a snapshot or a restore."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from lunbridge.models import VirtualDiskStatus
from lunbridge.san import ScsiAddress
from tests.integration.libvirt.guestscsi import delete_disk, rescan, scsi_hosts
from tests.integration.libvirt.guestscsi import disks as guest_disks
from tests.integration.operator import observe
from tests.lab import libvirt as libvirt_lab


@dataclass(frozen=True)
class Staged:
    """A disk found in the guest by its NAA, formatted, mounted, with one synced file on it."""

    sd: str
    mount: str
    digest: str


def find_in_guest(guest: libvirt_lab.LibvirtGuest, disk: dict[str, Any]) -> str:
    """The guest's `sdX` of a Ready disk: a targeted rescan of its recorded address, then the
    device whose NAA is the disk's."""
    naa = disk["status"]["lun"]["naa"]
    attachment = VirtualDiskStatus.from_dict(disk["status"]).attachment
    assert attachment is not None
    assert attachment.pci_slot is not None
    assert attachment.guest_address is not None

    def found() -> str | None:
        host = scsi_hosts(guest).get(attachment.pci_slot or 0)
        if host is None:
            return None
        address = ScsiAddress.parse(attachment.guest_address or "")
        rescan(guest, host, address)
        known = guest_disks(guest)
        if naa in known:
            return known[naa][0]
        # a disk of an earlier LUN still sits at that address (its detach not yet seen by the
        # guest): gone, as the node plugin's stage does, and the next try rescans again
        hctl = f"{host.removeprefix('host')}:{address[0]}:{address[1]}:{address[2]}"
        for sd, at in known.values():
            if at == hctl:
                print(f"{sd} at {hctl} is not {naa}: removed from the guest before the next rescan")
                delete_disk(guest, sd)
        return None

    sd: str = observe.eventually(found, 60, f"disk {naa} in the guest", every=1)
    return sd


def stage_in_guest(guest: libvirt_lab.LibvirtGuest, disk: dict[str, Any]) -> Staged:
    """What the node plugin's stage does, by hand: targeted rescan, find by NAA, mkfs, mount."""
    sd = find_in_guest(guest, disk)
    mount = f"/mnt/lunbridge-it-{uuid.uuid4().hex[:8]}"
    guest.run(
        f"mkfs.ext4 -q -F /dev/{sd} && mkdir -p {mount} && mount -t ext4 /dev/{sd} {mount} && "
        f"dd if=/dev/urandom of={mount}/data bs=64k count=32 2>/dev/null && sync",
        timeout=120,
        check=True,
    )
    return Staged(sd, mount, read_digest(guest, mount))


def mount_in_guest(guest: libvirt_lab.LibvirtGuest, disk: dict[str, Any]) -> Staged:
    """Mount a disk that holds a file system already (a restore, a clone): nothing is made."""
    sd = find_in_guest(guest, disk)
    mount = f"/mnt/lunbridge-it-{uuid.uuid4().hex[:8]}"
    guest.run(f"mkdir -p {mount} && mount -t ext4 /dev/{sd} {mount}", timeout=120, check=True)
    return Staged(sd, mount, read_digest(guest, mount))


def read_digest(guest: libvirt_lab.LibvirtGuest, mount: str) -> str:
    """sha256 of the file as read from the disk (the page cache dropped first)."""
    out = guest.run(
        f"sync; echo 3 > /proc/sys/vm/drop_caches; sha256sum {mount}/data", timeout=120, check=True
    ).stdout
    return out.split()[0]


def unstage(guest: libvirt_lab.LibvirtGuest, staged: Staged) -> None:
    guest.run(f"umount {staged.mount}; rmdir {staged.mount}", timeout=60)
    if staged.sd in {sd for sd, _ in guest_disks(guest).values()}:
        delete_disk(guest, staged.sd)


def digest_or_none(guest: libvirt_lab.LibvirtGuest, mount: str) -> str | None:
    try:
        return read_digest(guest, mount)
    except Exception:  # the read fails while QEMU is still logging in again
        return None
