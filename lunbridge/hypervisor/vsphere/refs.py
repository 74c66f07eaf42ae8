"""Parsing of the names lunbridge is handed for vSphere objects: a Kubernetes Node's
providerID or a bare UUID or name for a VM, and an iSCSI portal for send-target discovery.

It exists apart from the pyVmomi code so these rules are plain functions, tested without a
vCenter, and so every caller agrees on them (e.g. a providerID's UUID is matched in any
letter case, because Kubernetes, the guest's DMI and vCenter disagree on it).
"""

from __future__ import annotations

from dataclasses import dataclass

from lunbridge.errors import InvalidArgument
from lunbridge.san import ISCSI_PORT as ISCSI_PORT
from lunbridge.san import Portal as Portal
from lunbridge.san import canonical_uuid as canonical_uuid
from lunbridge.san import is_uuid
from lunbridge.san import parse_portal as parse_portal

PROVIDER_PREFIX = "vsphere://"


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
    if is_uuid(text):
        return VmQuery(uuid=canonical_uuid(text))
    return VmQuery(name=text)
