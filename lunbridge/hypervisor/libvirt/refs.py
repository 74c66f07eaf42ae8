"""The names of the libvirt layer: VM references (a Kubernetes Node's providerID, a UUID or a
domain name), iSCSI portals, the ids of the `Vm`/`Host` objects it returns, and the device
alias that marks a disk as lunbridge's.

Pure functions, tested without libvirt. The ids are chosen so that a router holding several
hypervisor layers can tell libvirt's objects from vSphere's by prefix alone:

- `Vm.id`   = `libvirt:<domain uuid>` (lowercase); the domain UUID is also the SMBIOS UUID the
  guest reads, so the id, the providerID and DMI agree;
- `Host.id` = `libvirt:<connection URI>`: the layer serves one host per URI, so the URI is
  what names the host to the code (Host.name is for people and igroup names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lunbridge.api import PROVIDER_LIBVIRT
from lunbridge.errors import InvalidArgument
from lunbridge.san import ISCSI_PORT as ISCSI_PORT
from lunbridge.san import Portal as Portal
from lunbridge.san import canonical_uuid as canonical_uuid
from lunbridge.san import is_uuid
from lunbridge.san import parse_portal as parse_portal

ID_PREFIX = "libvirt:"
# A user alias (libvirt keeps `ua-` aliases on live devices): marks the disks lunbridge made.
ALIAS_PREFIX = "ua-lunbridge-"
_HEX = re.compile(r"^[0-9a-f]+$")


def vm_id(uuid: str) -> str:
    return f"{ID_PREFIX}{canonical_uuid(uuid)}"


def host_id(uri: str) -> str:
    return f"{ID_PREFIX}{uri}"


def is_libvirt_id(value: str) -> bool:
    """True for a `Vm.id` or `Host.id` made by this layer."""
    return value.startswith(ID_PREFIX) and not value.startswith(PROVIDER_LIBVIRT)


@dataclass(frozen=True)
class VmQuery:
    """A domain by UUID (which is its SMBIOS UUID) or by name."""

    uuid: str | None = None
    name: str | None = None

    def describe(self) -> str:
        return f"with UUID {self.uuid}" if self.uuid is not None else f"named {self.name!r}"


def parse_vm_ref(ref: str) -> VmQuery:
    """`libvirt://<uuid>` (prefix in any case), `libvirt:<uuid>` (a Vm.id), a bare UUID, or else
    a domain name."""
    text = ref.strip()
    if not text:
        raise InvalidArgument("an empty VM reference was given; pass a providerID, UUID or domain name")
    lowered = text.lower()
    for prefix in (PROVIDER_LIBVIRT, ID_PREFIX):
        if lowered.startswith(prefix):
            raw = text[len(prefix) :].strip("/")
            try:
                return VmQuery(uuid=canonical_uuid(raw))
            except InvalidArgument:
                raise InvalidArgument(
                    f"providerID {ref!r} does not hold a UUID after {PROVIDER_LIBVIRT}; "
                    "check the Node's spec.providerID (libvirt://<domain UUID>)"
                ) from None
    if is_uuid(lowered):
        return VmQuery(uuid=canonical_uuid(text))
    return VmQuery(name=text)


def disk_alias(naa: str) -> str:
    """The user alias of the disk that carries LUN `naa` (canonical `naa.<hex>`)."""
    return ALIAS_PREFIX + naa.removeprefix("naa.")


def naa_of_alias(alias: str | None) -> str | None:
    """The NAA id a lunbridge disk alias names, or None for any other alias."""
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    digits = alias[len(ALIAS_PREFIX) :].lower()
    return f"naa.{digits}" if len(digits) in (16, 32) and _HEX.match(digits) else None
