"""SAN identifiers shared by the virtualization and storage layers: transports, and the one
canonical spelling of WWPNs, IQNs and NAA ids, so that a name from vSphere, from a storage
server and from guest sysfs compare equal."""

from __future__ import annotations

import enum
import re

from lunbridge.errors import InvalidArgument


class Transport(enum.StrEnum):
    """SAN transport of an initiator or initiator group (ONTAP's igroup protocol names)."""

    FCP = "fcp"
    ISCSI = "iscsi"


_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_NAA = re.compile(r"^(?:naa\.)?([0-9a-f]{16}|[0-9a-f]{32})$")
_IQN = re.compile(r"^(iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:.+)?|eui\.[0-9a-f]{16})$")


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
    if not _IQN.match(lowered):
        raise InvalidArgument(
            f"{value!r} is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id] or eui.<16 hex>)"
        )
    return lowered
