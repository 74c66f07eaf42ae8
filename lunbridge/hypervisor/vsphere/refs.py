"""Parsing of the names lunbridge is handed for vSphere objects: a Kubernetes Node's
providerID or a bare UUID or name for a VM, and an iSCSI portal for send-target discovery.

It exists apart from the pyVmomi code so these rules are plain functions, tested without a
vCenter, and so every caller agrees on them (e.g. a providerID's UUID is matched in any
letter case, because Kubernetes, the guest's DMI and vCenter disagree on it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lunbridge.errors import InvalidArgument

PROVIDER_PREFIX = "vsphere://"
ISCSI_PORT = 3260
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")


def canonical_uuid(value: str) -> str:
    """A UUID as vCenter writes it: lowercase, 8-4-4-4-12 (accepts no dashes, any case)."""
    digits = value.strip().lower().replace("-", "")
    if len(digits) != 32 or not _UUID.match(digits):
        raise InvalidArgument(f"{value!r} is not a UUID")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def uuid_spellings(uuid: str) -> list[str]:
    """The spellings to try with vCenter's case-sensitive FindByUuid, given first."""
    canonical = canonical_uuid(uuid)
    out: list[str] = []
    for candidate in (uuid.strip(), canonical, canonical.upper()):
        if candidate not in out:
            out.append(candidate)
    return out


@dataclass(frozen=True)
class VmQuery:
    """What a VM reference asks for: a UUID (BIOS first, then instance, unless the reference
    was a providerID, which is always the BIOS UUID) or a name."""

    uuid: str | None = None
    name: str | None = None
    bios_only: bool = False

    def describe(self) -> str:
        if self.uuid is None:
            return f"named {self.name!r}"
        return f"with BIOS UUID {self.uuid}" if self.bios_only else f"with BIOS or instance UUID {self.uuid}"


def parse_vm_ref(ref: str) -> VmQuery:
    """`vsphere://<uuid>` (prefix in any case), a bare UUID, or else a VM name."""
    text = ref.strip()
    if not text:
        raise InvalidArgument("an empty VM reference was given; pass a providerID, UUID or VM name")
    if text.lower().startswith(PROVIDER_PREFIX):
        raw = text[len(PROVIDER_PREFIX) :].strip("/")
        try:
            return VmQuery(uuid=canonical_uuid(raw), bios_only=True)
        except InvalidArgument:
            raise InvalidArgument(
                f"providerID {ref!r} does not hold a UUID after {PROVIDER_PREFIX}; "
                "check the Node's spec.providerID"
            ) from None
    if _UUID.match(text.lower()):
        return VmQuery(uuid=canonical_uuid(text))
    return VmQuery(name=text)


@dataclass(frozen=True)
class Portal:
    address: str
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

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
    if not host:
        raise InvalidArgument(f"iSCSI portal {value!r} names no address; write address:port")
    return Portal(address=host.lower(), port=port)


def _port(value: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise InvalidArgument(f"iSCSI portal {value!r} has a bad port; write address:port")
    return int(raw)
