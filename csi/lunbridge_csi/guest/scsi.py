"""The guest's SCSI bus, read and driven through sysfs under a root folder.

- `host_for_pci_slot`: the SCSI host (hostN) of the controller in PCI slot SS of bus 0, from
  the path each /sys/class/scsi_host/hostN symlink points to (`.../0000:00:SS.F/.../hostN`).
- `rescan`: a targeted scan of exactly one channel/target/LUN (`echo 'C T L' > .../scan`),
  milliseconds instead of a wildcard scan of the whole host.
- `wait_for_device`: rescan and wait, bounded, until H:C:T:L has a block device.
- `poll_delays`: how long every wait here sleeps between looks: 5 ms for the first 200 ms
  (a disk a targeted scan found, or a hot-added controller, shows up within milliseconds, and
  NodeStage's time is mostly these waits and the commands), then doubling up to the wait's
  own ceiling (50 ms for a disk, 100 ms for a controller, 200 ms for a re-read of the VPD page),
  so a slow one costs no more looks than before.
- `parse_vpd83` / `device_naas`: the NAA designators of the logical unit from its Device
  Identification VPD page (0x83) as the kernel cached it (`device/vpd_pg83`).
- `devices_with_naa`, `delete_device` (bounded: a dead disk cannot hold it), `device_state`,
  `rescan_size`, `size_bytes`.
- `volume_capacity`: how many lunbridge disks this VM can hold in all (NodeGetInfo's
  max_volumes_per_node, read once when the plugin registers; the scheduler subtracts the
  attached volumes itself). vSphere (the guest shows `vmw_pvscsi`, or vSphere's other SCSI
  controllers): 15 usable units on each of the four SCSI controllers a VM may have, whether
  lunbridge has added them yet or not, less the controllers of other types (LSI Logic,
  BusLogic) and the units that disks lunbridge does not manage hold on the PVSCSI controllers
  (the boot disk, any disk not among the staged volumes' NAAs). KVM (`virtio_scsi`, 256
  targets per controller): a configured cap, `DEFAULT_KVM_MAX_VOLUMES` unless told. A guest
  with neither: 0, which CSI reads as "the CO decides".

Every write goes to a sysfs file; nothing here runs a command or imports grpc.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from lunbridge.errors import InvalidArgument, NotFound, Unavailable
from lunbridge.san import ScsiAddress
from lunbridge.san import naa as normal_naa

SCSI_HOSTS = Path("sys/class/scsi_host")
SCSI_DEVICES = Path("sys/bus/scsi/devices")
BLOCK = Path("sys/block")

# guest drivers of the SCSI controllers lunbridge attaches disks to (`scsi_host/hostN/proc_name`)
PVSCSI = "vmw_pvscsi"
VIRTIO_SCSI = "virtio_scsi"
PVSCSI_UNITS = 15  # vSphere PVSCSI: 16 units, unit 7 is the controller itself
VSPHERE_CONTROLLERS = 4  # SCSI controllers of any type per vSphere VM (buses 0-3)
VSPHERE_OTHER_SCSI = frozenset({"mptspi", "mptsas", "BusLogic"})  # LSI Logic, LSI SAS, BusLogic
# lunbridge disks per KVM guest when not told otherwise (`--kvm-max-volumes`): virtio-scsi has no
# small fixed unit count to read (256 targets per controller), so a cap keeps a node schedulable
DEFAULT_KVM_MAX_VOLUMES = 64

PCI_SLOT = re.compile(r"/pci0000:00/0000:00:([0-9a-f]{2})\.[0-7]/")  # a PCI function on bus 0: its slot

# the waits' looks (`poll_delays`): seconds between them at first, and for how long
FAST_POLL = 0.005
FAST_FOR = 0.2

# designator types and associations of SPC-4 7.8.6
DESIGNATOR_NAA = 3
ASSOCIATION_LU = 0


Address = ScsiAddress  # channel, target and LUN of a disk on one SCSI host


def hctl(host: str, address: Address) -> str:
    """`H:C:T:L` of `address` on SCSI host `host` (hostN)."""
    return f"{host_number(host)}:{address.channel}:{address.target}:{address.lun}"


@dataclass(frozen=True)
class Designator:
    code_set: int
    association: int
    type: int
    value: bytes

    @property
    def naa(self) -> str | None:
        """`naa.<hex>` for an NAA designator of the logical unit, else None."""
        if self.type != DESIGNATOR_NAA or self.association != ASSOCIATION_LU:
            return None
        return f"naa.{self.value.hex()}"


def host_number(host: str) -> int:
    if not re.fullmatch(r"host\d+", host):
        raise InvalidArgument(f"{host!r} is not a SCSI host name (hostN)")
    return int(host[4:])


def hosts_by_pci_slot(root: Path) -> dict[int, str]:
    """PCI slot (on bus 0) → hostN, for every SCSI host that sits on a PCI function of bus 0."""
    found: dict[int, str] = {}
    folder = root / SCSI_HOSTS
    if not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir(), key=lambda p: _natural(p.name)):
        if match := PCI_SLOT.search(_device_path(entry)):
            found.setdefault(int(match.group(1), 16), entry.name)
    return found


def _device_path(link: Path) -> str:
    """Where the class link `link` leads. Its own text when that names a PCI function: sysfs
    writes the whole path under devices/ into a class link (`../../devices/pci0000:00/...`),
    with no link along it, so one readlink does what resolving it component by component does
    (about 5 ms a host in a TCG guest, on NodeStage's path); else the resolved path."""
    try:
        text = os.readlink(link)
    except OSError:
        text = ""
    return text if PCI_SLOT.search(text) else str(link.resolve())


def host_for_pci_slot(root: Path, slot: int) -> str | None:
    return hosts_by_pci_slot(root).get(slot)


def _natural(name: str) -> tuple[str, int]:
    digits = re.search(r"\d+$", name)
    return (name[: digits.start()] if digits else name, int(digits.group()) if digits else -1)


async def _write(path: Path, text: str) -> None:
    """Write a sysfs attribute (the kernel may block in the write, e.g. a scan: off the loop)."""

    def write() -> None:
        with path.open("w") as handle:
            handle.write(text)

    await asyncio.to_thread(write)


async def rescan(root: Path, host: str, address: Address) -> None:
    """Scan exactly one channel/target/LUN of `host`."""
    scan = root / SCSI_HOSTS / host / "scan"
    if not scan.exists():
        raise NotFound(f"SCSI host {host} has no {scan}; is the controller still there?")
    try:
        await _write(scan, f"{address.channel} {address.target} {address.lun}")
    except OSError as err:
        raise Unavailable(f"targeted rescan of {host} {address} failed: {err}") from err


def block_device_at(root: Path, hctl: str) -> str | None:
    """The block device name (sdX) of SCSI device H:C:T:L, once the kernel has registered it:
    the SCSI device's `block/sdX` shows a moment before `/sys/block/sdX` (and its VPD pages)."""
    folder = root / SCSI_DEVICES / hctl / "block"
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return None
    return names[0] if names and (root / BLOCK / names[0]).exists() else None


def poll_delays(ceiling: float, fast: float = FAST_POLL, fast_for: float = FAST_FOR) -> Iterator[float]:
    """The seconds to sleep before each next look at something about to change: `fast` until
    `fast_for` seconds of sleeps have passed, then twice the last sleep each time, at most
    `ceiling` (a `ceiling` below `fast` is used from the start). Endless: the caller bounds it."""
    delay = min(fast, ceiling)
    for _ in range(round(fast_for / delay)):
        yield delay
    while True:
        delay = min(delay * 2, ceiling)
        yield delay


async def wait_for_host(root: Path, slot: int, within: float, interval: float = 0.1) -> str:
    """The SCSI host of PCI slot `slot`, waiting (bounded) for a hot-added controller; looks
    as `poll_delays(interval)` says."""
    deadline = time.monotonic() + within
    delays = poll_delays(interval)
    while (host := host_for_pci_slot(root, slot)) is None:
        if time.monotonic() >= deadline:
            raise NotFound(
                f"no SCSI host in PCI slot {slot} after {within:g}s "
                f"(hosts by slot: {hosts_by_pci_slot(root)}); is the controller attached to this VM?"
            )
        await asyncio.sleep(next(delays))
    return host


async def wait_for_device(
    root: Path,
    host: str,
    address: Address,
    within: float,
    interval: float = 0.05,
    rescan_every: float = 1.0,
) -> str:
    """Rescan exactly `address` on `host` and wait (bounded) for its block device; sdX. Scans
    again every `rescan_every` seconds; looks as `poll_delays(interval)` says."""
    at = hctl(host, address)
    if (found := block_device_at(root, at)) is not None:
        return found
    deadline = time.monotonic() + within
    delays = poll_delays(interval)
    next_scan = 0.0
    while True:
        now = time.monotonic()
        if now >= next_scan:
            await rescan(root, host, address)
            next_scan = now + rescan_every
            if (found := block_device_at(root, at)) is not None:
                return found
        if now >= deadline:
            raise NotFound(
                f"no disk at {at} ({host}, address {address}) after a targeted rescan and {within:g}s; "
                "is the LUN attached to this VM at that address?"
            )
        await asyncio.sleep(next(delays))
        if (found := block_device_at(root, at)) is not None:
            return found


def parse_vpd83(page: bytes) -> list[Designator]:
    """The designation descriptors of a Device Identification VPD page (0x83)."""
    if len(page) < 4 or page[1] != 0x83:
        raise InvalidArgument(f"not a VPD page 0x83 ({len(page)} bytes, page code {page[1:2].hex() or '-'})")
    end = min(len(page), 4 + int.from_bytes(page[2:4], "big"))
    found: list[Designator] = []
    offset = 4
    while offset + 4 <= end:
        length = page[offset + 3]
        value = page[offset + 4 : offset + 4 + length]
        if len(value) < length:
            break  # a truncated descriptor: ignore it rather than guess
        found.append(
            Designator(
                code_set=page[offset] & 0x0F,
                association=(page[offset + 1] >> 4) & 0x03,
                type=page[offset + 1] & 0x0F,
                value=bytes(value),
            )
        )
        offset += 4 + length
    return found


def naas_in_vpd83(page: bytes) -> list[str]:
    return [naa for designator in parse_vpd83(page) if (naa := designator.naa) is not None]


def device_naas(root: Path, device: str) -> list[str]:
    """The NAA ids the disk `device` (sdX) carries in its VPD page 0x83; [] when it has none.

    A kernel without the cached page falls back to `device/wwid` when that is an NAA id.
    """
    return _naas_at(root / BLOCK / device / "device")


def _naas_at(folder: Path) -> list[str]:
    """The NAA ids of the SCSI device in sysfs folder `folder` (see `device_naas`)."""
    try:
        page = (folder / "vpd_pg83").read_bytes()
    except OSError:
        page = b""
    if page:
        return naas_in_vpd83(page)
    try:
        wwid = (folder / "wwid").read_text().strip().lower()
    except OSError:
        return []
    return [wwid] if wwid.startswith("naa.") else []


def devices_with_naa(root: Path, naa: str) -> list[str]:
    """Every SCSI disk (sdX) of this guest that carries `naa`."""
    wanted = normal_naa(naa)
    folder = root / BLOCK
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return [
        name for name in names if (folder / name / "device").exists() and wanted in device_naas(root, name)
    ]


async def delete_device(root: Path, device: str, within: float = 10.0) -> bool:
    """Remove the SCSI device of `device` (sdX) from the guest's kernel; False if already gone.

    The kernel flushes the disk's cache before it lets the device go; on a disk whose I/O
    hangs that write waits for the SCSI timeouts, so after `within` seconds the removal is left
    to finish in the kernel (the write goes on in its thread) and this returns."""
    delete = root / BLOCK / device / "device" / "delete"
    if not delete.exists():
        return False
    try:
        await asyncio.wait_for(_write(delete, "1"), within)
    except FileNotFoundError:
        return False
    except TimeoutError:
        return True
    except OSError as err:
        raise Unavailable(f"deleting SCSI device {device} failed: {err}") from err
    deadline = time.monotonic() + within
    for delay in poll_delays(0.05):  # the block device goes a moment after the write
        if not (root / BLOCK / device).exists() or time.monotonic() >= deadline:
            break
        await asyncio.sleep(delay)
    return True


async def reread(root: Path, device: str) -> None:
    """Ask the disk `device` (sdX) again for its capacity and VPD pages (`device/rescan`)."""
    path = root / BLOCK / device / "device" / "rescan"
    if not path.exists():
        raise NotFound(f"disk {device} is not in {root / BLOCK}")
    try:
        await _write(path, "1")
    except OSError as err:
        raise Unavailable(f"rescan of disk {device} failed: {err}") from err


async def rescan_size(root: Path, device: str) -> int:
    """Ask the disk for its capacity again; its size in bytes afterwards."""
    await reread(root, device)
    return size_bytes(root, device)


async def recheck_naas(
    root: Path, device: str, wanted: str, within: float, interval: float = 0.2
) -> list[str]:
    """The NAA ids of `device`, asked of the disk again until `wanted` is among them or `within`
    has passed. A disk can show no VPD page for a moment after it appears, and the kernel keeps
    the page of a disk whose LUN the hypervisor detached until it is asked again, while the
    LUN now at that address may be another one. Asks as `poll_delays(interval)` says."""
    deadline = time.monotonic() + within
    delays = poll_delays(interval)
    while True:
        await reread(root, device)
        carried = device_naas(root, device)
        if normal_naa(wanted) in carried or time.monotonic() >= deadline:
            return carried
        await asyncio.sleep(next(delays))


def size_bytes(root: Path, device: str) -> int:
    try:
        return int((root / BLOCK / device / "size").read_text().strip()) * 512
    except (OSError, ValueError) as err:
        raise NotFound(f"cannot read the size of disk {device}: {err}") from err


def host_driver(root: Path, host: str) -> str:
    try:
        return (root / SCSI_HOSTS / host / "proc_name").read_text().strip()
    except OSError:
        return ""


def device_state(root: Path, device: str) -> str:
    """The SCSI device state of disk `device` (sdX): `running`, `offline`, `blocked`...; "" when
    the disk is gone."""
    try:
        return (root / BLOCK / device / "device" / "state").read_text().strip()
    except OSError:
        return ""


def volume_capacity(
    root: Path, managed: Collection[str], kvm_max_volumes: int = DEFAULT_KVM_MAX_VOLUMES
) -> int:
    """How many lunbridge disks this VM can hold in all (the module docstring says how);
    `managed`: the NAAs of the volumes staged here (their units are lunbridge's)."""
    folder = root / SCSI_HOSTS
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    drivers = {host_number(name): host_driver(root, name) for name in names if re.fullmatch(r"host\d+", name)}
    total = kvm_max_volumes if VIRTIO_SCSI in drivers.values() else 0
    pvscsi = {number for number, driver in drivers.items() if driver == PVSCSI}
    others = sum(1 for driver in drivers.values() if driver in VSPHERE_OTHER_SCSI)
    if pvscsi or others:
        total += PVSCSI_UNITS * max(0, VSPHERE_CONTROLLERS - others) - len(_held(root, pvscsi, managed))
    return max(total, 0)


def _held(root: Path, hosts: Collection[int], managed: Collection[str]) -> set[tuple[int, int, int]]:
    """(host, channel, target) of every unit on `hosts` that a device holds whose NAA is not
    `managed`: a disk lunbridge does not manage, a CD-ROM, anything else at that unit."""
    wanted = {normal_naa(naa) for naa in managed}
    devices = root / SCSI_DEVICES
    held: set[tuple[int, int, int]] = set()
    for entry in devices.iterdir() if devices.is_dir() else ():
        if not re.fullmatch(r"\d+:\d+:\d+:\d+", entry.name):
            continue
        host, channel, target, _ = (int(part) for part in entry.name.split(":"))
        if host in hosts and not wanted & set(_naas_at(entry)):
            held.add((host, channel, target))
    return held
