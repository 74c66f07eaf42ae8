"""An in-memory storage server with the semantics lunbridge/storage/base.py promises, so the
reconcile steps can be run against a backend that keeps every rule (ids never reused, deletes
of missing things succeed, a mapped LUN cannot be deleted) without tgtd or a disk.

Beyond the protocol, `exposes` answers which initiators can see a LUN (the fake hypervisor
asks it before an RDM is attached, as a real host's rescan would), and the call log and
`fail_next` of `Faults` let a test watch or break any call.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from lunbridge import san
from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.san import Transport
from lunbridge.storage.base import (
    DEFAULT_OS_TYPE,
    Chap,
    InitiatorGroup,
    Lun,
    Mapping,
    Pool,
    Portal,
    Snapshot,
    check_os_type,
)
from tests.fakes.faults import Faults, need

TiB = 1 << 40


class FakeStorage(Faults):
    def __init__(
        self, name: str = "lab", pools: dict[str, int] | None = None, portal: str = "192.0.2.10:3260"
    ) -> None:
        super().__init__()
        self.name = name
        self.portal = portal
        self.pool_sizes = dict(pools or {"default": TiB})
        self.luns: dict[str, Lun] = {}
        self.igroups: dict[str, InitiatorGroup] = {}
        self.maps: list[Mapping] = []
        self.snapshots: dict[str, Snapshot] = {}
        self.reverted: list[tuple[str, str]] = []  # (LUN, snapshot) of every revert_lun
        self.groups: list[dict[str, str]] = []  # the members of every group snapshot
        # one installation's ids: a hash of its name, then a counter that only grows
        self._installation = hashlib.sha256(name.encode()).hexdigest()[:8]
        self._ids = itertools.count(1)
        self.closed = False
        self.chap: dict[str, Chap] = {}  # igroup -> the CHAP its initiators log in with
        self.target_prefix = f"iqn.2024-01.test.{name}:"

    # --- what tests read ------------------------------------------------------------------
    def exposes(self, naa: str, initiators: Iterable[str]) -> bool:
        """Some igroup holding one of `initiators` has the LUN `naa` mapped."""
        names = {lun.name for lun in self.luns.values() if lun.naa == naa}
        wanted = set(initiators)
        return any(m.lun in names and wanted & set(self.igroups[m.igroup].initiators) for m in self.maps)

    def mappings_of(self, lun: str | None = None, igroup: str | None = None) -> list[Mapping]:
        return [
            m for m in self.maps if (lun is None or m.lun == lun) and (igroup is None or m.igroup == igroup)
        ]

    # --- helpers ----------------------------------------------------------------------------
    def _new_ids(self) -> tuple[str, str]:
        counter = next(self._ids)
        return f"naa.6{self._installation}{counter:023x}", f"{self._installation}{counter:08x}"

    def _lun(self, name: str) -> Lun:
        return need(self.luns, name, f"LUN {name} on backend {self.name}")

    def _igroup(self, name: str) -> InitiatorGroup:
        return need(self.igroups, name, f"igroup {name} on backend {self.name}")

    @staticmethod
    def _delete_unmapped(table: dict[str, Any], name: str, maps: list[Mapping], what: str) -> None:
        """Delete `name` from `table` unless maps hold it (Conflict); a missing one is success."""
        if name in table and maps:
            mapped = ", ".join(f"{m.lun} to {m.igroup}" for m in maps)
            raise Conflict(f"{what} {name} is still mapped ({mapped}): unmap it first")
        table.pop(name, None)

    @staticmethod
    def _canonical(transport: Transport, initiators: list[str]) -> tuple[str, ...]:
        if isinstance(initiators, str):
            raise InvalidArgument("initiators must be a list of names, not one string")
        canonical = san.iqn if transport is Transport.ISCSI else san.wwn
        return tuple(dict.fromkeys(canonical(i) for i in initiators))

    # --- the protocol -------------------------------------------------------------------------
    async def pools(self) -> list[Pool]:
        self._record("pools")
        used = {pool: 0 for pool in self.pool_sizes}
        for lun in self.luns.values():
            used[lun.pool] += lun.size_bytes
        return [Pool(name, size, size - used[name]) for name, size in sorted(self.pool_sizes.items())]

    async def create_lun(self, name: str, size_bytes: int, pool: str | None = None) -> Lun:
        self._record("create_lun", name, size_bytes, pool)
        pool = pool or next(iter(self.pool_sizes))
        if pool not in self.pool_sizes:
            raise NotFound(f"pool {pool!r} does not exist; pools: {', '.join(self.pool_sizes)}")
        if size_bytes <= 0:
            raise InvalidArgument(f"LUN size {size_bytes} must be a positive number of bytes")
        old = self.luns.get(name)
        if old is not None:
            if old.size_bytes == size_bytes and old.pool == pool:
                return old
            raise AlreadyExists(f"LUN {name} exists with {old.size_bytes} bytes in pool {old.pool}")
        naa, serial = self._new_ids()
        self.luns[name] = Lun(name, pool, size_bytes, serial, naa)
        return self.luns[name]

    async def get_lun(self, name: str) -> Lun:
        self._record("get_lun", name)
        return self._lun(name)

    async def list_luns(self) -> list[Lun]:
        self._record("list_luns")
        return [self.luns[name] for name in sorted(self.luns)]

    async def resize_lun(self, name: str, size_bytes: int) -> Lun:
        self._record("resize_lun", name, size_bytes)
        lun = self._lun(name)
        if size_bytes < lun.size_bytes:
            raise InvalidArgument(f"LUN {name} has {lun.size_bytes} bytes; it can grow but not shrink")
        self.luns[name] = replace(lun, size_bytes=size_bytes)
        return self.luns[name]

    async def delete_lun(self, name: str) -> None:
        self._record("delete_lun", name)
        self._delete_unmapped(self.luns, name, self.mappings_of(lun=name), "LUN")

    async def create_igroup(
        self, name: str, transport: Transport, initiators: list[str], os_type: str = DEFAULT_OS_TYPE
    ) -> InitiatorGroup:
        self._record("create_igroup", name, transport, initiators, os_type)
        os_type = check_os_type(os_type)
        try:
            transport = Transport(transport)
        except ValueError:
            raise InvalidArgument(f"transport {transport!r} is neither 'iscsi' nor 'fcp'") from None
        wanted = self._canonical(transport, initiators)
        old = self.igroups.get(name)
        if old is not None and (old.transport is not transport or set(old.initiators) != set(wanted)):
            raise AlreadyExists(f"igroup {name} exists as {old.transport} with {list(old.initiators)}")
        initiators_now = old.initiators if old is not None else wanted
        self.igroups[name] = InitiatorGroup(name, transport, initiators_now, os_type)
        return self.igroups[name]

    async def get_igroup(self, name: str) -> InitiatorGroup:
        self._record("get_igroup", name)
        return self._igroup(name)

    async def list_igroups(self) -> list[InitiatorGroup]:
        self._record("list_igroups")
        return [self.igroups[name] for name in sorted(self.igroups)]

    async def add_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup:
        self._record("add_initiators", name, initiators)
        group = self._igroup(name)
        added = group.initiators + self._canonical(group.transport, initiators)
        self.igroups[name] = replace(group, initiators=tuple(dict.fromkeys(added)))
        return self.igroups[name]

    async def remove_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup:
        self._record("remove_initiators", name, initiators)
        group = self._igroup(name)
        gone = set(self._canonical(group.transport, initiators))
        self.igroups[name] = replace(group, initiators=tuple(i for i in group.initiators if i not in gone))
        return self.igroups[name]

    async def delete_igroup(self, name: str) -> None:
        self._record("delete_igroup", name)
        self._delete_unmapped(self.igroups, name, self.mappings_of(igroup=name), "igroup")

    async def map_lun(self, lun: str, igroup: str, lun_id: int | None = None) -> Mapping:
        self._record("map_lun", lun, igroup, lun_id)
        self._lun(lun)
        self._igroup(igroup)
        for m in self.mappings_of(lun=lun, igroup=igroup):
            if lun_id is None or m.lun_id == lun_id:
                return m
            raise AlreadyExists(f"LUN {lun} is mapped to igroup {igroup} as LUN id {m.lun_id}, not {lun_id}")
        taken = {m.lun_id for m in self.mappings_of(igroup=igroup)}
        if lun_id is not None and lun_id in taken:
            raise Conflict(f"LUN id {lun_id} of igroup {igroup} is taken")
        chosen = lun_id if lun_id is not None else min(set(range(len(taken) + 1)) - taken)
        self.maps.append(Mapping(lun, igroup, chosen))
        return self.maps[-1]

    async def unmap_lun(self, lun: str, igroup: str) -> None:
        self._record("unmap_lun", lun, igroup)
        self.maps = [m for m in self.maps if (m.lun, m.igroup) != (lun, igroup)]

    async def list_mappings(self, lun: str | None = None, igroup: str | None = None) -> list[Mapping]:
        self._record("list_mappings", lun, igroup)
        return self.mappings_of(lun, igroup)

    async def create_snapshot(self, lun: str, name: str) -> Snapshot:
        self._record("create_snapshot", lun, name)
        source = self._lun(lun)
        old = self.snapshots.get(name)
        if old is not None:
            if old.lun == lun:
                return old
            raise AlreadyExists(f"snapshot {name} exists and belongs to LUN {old.lun}")
        self.snapshots[name] = Snapshot(name, lun, source.size_bytes, datetime.now(UTC))
        return self.snapshots[name]

    async def list_snapshots(self, lun: str | None = None) -> list[Snapshot]:
        self._record("list_snapshots", lun)
        return [s for _, s in sorted(self.snapshots.items()) if lun is None or s.lun == lun]

    async def delete_snapshot(self, name: str) -> None:
        """Clones stay (they are copies); a missing snapshot is success."""
        self._record("delete_snapshot", name)
        self.snapshots.pop(name, None)

    async def clone_lun(self, snapshot: str, name: str) -> Lun:
        self._record("clone_lun", snapshot, name)
        snap = self.snapshots.get(snapshot)
        if snap is None:
            raise NotFound(f"snapshot {snapshot!r} does not exist on backend {self.name}")
        old = self.luns.get(name)
        if old is not None:
            if old.source_snapshot == snapshot:
                return old
            raise AlreadyExists(f"LUN {name} exists and is not a clone of snapshot {snapshot}")
        naa, serial = self._new_ids()
        pool = self.luns[snap.lun].pool if snap.lun in self.luns else next(iter(self.pool_sizes))
        self.luns[name] = Lun(name, pool, snap.size_bytes, serial, naa, source_snapshot=snapshot)
        return self.luns[name]

    async def create_group_snapshot(self, members: dict[str, str], limit: float = 5.0) -> list[Snapshot]:
        self._record("create_group_snapshot", dict(members))
        made = [await self.create_snapshot(lun, name) for lun, name in members.items()]
        self.groups.append(dict(members))
        return made

    async def revert_lun(self, name: str, snapshot: str) -> Lun:
        """The LUN keeps its ids and its size (at least the snapshot's); `reverted` records it."""
        self._record("revert_lun", name, snapshot)
        lun = self._lun(name)
        snap = self.snapshots.get(snapshot)
        if snap is None:
            raise NotFound(f"snapshot {snapshot!r} does not exist on backend {self.name}")
        mapped = [m.igroup for m in self.maps if m.lun == name]
        if mapped:
            raise Conflict(
                f"LUN {name} is mapped to igroup(s) {', '.join(mapped)}: unmap it before a restore"
            )
        self.reverted.append((name, snapshot))
        self.luns[name] = replace(lun, size_bytes=max(lun.size_bytes, snap.size_bytes))
        return self.luns[name]

    async def portals(self) -> list[Portal]:
        self._record("portals")
        return [Portal(self.portal)]

    async def login_portals(self, igroup: str) -> list[Portal]:
        self._record("login_portals", igroup)
        self._igroup(igroup)
        return [Portal(self.portal, self.target_prefix + igroup)]

    async def set_chap(self, igroup: str, chap: Chap | None) -> None:
        self._record("set_chap", igroup)
        self._igroup(igroup)
        if chap is None:
            self.chap.pop(igroup, None)
        else:
            self.chap[igroup] = chap

    async def close(self) -> None:
        self._record("close")
        self.closed = True
