"""The one ownership rule: which storage objects and attachments lunbridge's own objects own.

An object of an *owner kind* owns: a VirtualDisk, by its UID alone, the LUN named
from it (`naming.lun_name`) and, while it is being made as a copy of another disk, the
snapshot that copy is taken from (`clone-src-<uid>`); by its status, the NAA its LUN carries
(`status.lun.naa`), the igroup that LUN is mapped to and the VM it is attached to; a
DiskSnapshot and a DiskGroupSnapshot, the storage snapshots named from them or recorded. Whatever
carries lunbridge's naming and is owned by no object is an orphan (see `sweep`).

Owner kinds are a registry (`OWNER_KINDS`), so objects added later (DiskSnapshots owning
snapshots, verification clones owning temporary LUNs) count as owners by registering one
`OwnerKind` that turns such an object into an `Owner`; the sweep needs no change.

An owner whose status is in flux (not Ready for its current spec, or being deleted) is not
`settled`: what it names is still moving (a map made a moment before its status is written,
an RDM on the VM it is moving to), so the maps and RDMs of its LUN are not judged then; its
LUN is still owned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lunbridge.api import (
    DISK_GROUP_SNAPSHOT_KIND,
    DISK_GROUP_SNAPSHOT_PLURAL,
    DISK_SNAPSHOT_KIND,
    DISK_SNAPSHOT_PLURAL,
    VIRTUAL_DISK_KIND,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.base import Vm
from lunbridge.models import Phase, VirtualDiskSpec, VirtualDiskStatus
from lunbridge_operator import naming

# what `naming.lun_name` makes of a Kubernetes UID (a UUID): `vd-<uuid>`, lowercase
LUN_NAME = re.compile(r"^vd-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_lunbridge_lun(name: str) -> bool:
    """The LUN has lunbridge's form (`vd-<uuid>`): one a lunbridge object made or makes. A
    name of any other form is a user's own and never an orphan."""
    return LUN_NAME.match(name) is not None


@dataclass(frozen=True)
class Owner:
    """One lunbridge object and what it owns.

    `luns` and `snapshots`: storage names (on any backend: a name holds a UID, which is
    unique). `naas`: the NAAs its status records. `igroups`: the igroups its LUNs may be
    mapped to. `vms`: the VMs its LUNs may be attached to, by `Vm.id`, BIOS UUID or
    providerID. `settled`: its status describes what exists (see the module docstring).
    """

    kind: str
    name: str
    uid: str
    luns: frozenset[str] = frozenset()
    snapshots: frozenset[str] = frozenset()
    naas: frozenset[str] = frozenset()
    igroups: frozenset[str] = frozenset()
    vms: frozenset[str] = frozenset()
    settled: bool = True

    def describe(self) -> str:
        return f"{self.kind} {self.name}"

    def holds_vm(self, vm: Vm) -> bool:
        """Its status records an attachment on `vm`."""
        # a providerID (`vsphere://<BIOS UUID>`, `libvirt://<domain UUID>`) names the BIOS UUID
        uuids = {vm.bios_uuid} - {""}
        return any(ref == vm.id or ref.partition("://")[2].lower() in uuids for ref in self.vms)


class Claims(Protocol):
    def __call__(self, obj: Mapping[str, Any]) -> Owner | None: ...


@dataclass(frozen=True)
class OwnerKind:
    """A kind of lunbridge object that owns storage: its plural (to list them) and how one
    object becomes an `Owner` (None: it owns nothing)."""

    kind: str
    plural: str
    claims: Claims


def _settled_disk(obj: Mapping[str, Any], status: VirtualDiskStatus) -> bool:
    meta = obj.get("metadata") or {}
    return (
        not meta.get("deletionTimestamp")
        and status.phase is Phase.READY
        and status.observed_generation == meta.get("generation")
    )


def virtual_disk_owner(obj: Mapping[str, Any]) -> Owner | None:
    """A VirtualDisk owns the LUN named from its UID, the snapshot it is cloned from while
    it is a copy of another disk, and the NAA, igroup and VM its status records. A status
    lunbridge cannot read leaves only the LUN (and the disk unsettled)."""
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if not uid:
        return None
    raw_status = {k: v for k, v in dict(obj.get("status") or {}).items() if k != "kopf"}
    try:
        status = VirtualDiskStatus.from_dict(raw_status, "status")
    except InvalidArgument:
        return Owner(VIRTUAL_DISK_KIND, str(meta.get("name")), uid, frozenset({naming.lun_name(uid)}),
                     settled=False)  # fmt: skip
    try:
        spec: VirtualDiskSpec | None = VirtualDiskSpec.from_dict(dict(obj.get("spec") or {}), "spec")
    except InvalidArgument:
        spec = None
    luns = {naming.lun_name(uid)}
    if status.lun is not None and status.lun.name:
        luns.add(status.lun.name)
    cloning = spec is not None and spec.source is not None and bool(spec.source.virtual_disk)
    naas = {status.lun.naa} if status.lun is not None and status.lun.naa else set()
    attachment = status.attachment
    vms = {ref for ref in (attachment.vm_id, attachment.provider_id) if ref} if attachment else set()
    return Owner(
        kind=VIRTUAL_DISK_KIND,
        name=str(meta.get("name")),
        uid=uid,
        luns=frozenset(luns),
        snapshots=frozenset({naming.clone_snapshot_name(uid)} if cloning else set()),
        naas=frozenset(naas),
        igroups=frozenset({status.initiator_group} if status.initiator_group else set()),
        vms=frozenset(vms),
        settled=_settled_disk(obj, status),
    )


