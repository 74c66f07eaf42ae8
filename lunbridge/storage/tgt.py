"""The Linux SCSI target (tgtd, driven with `tgtadm`) as a lunbridge storage server.

Model: each iSCSI initiator group is one tgt target named `<iqn_prefix><igroup>` whose ACL is
the igroup's initiators; a LUN mapped to the igroup is an LU of that target, its tgt LUN
number being the map's LUN id (1..255; LU 0 is tgt's controller). A LUN mapped to two
igroups is an LU on both targets with the same backing file, serial and NAA id. LUNs are
sparse files in pool folders; snapshots and clones are file copies (reflink where the file
system has it, sparse copy otherwise).

The JSON state file (`tgt_state`) is the truth, tgtd a copy of it: every call first
compares tgtd with the state and re-applies what is missing (after a tgtd restart: every
target, LU, id and ACL), then changes tgtd, then saves the state. A failed change is not
saved, and the next call's comparison takes tgtd back to the saved state. Calls are
serialized by an asyncio lock and an advisory lock on the state file; the IQN prefix must
belong to one state file, because targets under it that the state does not know are removed.

What tgt cannot do, and what this backend does instead:
- no in-place resize: tgt reads the size of the backing file only when an LU is created, and
  `--op update` does not re-read it. A grow truncates the file larger, then deletes and
  re-creates the LU on every target it is mapped to (same file, ids, LUN number); initiators
  get a unit attention and see the new size on their next READ CAPACITY;
- no FC targets: FCP igroups are kept (so the operator can record them), but mapping a LUN
  to one raises InvalidArgument;
- no ids at LU creation: `--op new` takes no `--params`, so a new LU on a target that
  initiators can already reach carries tgt's default ids for the few milliseconds until the
  update; a new target gets its LUs before its ACL;
- LUN ids above 255: tgt answers them with flat-space addressing (libiscsi lists LUN 256 as
  16640), so ids are kept to 1..255.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, LimitExceeded, NotFound, Unavailable
from lunbridge.san import Transport
from lunbridge.storage.base import InitiatorGroup, Lun, Pool, Portal, Snapshot
from lunbridge.storage.base import Mapping as LunMap
from lunbridge.storage.tgt_admin import Runner, Tgtadm, run_command
from lunbridge.storage.tgt_config import (
    MAX_LUN_ID,
    TgtConfig,
    canonical_initiators,
    check_lun_id,
    check_name,
    copy_file,
    grow_file,
    igroup_of,
    lun_of,
    make_sparse,
    pool_usage,
    round_size,
    snapshot_of,
)
from lunbridge.storage.tgt_state import IgroupRecord, LunRecord, MapRecord, SnapshotRecord, State, StateFile
from lunbridge.storage.tgt_sync import DesiredLu, DesiredTarget, reconcile

__all__ = ["TgtBackend", "TgtConfig"]


class TgtBackend:
    """`StorageBackend` on one tgtd. Raises only `lunbridge.errors`."""

    def __init__(self, config: TgtConfig, runner: Runner = run_command) -> None:
        self.config = config
        self._adm = Tgtadm(config.control, config.portal, config.timeout, runner)
        self._runner = runner
        self._lock = asyncio.Lock()
        self._file = StateFile(config.state_file, config.timeout)
        self._state: State | None = None

    def target_name(self, igroup: str) -> str:
        """The IQN of the tgt target that serves iSCSI igroup `igroup`."""
        return self.config.iqn_prefix + check_name("igroup", igroup)

    # -- state, locking and tgtd synchronisation ------------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[State]:
        """Serialize, load the state if another process changed it, and bring tgtd in line."""
        async with self._lock, self._file.locked():
            if self._state is None or self._file.changed():
                self._state = await asyncio.to_thread(self._file.load)
            await reconcile(self._adm, self._desired(self._state), self.config.iqn_prefix)
            yield self._state

    async def _commit(self, state: State, *, tgt: bool) -> None:
        """Apply `state` to tgtd (when it changes targets), then save it."""
        if tgt:
            await reconcile(self._adm, self._desired(state), self.config.iqn_prefix)
        await asyncio.to_thread(self._file.save, state)
        self._state = state

    async def sync(self) -> None:
        """Re-apply the saved state to tgtd now (every other call does it first, too)."""
        async with self._session():
            pass

    def _desired(self, state: State) -> dict[str, DesiredTarget]:
        desired: dict[str, DesiredTarget] = {}
        for name, group in state.igroups.items():
            if group.transport is not Transport.ISCSI:
                continue
            luns = {}
            for m in state.maps_of(igroup=name):
                rec = state.luns[m.lun]
                luns[m.lun_id] = DesiredLu(str(self._lun_path(m.lun, rec.pool)), rec.naa, rec.serial)
            target = self.target_name(name)
            desired[target] = DesiredTarget(target, frozenset(group.initiators), luns)
        return desired

    def _pool_dir(self, pool: str) -> Path:
        try:
            return self.config.pools[pool]
        except KeyError:
            raise Unavailable(
                f"the tgt state file {self.config.state_file} uses pool {pool!r}, which the "
                f"configuration lacks (pools: {', '.join(self.config.pool_names)}): add it back"
            ) from None

    def _lun_path(self, name: str, pool: str) -> Path:
        return self._pool_dir(pool) / "luns" / f"{name}.img"

    def _snapshot_path(self, name: str, pool: str) -> Path:
        return self._pool_dir(pool) / "snapshots" / f"{name}.img"

    # -- pools and portals ----------------------------------------------------------------

    async def pools(self) -> list[Pool]:
        async with self._session():
            pools = self.config.pools
            return [await asyncio.to_thread(pool_usage, name, pools[name]) for name in self.config.pool_names]

    async def portals(self) -> list[Portal]:
        return [Portal(self.config.portal)]

    # -- LUNs -----------------------------------------------------------------------------

    async def create_lun(self, name: str, size_bytes: int, pool: str | None = None) -> Lun:
        check_name("LUN", name)
        size = round_size(size_bytes)
        pool = self.config.pool_names[0] if pool is None else pool
        if pool not in self.config.pools:
            raise NotFound(f"pool {pool!r} does not exist; pools: {', '.join(self.config.pool_names)}")
        async with self._session() as state:
            old = state.luns.get(name)
            if old is not None:
                if old.size_bytes == size and old.pool == pool:
                    return lun_of(name, old)
                raise AlreadyExists(
                    f"LUN {name} exists with {old.size_bytes} bytes in pool {old.pool}, not {size} bytes "
                    f"in pool {pool}: resize it, or delete it first"
                )
            new = state.copy()
            naa, serial = new.allocate_ids()
            new.luns[name] = LunRecord(pool, size, serial, naa)
            await asyncio.to_thread(make_sparse, self._lun_path(name, pool), size)
            await self._commit(new, tgt=False)
            return lun_of(name, new.luns[name])

    async def get_lun(self, name: str) -> Lun:
        check_name("LUN", name)
        async with self._session() as state:
            return lun_of(name, self._need_lun(state, name))

    def _need_lun(self, state: State, name: str) -> LunRecord:
        rec = state.luns.get(name)
        if rec is None:
            raise NotFound(f"LUN {name!r} does not exist on tgtd -C {self.config.control}")
        return rec

    async def list_luns(self) -> list[Lun]:
        async with self._session() as state:
            return [lun_of(name, rec) for name, rec in sorted(state.luns.items())]

    async def resize_lun(self, name: str, size_bytes: int) -> Lun:
        """Grow the backing file, then re-create the LU on every target that maps it (tgt
        reads the size only at LU creation); initiators see the new size after a rescan."""
        check_name("LUN", name)
        size = round_size(size_bytes)
        async with self._session() as state:
            rec = self._need_lun(state, name)
            if size < rec.size_bytes:
                raise InvalidArgument(
                    f"LUN {name} has {rec.size_bytes} bytes; it can grow but not shrink to {size}"
                )
            if size == rec.size_bytes:
                return lun_of(name, rec)
            new = state.copy()
            new.luns[name] = LunRecord(rec.pool, size, rec.serial, rec.naa, rec.source_snapshot)
            await asyncio.to_thread(grow_file, self._lun_path(name, rec.pool), size)
            shown = await self._adm.show()
            for m in state.maps_of(lun=name):
                target = shown.get(self.target_name(m.igroup))
                if target is not None:
                    await self._adm.delete_lu(target.tid, m.lun_id)
            await self._commit(new, tgt=True)  # re-creates the LUs with the new size
            return lun_of(name, new.luns[name])

    async def delete_lun(self, name: str) -> None:
        """Conflict while mapped; its snapshots stay (they are independent copies)."""
        check_name("LUN", name)
        async with self._session() as state:
            rec = state.luns.get(name)
            if rec is None:
                return
            maps = state.maps_of(lun=name)
            if maps:
                raise Conflict(
                    f"LUN {name} is mapped to igroup(s) {', '.join(m.igroup for m in maps)}: unmap it first"
                )
            new = state.copy()
            del new.luns[name]
            await self._commit(new, tgt=False)
            await asyncio.to_thread(self._lun_path(name, rec.pool).unlink, missing_ok=True)

    # -- initiator groups -----------------------------------------------------------------

    async def create_igroup(self, name: str, transport: Transport, initiators: list[str]) -> InitiatorGroup:
        """An igroup; an iSCSI one is a tgt target at once (empty ACL: nobody may log in)."""
        check_name("igroup", name)
        try:
            transport = Transport(transport)
        except ValueError:
            raise InvalidArgument(f"transport {transport!r} is neither 'iscsi' nor 'fcp'") from None
        wanted = canonical_initiators(transport, initiators)
        async with self._session() as state:
            old = state.igroups.get(name)
            if old is not None:
                if old.transport is transport and set(old.initiators) == set(wanted):
                    return igroup_of(name, old)
                raise AlreadyExists(
                    f"igroup {name} exists as {old.transport} with initiators {list(old.initiators)}: "
                    "change it with add/remove initiators, or delete it first"
                )
            new = state.copy()
            new.igroups[name] = IgroupRecord(transport, wanted)
            await self._commit(new, tgt=transport is Transport.ISCSI)
            return igroup_of(name, new.igroups[name])

    async def get_igroup(self, name: str) -> InitiatorGroup:
        check_name("igroup", name)
        async with self._session() as state:
            return igroup_of(name, self._need_igroup(state, name))

    def _need_igroup(self, state: State, name: str) -> IgroupRecord:
        rec = state.igroups.get(name)
        if rec is None:
            raise NotFound(f"igroup {name!r} does not exist on tgtd -C {self.config.control}")
        return rec

    async def list_igroups(self) -> list[InitiatorGroup]:
        async with self._session() as state:
            return [igroup_of(name, rec) for name, rec in sorted(state.igroups.items())]

    async def add_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup:
        return await self._set_initiators(name, initiators, add=True)

    async def remove_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup:
        return await self._set_initiators(name, initiators, add=False)

    async def _set_initiators(self, name: str, initiators: list[str], *, add: bool) -> InitiatorGroup:
        check_name("igroup", name)
        async with self._session() as state:
            rec = self._need_igroup(state, name)
            given = canonical_initiators(rec.transport, initiators)
            if add:
                result = tuple(dict.fromkeys(rec.initiators + given))
            else:
                result = tuple(i for i in rec.initiators if i not in given)
            if result == rec.initiators:
                return igroup_of(name, rec)
            new = state.copy()
            new.igroups[name] = IgroupRecord(rec.transport, result, rec.os_type)
            await self._commit(new, tgt=rec.transport is Transport.ISCSI)
            return igroup_of(name, new.igroups[name])

    async def delete_igroup(self, name: str) -> None:
        check_name("igroup", name)
        async with self._session() as state:
            if name not in state.igroups:
                return
            maps = state.maps_of(igroup=name)
            if maps:
                raise Conflict(
                    f"igroup {name} still has LUN(s) {', '.join(m.lun for m in maps)} mapped: "
                    "unmap them first"
                )
            new = state.copy()
            del new.igroups[name]
            await self._commit(new, tgt=True)

    # -- maps -----------------------------------------------------------------------------

    async def map_lun(self, lun: str, igroup: str, lun_id: int | None = None) -> LunMap:
        check_name("LUN", lun)
        check_name("igroup", igroup)
        check_lun_id(lun_id)
        async with self._session() as state:
            self._need_lun(state, lun)
            group = self._need_igroup(state, igroup)
            if group.transport is not Transport.ISCSI:
                raise InvalidArgument(
                    f"igroup {igroup} is an FCP igroup, but tgtd serves iSCSI only: map the LUN "
                    "to an iSCSI igroup, or use a storage server with FC targets"
                )
            for m in state.maps_of(lun=lun, igroup=igroup):
                if lun_id is None or m.lun_id == lun_id:
                    return LunMap(m.lun, m.igroup, m.lun_id)
                raise AlreadyExists(
                    f"LUN {lun} is mapped to igroup {igroup} as LUN id {m.lun_id}, not {lun_id}: "
                    "unmap it first"
                )
            taken = {m.lun_id: m.lun for m in state.maps_of(igroup=igroup)}
            if lun_id is not None and lun_id in taken:
                raise Conflict(
                    f"LUN id {lun_id} of igroup {igroup} is taken by LUN {taken[lun_id]}: "
                    "choose another id, or let the backend choose"
                )
            if lun_id is None:
                free = [i for i in range(1, MAX_LUN_ID + 1) if i not in taken]
                if not free:
                    raise LimitExceeded(f"igroup {igroup} has all {MAX_LUN_ID} LUN ids in use")
                lun_id = free[0]
            new = state.copy()
            new.maps.append(MapRecord(lun, igroup, lun_id))
            await self._commit(new, tgt=True)
            return LunMap(lun, igroup, lun_id)

    async def unmap_lun(self, lun: str, igroup: str) -> None:
        check_name("LUN", lun)
        check_name("igroup", igroup)
        async with self._session() as state:
            if not state.maps_of(lun=lun, igroup=igroup):
                return
            new = state.copy()
            new.maps = [m for m in new.maps if not (m.lun == lun and m.igroup == igroup)]
            await self._commit(new, tgt=True)

    async def list_mappings(self, lun: str | None = None, igroup: str | None = None) -> list[LunMap]:
        async with self._session() as state:
            return [LunMap(m.lun, m.igroup, m.lun_id) for m in state.maps_of(lun=lun, igroup=igroup)]

    # -- snapshots and clones -------------------------------------------------------------

    async def create_snapshot(self, lun: str, name: str) -> Snapshot:
        """A copy of the LUN's backing file. With reflink (btrfs, XFS) the copy is one atomic
        clone and crash-consistent even under writes; a plain sparse copy (ext4) of a LUN that
        is being written may mix older and newer blocks, so quiesce the writer first (a lab
        compromise). Data that initiators have not flushed is never in it."""
        check_name("LUN", lun)
        check_name("snapshot", name)
        async with self._session() as state:
            rec = self._need_lun(state, lun)
            old = state.snapshots.get(name)
            if old is not None:
                if old.lun == lun and old.lun_naa == rec.naa:
                    return snapshot_of(name, old)
                raise AlreadyExists(
                    f"snapshot {name} exists and belongs to another LUN ({old.lun}, naa.{old.lun_naa}): "
                    "use another name"
                )
            source, target = self._lun_path(lun, rec.pool), self._snapshot_path(name, rec.pool)
            await copy_file(self._runner, source, target, rec.pool, self.config.copy_timeout)
            new = state.copy()
            new.snapshots[name] = SnapshotRecord(lun, rec.pool, rec.size_bytes, datetime.now(UTC), rec.naa)
            await self._commit(new, tgt=False)
            return snapshot_of(name, new.snapshots[name])

    async def list_snapshots(self, lun: str | None = None) -> list[Snapshot]:
        """Snapshots (of `lun`: of the LUN of that name now, or of a deleted one)."""
        async with self._session() as state:
            current = state.luns.get(lun) if lun is not None else None
            return [
                snapshot_of(name, rec)
                for name, rec in sorted(state.snapshots.items())
                if lun is None or (rec.lun == lun and (current is None or current.naa == rec.lun_naa))
            ]

    async def delete_snapshot(self, name: str) -> None:
        """Clones stay: they are independent copies. A missing snapshot is success."""
        check_name("snapshot", name)
        async with self._session() as state:
            rec = state.snapshots.get(name)
            if rec is None:
                return
            new = state.copy()
            del new.snapshots[name]
            await self._commit(new, tgt=False)
            await asyncio.to_thread(self._snapshot_path(name, rec.pool).unlink, missing_ok=True)

    async def clone_lun(self, snapshot: str, name: str) -> Lun:
        check_name("snapshot", snapshot)
        check_name("LUN", name)
        async with self._session() as state:
            snap = state.snapshots.get(snapshot)
            if snap is None:
                raise NotFound(f"snapshot {snapshot!r} does not exist on tgtd -C {self.config.control}")
            old = state.luns.get(name)
            if old is not None:
                if old.source_snapshot == snapshot and old.size_bytes == snap.size_bytes:
                    return lun_of(name, old)
                raise AlreadyExists(f"LUN {name} exists and is not a clone of snapshot {snapshot}")
            source = self._snapshot_path(snapshot, snap.pool)
            target = self._lun_path(name, snap.pool)
            await copy_file(self._runner, source, target, snap.pool, self.config.copy_timeout)
            new = state.copy()
            naa, serial = new.allocate_ids()
            new.luns[name] = LunRecord(snap.pool, snap.size_bytes, serial, naa, snapshot)
            await self._commit(new, tgt=False)
            return lun_of(name, new.luns[name])

    async def close(self) -> None:
        self._file.close()
