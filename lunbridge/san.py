"""SAN identifiers shared by the virtualization and storage layers: transports, and the one
canonical spelling of WWPNs, IQNs and NAA ids, so that a name from vSphere, from a storage
server and from guest sysfs compare equal."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import NamedTuple

from lunbridge.errors import InvalidArgument


class Transport(enum.StrEnum):
    """SAN transport of an initiator or initiator group (ONTAP's igroup protocol names)."""

    FCP = "fcp"
    ISCSI = "iscsi"


_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_NAA = re.compile(r"^(?:naa\.)?([0-9a-f]{16}|[0-9a-f]{32})$")
# RFC 3720 3.2.6.3.1 / RFC 3722: after lowercasing, letters, digits, '.', '-' and ':' only
_IQN = re.compile(r"^(iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9][a-z0-9.-]*(:[a-z0-9.:-]+)?|eui\.[0-9a-f]{16})$")
MAX_ISCSI_NAME = 223  # bytes, RFC 3720 3.2.6.1


def wwn(value: str | int) -> str:
    """A WWPN/WWNN as storage servers take it: `20:00:00:25:b5:00:00:01`.

    Accepts vSphere's integer form, plain hex, or any colon/dash-separated spelling.
    """
    if isinstance(value, int):
        digits = f"{value & 0xFFFFFFFFFFFFFFFF:016x}"
    else:
        digits = re.sub(r"[:\-\s]", "", value.strip().lower()).removeprefix("0x")
    if not _HEX16.match(digits):
        raise InvalidArgument(f"{value!r} is not a WWN: expected 16 hex digits")
    return ":".join(digits[i : i + 2] for i in range(0, 16, 2))


def naa(value: str) -> str:
    """An NAA id as `naa.<hex>` in lowercase; accepts it with or without the prefix."""
    match = _NAA.match(value.strip().lower())
    if not match:
        raise InvalidArgument(
            f"{value!r} is not an NAA id: expected 16 or 32 hex digits, optionally after 'naa.'"
        )
    return f"naa.{match.group(1)}"


def iqn(value: str) -> str:
    """An iSCSI name, validated; the `iqn.` part is case-insensitive, so it is lowercased."""
    text = value.strip()
    lowered = text.lower()
    if len(lowered.encode()) > MAX_ISCSI_NAME or not _IQN.match(lowered):
        raise InvalidArgument(
            f"{value!r} is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id] or eui.<16 hex>)"
        )
    return lowered


def canonical_initiators(transport: Transport, initiators: list[str]) -> tuple[str, ...]:
    """Canonical, de-duplicated initiators (IQNs for iSCSI, colon WWPNs for FCP), in order;
    InvalidArgument names the first that is neither."""
    if isinstance(initiators, str):
        raise InvalidArgument("initiators must be a list of names, not one string")
    canonical = iqn if transport is Transport.ISCSI else wwn
    return tuple(dict.fromkeys(canonical(i) for i in initiators))


ISCSI_PORT = 3260
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")


def canonical_uuid(value: str) -> str:
    """A UUID as vCenter and libvirt write it: lowercase, 8-4-4-4-12 (accepts no dashes, any case)."""
    digits = value.strip().lower().replace("-", "")
    if len(digits) != 32 or not _UUID.match(digits):
        raise InvalidArgument(f"{value!r} is not a UUID")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value.strip().lower()))


@dataclass(frozen=True)
class Portal:
    """An iSCSI portal: where initiators reach a storage server."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        """The portal as libiscsi's tools take it: `iscsi://host:port`."""
        return f"iscsi://{self}"

    def same(self, address: str, port: int | None) -> bool:
        """True if a send target (address, port; port 0/None = 3260) is this portal."""
        return address.strip("[]").lower() == self.address.lower() and (port or ISCSI_PORT) == self.port


def parse_portal(value: str) -> Portal:
    """`10.0.0.5:3260`, `[fd00::5]:3260`, `10.0.0.5` or `san.example.com` → a Portal."""
    text = value.strip()
    host, port = text, ISCSI_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidArgument(f"iSCSI portal {value!r} is malformed; write [ipv6]:port")
        if rest:
            port = _port(value, rest[1:])
    elif text.count(":") == 1:
        host, _, raw_port = text.partition(":")
        port = _port(value, raw_port)
    if not host or any(c.isspace() or c in "/?#@'\"<>&" for c in host):
        raise InvalidArgument(f"iSCSI portal {value!r} names no usable address; write address:port")
    return Portal(address=host.lower(), port=port)


def _port(value: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise InvalidArgument(f"iSCSI portal {value!r} has a bad port; write address:port")
    return int(raw)


class ScsiAddress(NamedTuple):
    """channel, target and LUN of a disk on its controller's SCSI host in the guest: what a
    targeted rescan writes to /sys/class/scsi_host/hostN/scan, and the publish context's
    `guestAddress` (`channel:target:lun`)."""

    channel: int
    target: int
    lun: int

    @classmethod
    def parse(cls, text: str) -> ScsiAddress:
        parts = text.strip().split(":")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise InvalidArgument(f"guest address {text!r} is not 'channel:target:lun' (three integers)")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))

    def __str__(self) -> str:
        return f"{self.channel}:{self.target}:{self.lun}"