def disk_snapshot_owner(obj: Mapping[str, Any]) -> Owner | None:
    """A DiskSnapshot owns the storage snapshot named from its UID (cut or about to be) and
    the one its status names (an import's)."""
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if not uid:
        return None
    snapshots = {naming.snapshot_name(uid)}
    recorded = (obj.get("status") or {}).get("snapshotName")
    if isinstance(recorded, str) and recorded:
        snapshots.add(recorded)
    return Owner(DISK_SNAPSHOT_KIND, str(meta.get("name")), uid, snapshots=frozenset(snapshots),
                 settled=not meta.get("deletionTimestamp"))  # fmt: skip


def disk_group_snapshot_owner(obj: Mapping[str, Any]) -> Owner | None:
    """A DiskGroupSnapshot owns the storage snapshots its status records for its members
    (their member DiskSnapshots own them too, once made)."""
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    members = (obj.get("status") or {}).get("members") or []
    names = {m.get("snapshotName") for m in members if isinstance(m, dict)} - {None, ""}
    if not uid:
        return None
    snapshots = frozenset(str(n) for n in names)
    return Owner(DISK_GROUP_SNAPSHOT_KIND, str(meta.get("name")), uid, snapshots=snapshots,
                 settled=not meta.get("deletionTimestamp"))  # fmt: skip


# every kind of object that owns storage; add a kind here and the sweep counts it
OWNER_KINDS: list[OwnerKind] = [
    OwnerKind(VIRTUAL_DISK_KIND, VIRTUAL_DISK_PLURAL, virtual_disk_owner),
    OwnerKind(DISK_SNAPSHOT_KIND, DISK_SNAPSHOT_PLURAL, disk_snapshot_owner),
    OwnerKind(DISK_GROUP_SNAPSHOT_KIND, DISK_GROUP_SNAPSHOT_PLURAL, disk_group_snapshot_owner),
]


class Owners:
    """The owners of one moment, indexed by what they own."""

    def __init__(self, owners: Iterable[Owner] = ()) -> None:
        self.by_uid: dict[tuple[str, str], Owner] = {}
        for owner in owners:
            self.by_uid[(owner.kind, owner.uid)] = owner
        self._luns = {lun: o for o in self.by_uid.values() for lun in o.luns}
        self._snapshots = {snapshot: o for o in self.by_uid.values() for snapshot in o.snapshots}
        self._naas = {naa: o for o in self.by_uid.values() for naa in o.naas}

    def __iter__(self) -> Iterator[Owner]:
        return iter(self.by_uid.values())

    def __len__(self) -> int:
        return len(self.by_uid)

    def of_lun(self, name: str) -> Owner | None:
        return self._luns.get(name)

    def of_snapshot(self, name: str) -> Owner | None:
        return self._snapshots.get(name)

    def of_naa(self, naa: str) -> Owner | None:
        return self._naas.get(naa)

    def merged(self, later: Owners) -> Owners:
        """Both lists taken around a look at storage: an object that was there in either owns
        (one created meanwhile owns what it made; one deleted meanwhile is torn down by its
        own finalizer), and the later status is the one judged."""
        return Owners([*self.by_uid.values(), *later.by_uid.values()])


class Lister(Protocol):
    async def list(self, plural: str) -> list[dict[str, Any]]: ...


async def gather(kube: Lister, kinds: Sequence[OwnerKind] | None = None) -> Owners:
    """Every owner of every registered kind, listed from the API server."""
    found: list[Owner] = []
    for kind in OWNER_KINDS if kinds is None else kinds:
        for obj in await kube.list(kind.plural):
            owner = kind.claims(obj)
            if owner is not None:
                found.append(owner)
    return Owners(found)


def owner_kinds_text(kinds: Sequence[OwnerKind] | None = None) -> str:
    """The registered kinds in words, for messages: "VirtualDisk" or "VirtualDisk or X"."""
    names = [kind.kind for kind in (OWNER_KINDS if kinds is None else kinds)]
    return " or ".join(names)


__all__ = [
    "OWNER_KINDS",
    "Owner",
    "OwnerKind",
    "Owners",
    "disk_group_snapshot_owner",
    "disk_snapshot_owner",
    "gather",
    "is_lunbridge_lun",
    "owner_kinds_text",
    "virtual_disk_owner",
]
