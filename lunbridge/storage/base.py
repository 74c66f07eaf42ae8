"""What the operator needs from a storage server, independent of which one.

Names are derived by the caller from a Kubernetes UID, so a retried create finds what the
first try made. Implementations (`tgt`, later `ontap`) raise only `lunbridge.errors`; every
method is a coroutine and never blocks the event loop.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lunbridge.errors import InvalidArgument
from lunbridge.san import Transport

# the names lunbridge gives LUNs, igroups, snapshots and pools (from Kubernetes names and UIDs)
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$")


def check_name(kind: str, name: str) -> str:
    """A LUN, igroup, snapshot or pool name: a DNS label, as every backend takes it (tgt makes
    it a file name and a target IQN suffix; ontap a LUN path and a FlexVol name)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"{kind} name {name!r} is invalid: use 1-63 lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Pool:
    name: str
    size_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Lun:
    name: str
    pool: str
    size_bytes: int
    serial: str
    naa: str  # `naa.<32 hex>`, never reused
    source_snapshot: str | None = None


class OsType(enum.StrEnum):
    """What an igroup's hosts run (ONTAP's igroup os_type); servers tune ALUA and geometry by it."""

    VMWARE = "vmware"
    LINUX = "linux"
    WINDOWS = "windows"


DEFAULT_OS_TYPE = OsType.VMWARE


def check_os_type(os_type: str) -> OsType:
    try:
        return OsType(os_type)
    except ValueError:
        known = ", ".join(t.value for t in OsType)
        raise InvalidArgument(f"igroup OS type {os_type!r} is not one of {known}") from None


@dataclass(frozen=True)
class InitiatorGroup:
    name: str
    transport: Transport
    initiators: tuple[str, ...]
    os_type: str = DEFAULT_OS_TYPE


@dataclass(frozen=True)
class Mapping:
    lun: str
    igroup: str
    lun_id: int  # the LUN number the igroup's initiators see


@dataclass(frozen=True)
class Snapshot:
    name: str
    lun: str
    size_bytes: int
    created: datetime


@dataclass(frozen=True)
class Portal:
    """Where initiators reach the storage server (for iSCSI discovery): host:port and target."""

    address: str
    target: str | None = None


@dataclass(frozen=True)
class Chap:
    """CHAP for the initiators of one igroup when they log in themselves (initiator-mode nodes).

    One-way: each initiator proves `user` / `secret` to the target. Mutual: the target also
    proves `mutual_user` / `mutual_secret` back. RFC 3720 asks secrets of at least 12 bytes
    (96 bits) and open-iscsi takes at most 256 characters; the secrets never show in a repr, a
    log line or an error."""

    user: str
    secret: str = field(repr=False)
    mutual_user: str | None = None
    mutual_secret: str | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        return self.mutual_user is not None


class StorageBackend(Protocol):
    async def pools(self) -> list[Pool]: ...

    async def create_lun(self, name: str, size_bytes: int, pool: str | None = None) -> Lun:
        """Create, or return the LUN of that name if it has that size (AlreadyExists otherwise)."""
        ...

    async def get_lun(self, name: str) -> Lun:
        """NotFound if missing."""
        ...

    async def list_luns(self) -> list[Lun]: ...

    async def resize_lun(self, name: str, size_bytes: int) -> Lun:
        """Grow only (InvalidArgument when smaller)."""
        ...

    async def delete_lun(self, name: str) -> None:
        """Conflict while mapped; a missing LUN is success."""
        ...

    async def create_igroup(
        self, name: str, transport: Transport, initiators: list[str], os_type: str = DEFAULT_OS_TYPE
    ) -> InitiatorGroup:
        """Create, or return the igroup of that name if it holds those initiators (its OS type
        set to `os_type`); AlreadyExists if it holds others. `os_type` is one of OS_TYPES."""
        ...

    async def get_igroup(self, name: str) -> InitiatorGroup: ...

    async def list_igroups(self) -> list[InitiatorGroup]: ...

    async def add_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup: ...

    async def remove_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup: ...

    async def delete_igroup(self, name: str) -> None:
        """Conflict while LUNs are mapped to it; a missing igroup is success."""
        ...

    async def map_lun(self, lun: str, igroup: str, lun_id: int | None = None) -> Mapping:
        """Map (lowest free LUN id, or `lun_id`); an existing identical map is returned."""
        ...

    async def unmap_lun(self, lun: str, igroup: str) -> None:
        """A missing map is success."""
        ...

    async def list_mappings(self, lun: str | None = None, igroup: str | None = None) -> list[Mapping]: ...

    async def create_snapshot(self, lun: str, name: str) -> Snapshot:
        """A point-in-time copy of the LUN, or the snapshot of that name if it is of that LUN
        (AlreadyExists otherwise). Point-in-time means every write completed before the call
        and none after; a backend that cannot give that for a LUN in use raises Conflict
        naming why, rather than copy it."""
        ...

    async def list_snapshots(self, lun: str | None = None) -> list[Snapshot]: ...

    async def delete_snapshot(self, name: str) -> None:
        """A missing snapshot is success."""
        ...

    async def clone_lun(self, snapshot: str, name: str) -> Lun:
        """A new LUN (new serial and NAA) with the snapshot's content."""
        ...

    async def create_group_snapshot(self, members: dict[str, str], limit: float = 5.0) -> list[Snapshot]:
        """Snapshots of several LUNs (LUN -> snapshot name) at one instant in the write stream:
        every write acknowledged before it is in every member, none after. A backend that
        cannot fence the LUNs' I/O within `limit` seconds raises Conflict and keeps nothing."""
        ...

    async def revert_lun(self, name: str, snapshot: str) -> Lun:
        """Put the snapshot's content back into LUN `name` in place: same name, NAA and serial;
        a LUN that grew after the snapshot keeps its size. Conflict while the LUN is mapped
        (an initiator could see the content change under it); NotFound when either is missing.
        Atomic: after a crash at any point the LUN holds either its old content or the
        snapshot's, never a mix."""
        ...

    async def portals(self) -> list[Portal]:
        """Where hosts discover this server (iSCSI send targets)."""
        ...

    async def login_portals(self, igroup: str) -> list[Portal]:
        """Where the initiators of iSCSI igroup `igroup` log in themselves (initiator-mode
        nodes): one Portal per address a node can reach, each naming the target those
        initiators see the igroup's LUNs through. NotFound when there is no such igroup."""
        ...

    async def set_chap(self, igroup: str, chap: Chap | None) -> None:
        """The CHAP the initiators of iSCSI igroup `igroup` must log in with; None: none.
        Idempotent; a changed secret replaces the old one. NotFound when there is no such
        igroup; InvalidArgument for a user name or secret the target cannot take."""
        ...

    async def close(self) -> None: ...
