"""Finding a LUN behind the storage server's FC target ports on a node that logs in with its
own FC HBAs (`initiator` mode, see `initiators`): a targeted scan through the kernel's FC
transport class, never a scan of a whole bus, then the block device of each path.

The FC transport class shows each remote port (rport) an HBA has logged in to:

    /sys/class/fc_remote_ports/rport-H:B-R/   (H: SCSI host number, B: channel, R: rport number)
        port_name       0x500a098012345678   the remote port's WWPN
        port_state      Online | Marginal | Blocked | Not Present | ...
        roles           FCP Target[, FCP Initiator]
        scsi_target_id  3                    -1 while it has no SCSI target (kept if the roles change)

The SCSI target of an FCP target rport is targetH:B:<scsi_target_id>, so writing
`B <scsi_target_id> <lun>` to /sys/class/scsi_host/hostH/scan (`scsi.rescan`) scans exactly
that LUN behind exactly that port; the kernel scans only rports in state Online or Marginal
that have a target id. The disk then shows as /sys/bus/scsi/devices/H:B:T:L/block/sdX
(`scsi.block_device_at`). Two HBAs zoned to the target (or a target with several ports) give
one sdX per path, all carrying the LUN's NAA: multipath's to assemble, not this module's.

Every function reads and writes files under a root folder (tests feed it fixture trees);
nothing here runs a command or imports grpc.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from lunbridge.errors import Conflict, InvalidArgument, Unavailable
from lunbridge.san import wwn
from lunbridge_csi.guest import scsi

log = logging.getLogger(__name__)

FC_REMOTE_PORTS = Path("sys/class/fc_remote_ports")

FCP_TARGET = "FCP Target"
# the port states in which the kernel's targeted scan (fc_user_scan) scans an rport
USABLE_STATES = frozenset({"Online", "Marginal"})

_RPORT = re.compile(r"rport-(\d+):(\d+)-(\d+)")


@dataclass(frozen=True)
class RemotePort:
    """One FC remote port an HBA of this node is logged in to."""

    name: str  # rport-H:B-R
    host: str  # the SCSI host of the HBA: hostH
    channel: int  # B
    target_id: int  # scsi_target_id: the T of the SCSI target behind the port, -1 when none
    port_name: str  # the remote port's WWPN, canonical (`lunbridge.san.wwn`: 50:0a:09:...)
    state: str  # port_state: Online, Marginal, Blocked, Not Present...; "" when unreadable
    roles: tuple[str, ...]  # FCP Target, FCP Initiator...

    @property
    def usable(self) -> bool:
        """An FCP target with a SCSI target id, in a state the kernel scans."""
        return FCP_TARGET in self.roles and self.target_id >= 0 and self.state in USABLE_STATES

    def address(self, lun_id: int) -> scsi.Address:
        """Channel, target and LUN `lun_id` behind this port on its SCSI host."""
        return scsi.Address(self.channel, self.target_id, lun_id)

    def hctl(self, lun_id: int) -> str:
        """`H:B:T:L` of LUN `lun_id` behind this port."""
        return scsi.hctl(self.host, self.address(lun_id))

    def __str__(self) -> str:
        roles = ", ".join(self.roles) or "no roles"
        return f"{self.name} ({self.port_name}, {self.state or 'no state'}, {roles})"


def remote_ports(root: Path) -> list[RemotePort]:
    """Every FC remote port in /sys/class/fc_remote_ports, by host, channel and target id; an
    entry that is not named rport-H:B-R or whose port_name is not a WWN is skipped."""
    folder = root / FC_REMOTE_PORTS
    found: list[RemotePort] = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = _RPORT.fullmatch(entry.name)
        if match is None:
            continue
        try:
            port_name = wwn(_read(entry / "port_name"))
        except InvalidArgument:
            continue
        try:
            target_id = int(_read(entry / "scsi_target_id"))
        except ValueError:
            target_id = -1
        roles = tuple(role.strip() for role in _read(entry / "roles").split(",") if role.strip())
        found.append(
            RemotePort(
                name=entry.name,
                host=f"host{match.group(1)}",
                channel=int(match.group(2)),
                target_id=target_id,
                port_name=port_name,
                state=_read(entry / "port_state"),
                roles=roles,
            )
        )
    return sorted(found, key=lambda port: (scsi.host_number(port.host), port.channel, port.target_id))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def wanted_wwpns(target_wwpns: Collection[str]) -> list[str]:
    """The storage server's target port WWPNs, canonical and sorted; InvalidArgument when there
    are none or one is not a WWN."""
    if not target_wwpns:
        raise InvalidArgument("no FC target WWPN given: which storage server ports hold the LUN?")
    return sorted({wwn(name) for name in target_wwpns})


def matching_ports(root: Path, target_wwpns: Collection[str]) -> list[RemotePort]:
    """The usable remote ports (`RemotePort.usable`) whose WWPN is one of `target_wwpns` (any
    spelling `lunbridge.san.wwn` takes), one a path; InvalidArgument for a bad or empty list."""
    wanted = set(wanted_wwpns(target_wwpns))
    return [port for port in remote_ports(root) if port.usable and port.port_name in wanted]


async def scan(root: Path, ports: Sequence[RemotePort], lun_id: int) -> None:
    """Scan LUN `lun_id` behind each of `ports`: `B T L` to its host's scan file, nothing else
    (B: the port's channel, T: its scsi_target_id).

    InvalidArgument for a negative LUN or a port without a target id; NotFound when a port's
    SCSI host has no scan file; Unavailable when the kernel refuses the write."""
    _check_lun(lun_id)
    for port in ports:
        if port.target_id < 0:
            raise InvalidArgument(f"FC remote port {port} is not an FCP target with a SCSI target id")
    # side by side: the kernel's scan of a port that answers slowly holds only its own write
    await asyncio.gather(*(scsi.rescan(root, port.host, port.address(lun_id)) for port in ports))


def _check_lun(lun_id: int) -> None:
    if lun_id < 0:
        raise InvalidArgument(f"LUN id {lun_id} is negative")


def devices_at(root: Path, ports: Sequence[RemotePort], lun_id: int) -> list[str]:
    """The block device (sdX) of LUN `lun_id` behind each of `ports` that shows one yet, in the
    order of `ports`: one device a path.

    Conflict when two of them carry different NAAs (a path that still shows another LUN at that
    number); a device without an NAA yet is left to the caller's check against the published
    NAA, like any single disk."""
    found = [(port, device) for port in ports if (device := scsi.block_device_at(root, port.hctl(lun_id)))]
    carried = {device: frozenset(scsi.device_naas(root, device)) for _, device in found}
    if len({naas for naas in carried.values() if naas}) > 1:
        paths = "; ".join(
            f"{device} at {port.hctl(lun_id)} via {port.port_name}: "
            + (", ".join(sorted(carried[device])) or "no NAA")
            for port, device in found
        )
        raise Conflict(
            f"the paths to LUN {lun_id} show different disks ({paths}); nothing was written to them"
        )
    return [device for _, device in found]


async def wait_for_devices(
    root: Path,
    target_wwpns: Collection[str],
    lun_id: int,
    within: float,
    interval: float = 0.05,
    rescan_every: float = 1.0,
    settle: float = 2.0,
) -> list[str]:
    """Scan LUN `lun_id` behind the target ports `target_wwpns` and wait (bounded) for its block
    devices: sdX, one a path, in the order of the ports (host, channel, target id).

    Within `within` seconds: returns once every usable port to those WWPNs shows the disk, or
    `settle` seconds after the first path did (a path whose port does not present the LUN is
    logged, not waited for). Only ports that show no disk yet are scanned: one that comes
    online meanwhile at once, the others again every `rescan_every` seconds.

    Unavailable after `within` seconds without a disk, naming the wanted WWPNs and the remote
    ports seen; InvalidArgument for a bad WWPN or LUN id; NotFound when a port's SCSI host has no
    scan file; Conflict when the paths show different NAAs (`devices_at`)."""
    wanted = wanted_wwpns(target_wwpns)
    _check_lun(lun_id)
    deadline = time.monotonic() + within
    scanned: dict[str, float] = {}  # rport name -> when its scan was written last
    first_found: float | None = None
    while True:
        now = time.monotonic()
        ports = matching_ports(root, wanted)
        due = [
            port
            for port in _missing(root, ports, lun_id)
            if port.name not in scanned or now - scanned[port.name] >= rescan_every
        ]
        if due:
            await scan(root, due, lun_id)
            scanned.update((port.name, now) for port in due)
        devices = devices_at(root, ports, lun_id)
        if devices:
            first_found = now if first_found is None else first_found
            if len(devices) == len(ports):
                return devices
            if now >= min(first_found + settle, deadline):
                missing = ", ".join(
                    f"{p.hctl(lun_id)} ({p.port_name})" for p in _missing(root, ports, lun_id)
                )
                log.warning(
                    "LUN %d shows on %d of %d FC paths (%s), not at %s after %gs",
                    lun_id, len(devices), len(ports), ", ".join(devices), missing, settle,
                )  # fmt: skip
                return devices
        elif now >= deadline:
            raise Unavailable(_not_there(root, wanted, ports, lun_id, within))
        await asyncio.sleep(interval)


def _missing(root: Path, ports: Sequence[RemotePort], lun_id: int) -> list[RemotePort]:
    """The ports behind which LUN `lun_id` shows no block device yet."""
    return [port for port in ports if scsi.block_device_at(root, port.hctl(lun_id)) is None]


def _not_there(root: Path, wanted: list[str], ports: list[RemotePort], lun_id: int, within: float) -> str:
    """Why no disk showed: no usable port to the wanted WWPNs, or no LUN behind those there are."""
    names = ", ".join(wanted)
    if not ports:
        seen = "; ".join(str(port) for port in remote_ports(root)) or "none"
        return (
            f"no FC remote port online for {names} after {within:g}s (remote ports seen: {seen}); "
            "is this node's HBA zoned to the storage server's target ports, and are they logged in?"
        )
    scanned = ", ".join(f"{port.hctl(lun_id)} ({port.name}, {port.port_name})" for port in ports)
    return (
        f"no disk at LUN {lun_id} behind {names} after a targeted scan of {scanned} and {within:g}s; "
        "is the LUN mapped to this node's WWPNs on the storage server?"
    )
