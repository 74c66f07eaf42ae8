"""The guest's end of a volume's chain, for NodeGetVolumeStats' volume_condition: the disk that
carries the volume's NAA is here, its SCSI path is up, and its filesystem is mounted, writable
and free of recorded errors. The operator's re-check covers the links before the guest (LUN,
map, hosts, RDM; `lunbridge_operator.reconcile.health`); this covers the links the hypervisor
cannot see.

Each abnormal condition's message starts with the name of the link that broke (`DeviceMissing:
...`), as the controller's do. Read from sysfs and mountinfo under `root` only: no command, no
I/O to the disk, so a dead disk cannot make the kubelet's periodic stats call hang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lunbridge_csi.guest import mount, scsi

DEVICE_MISSING = "DeviceMissing"  # no disk of the NAA: the RDM removed, the device deleted
DEVICE_NOT_RUNNING = "DeviceNotRunning"  # the SCSI device offline, blocked: its path is down
NOT_MOUNTED = "NotMounted"
FILESYSTEM_READ_ONLY = "FilesystemReadOnly"  # remounted read-only (by the kernel after an error, or by hand)
FILESYSTEM_ERRORS = "FilesystemErrors"  # ext4 recorded errors in its superblock
FILESYSTEM_UNREADABLE = "FilesystemUnreadable"  # statfs fails (an XFS shut down, I/O errors)
EXT4_SYSFS = Path("sys/fs/ext4")


@dataclass(frozen=True)
class Condition:
    """`abnormal`, and `message`: for an abnormal one `<link>: <what was found>`."""

    abnormal: bool
    message: str


def _broken(link: str, message: str) -> Condition:
    return Condition(True, f"{link}: {message}")


def disk_of(root: Path, naa: str, recorded: str) -> tuple[str | None, Condition | None]:
    """(the disk sdX that carries `naa` now, or None; the device's condition when abnormal).
    `recorded` is the disk the volume was staged on (kernel names can move)."""
    if naa in scsi.device_naas(root, recorded):
        device = recorded
    else:
        found = scsi.devices_with_naa(root, naa)
        if not found:
            message = f"no disk in this guest carries {naa} (its RDM was removed, or the disk was deleted)"
            return None, _broken(DEVICE_MISSING, message)
        device = found[0]
    state = scsi.device_state(root, device)
    if state != "running":
        said = f"disk {device} ({naa}) is {state or 'gone'}: its path is down"
        return device, _broken(DEVICE_NOT_RUNNING, said)
    return device, None


def filesystem_of(root: Path, path: str, device: str | None, read_only_asked: bool) -> Condition | None:
    """The filesystem mounted at `path` (the publish target or staging path), when abnormal:
    nothing mounted; read-only though it was mounted writable (`read_only_asked` False; a
    read-only publish is read-only per mount, its filesystem stays writable); ext4's recorded
    error count above 0 (cleared by fsck)."""
    entry = mount.mounted_at(root, path)
    if entry is None:
        return _broken(NOT_MOUNTED, f"nothing is mounted at {path}")
    if "ro" in entry.super_options and not read_only_asked:
        return _broken(
            FILESYSTEM_READ_ONLY,
            f"the {entry.fs_type} filesystem on {entry.source} is read-only: the kernel remounts it so "
            "after an I/O or consistency error (see the guest's kernel log), or it was remounted by hand",
        )
    name = os.path.basename(entry.source) if entry.source.startswith("/dev/") else device
    if entry.fs_type == "ext4" and name:
        try:
            errors = int((root / EXT4_SYSFS / name / "errors_count").read_text().strip() or 0)
        except (OSError, ValueError):
            errors = 0
        if errors:
            return _broken(
                FILESYSTEM_ERRORS,
                f"the ext4 filesystem on {entry.source} recorded {errors} error(s); check it with fsck "
                "(unmounted: the pod stopped)",
            )
    return None


def condition(
    root: Path, path: str, *, naa: str | None, recorded: str | None, filesystem: bool, read_only_asked: bool
) -> tuple[str | None, Condition]:
    """(the volume's disk now, or None; its condition): the device first (`disk_of`, when the
    volume's NAA is known), then for a `filesystem` volume its mount at `path` (`filesystem_of`).
    Normal: the message says what was checked."""
    device = recorded
    if naa is not None and recorded is not None:
        device, broken = disk_of(root, naa, recorded)
        if broken is not None:
            return device, broken
    if filesystem:
        broken = filesystem_of(root, path, device, read_only_asked)
        if broken is not None:
            return device, broken
    said = f"disk {device} carries {naa} and its path is up" if naa else "the volume is here"
    if filesystem:
        said += "; its filesystem is mounted, with no error recorded"
    return device, Condition(False, said)


def unreadable(path: str, error: OSError) -> Condition:
    """statfs of a mounted volume failed: its filesystem cannot be used."""
    return _broken(FILESYSTEM_UNREADABLE, f"statfs of {path} fails: {error.strerror or error}")
