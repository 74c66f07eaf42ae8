"""The tgt backend's LUNs, snapshots and clones: sparse backing files in the pools, each LUN
with ids (NAA, serial) that are never handed out twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from lunbridge.storage.base import Lun, Snapshot, check_name
from lunbridge.storage.tgt.config import lun_of, round_size, snapshot_of
from lunbridge.storage.tgt.core import TgtCore
from lunbridge.storage.tgt.fence import io_fenced
from lunbridge.storage.tgt.files import NoReflink, clone_file, cut, grow_file, make_sparse
from lunbridge.storage.tgt.state import LunRecord, SnapshotRecord


class LunOperations(TgtCore):
    """LUNs (create, get, list, grow, delete), snapshots and clones."""

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
        async with self._read() as state:
            return lun_of(name, self._need_lun(state, name))

    async def list_luns(self) -> list[Lun]:
        async with self._read() as state:
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
            self._picture = None  # what follows changes tgtd behind it: the commit looks again
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
            # the file first: a LUN whose file could not go stays in the state, and a retry
            # finishes it (the other order would forget a file that is still there)
            path = self._lun_path(name, rec.pool)
            try:
                await asyncio.to_thread(path.unlink, missing_ok=True)
            except OSError as exc:
                raise Unavailable(
                    f"cannot remove the backing file {path} of LUN {name}: {exc.strerror}"
                ) from exc
            new = state.copy()
            del new.luns[name]
            await self._commit(new, tgt=False)

    # -- snapshots and clones -------------------------------------------------------------

    async def create_snapshot(self, lun: str, name: str) -> Snapshot:
        """A point-in-time copy of the LUN (`files.cut`): a reflink clone of its backing file,
        atomic under writes; on a pool without reflink, a plain copy of a LUN that no igroup
        maps, and Conflict for a mapped one. Writes initiators have not flushed to tgtd are not
        in it (a snapshot is crash-consistent, not application-consistent)."""
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
            maps = state.maps_of(lun=lun)
            in_use = f"mapped to igroup(s) {', '.join(m.igroup for m in maps)}" if maps else None
            source, target = self._lun_path(lun, rec.pool), self._snapshot_path(name, rec.pool)
            await cut(self._runner, source, target, rec.pool, self.config.copy_timeout, in_use=in_use)
            new = state.copy()
            new.snapshots[name] = SnapshotRecord(lun, rec.pool, rec.size_bytes, datetime.now(UTC), rec.naa)
            await self._commit(new, tgt=False)
            return snapshot_of(name, new.snapshots[name])

    async def list_snapshots(self, lun: str | None = None) -> list[Snapshot]:
        """Snapshots (of `lun`: of the LUN of that name now, or of a deleted one)."""
        async with self._read() as state:
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
            # nothing writes a snapshot: a plain copy is as good as a clone, only slower
            await cut(self._runner, source, target, snap.pool, self.config.copy_timeout, in_use=None)
            new = state.copy()
            naa, serial = new.allocate_ids()
            new.luns[name] = LunRecord(snap.pool, snap.size_bytes, serial, naa, snapshot)
            await self._commit(new, tgt=False)
            return lun_of(name, new.luns[name])

    async def revert_lun(self, name: str, snapshot: str) -> Lun:
        """The snapshot's file is cloned (or copied) beside the LUN's, grown to the LUN's size,
        then renamed over it: rename is atomic, so a crash leaves the old file or the restored
        one (and at most a temporary file, replaced by the next try). The LUN must be unmapped,
        so no LU holds the old file open."""
        check_name("LUN", name)
        check_name("snapshot", snapshot)
        async with self._session() as state:
            rec = self._need_lun(state, name)
            snap = state.snapshots.get(snapshot)
            if snap is None:
                raise NotFound(f"snapshot {snapshot!r} does not exist on tgtd -C {self.config.control}")
            maps = state.maps_of(lun=name)
            if maps:
                raise Conflict(
                    f"LUN {name} is mapped to igroup(s) {', '.join(m.igroup for m in maps)}: an initiator "
                    "would see its content change; unmap it before a restore"
                )
            if snap.pool != rec.pool:
                raise InvalidArgument(
                    f"snapshot {snapshot} is in pool {snap.pool}, LUN {name} in pool {rec.pool}"
                )
            target = self._lun_path(name, rec.pool)
            staged = target.with_name(f"{target.name}.restore")
            source = self._snapshot_path(snapshot, snap.pool)
            await cut(self._runner, source, staged, snap.pool, self.config.copy_timeout, in_use=None)
            size = max(rec.size_bytes, snap.size_bytes)
            await asyncio.to_thread(grow_file, staged, size)
            await self._after_copy()
            await asyncio.to_thread(os.replace, staged, target)
            if size != rec.size_bytes:
                new = state.copy()
                new.luns[name] = LunRecord(rec.pool, size, rec.serial, rec.naa, rec.source_snapshot)
                await self._commit(new, tgt=False)
                return lun_of(name, new.luns[name])
            return lun_of(name, rec)

    async def _after_copy(self) -> None:
        """Fault injection for tests: LUNBRIDGE_CRASH_DURING_RESTORE=1 kills the process after the
        restored copy is made and before it replaces the LUN's file."""
        if os.environ.get("LUNBRIDGE_CRASH_DURING_RESTORE") == "1":
            os.kill(os.getpid(), signal.SIGKILL)

    async def create_group_snapshot(self, members: dict[str, str], limit: float = 5.0) -> list[Snapshot]:
        """Snapshots of several LUNs at one instant (`members`: LUN -> snapshot name): tgtd's
        I/O is fenced (`fence.io_fenced`) while every file is cloned, then released. Only
        reflink clones fit in a fence: a pool that cannot clone refuses (Conflict), as does a
        fence that outlasted `limit` seconds; either way no member snapshot is left. A group
        that no igroup maps needs no fence (nothing writes). Idempotent when every snapshot
        of that name exists and is of its LUN."""
        for lun, name in members.items():
            check_name("LUN", lun)
            check_name("snapshot", name)
        async with self._session() as state:
            recs = {lun: self._need_lun(state, lun) for lun in members}
            existing = {n: state.snapshots.get(n) for n in members.values()}
            if all(existing.values()):
                wrong = [n for lun, n in members.items() if (s := existing[n]) is not None and s.lun != lun]
                if not wrong:
                    return [snapshot_of(n, s) for n, s in existing.items() if s is not None]
                raise AlreadyExists(f"snapshot(s) {', '.join(wrong)} exist and belong to other LUNs")
            mapped = any(state.maps_of(lun=lun) for lun in members)
            made: list[Path] = []
            try:
                fence = io_fenced(self.config.control, limit) if mapped else contextlib.nullcontext(None)
                async with fence as deadline:
                    for lun, name in members.items():
                        if made:
                            await asyncio.sleep(_test_pause())
                        target = self._snapshot_path(name, recs[lun].pool)
                        await asyncio.to_thread(clone_file, self._lun_path(lun, recs[lun].pool), target)
                        made.append(target)
                    took_too_long = deadline is not None and time.monotonic() > deadline
                if took_too_long:
                    raise Conflict(f"the group's I/O fence outlasted {limit}s; no group snapshot was kept")
            except NoReflink:
                await self._drop(made)
                raise Conflict(
                    "a group snapshot needs a pool with reflink (XFS made with reflink=1, or btrfs): "
                    "its LUNs are cloned inside a short I/O fence, and a copy cannot fit in one"
                ) from None
            except BaseException:
                await self._drop(made)
                raise
            new = state.copy()
            created = datetime.now(UTC)
            for lun, name in members.items():
                rec = recs[lun]
                new.snapshots[name] = SnapshotRecord(lun, rec.pool, rec.size_bytes, created, rec.naa)
            await self._commit(new, tgt=False)
            return [snapshot_of(name, new.snapshots[name]) for name in members.values()]

    async def _drop(self, files: list[Path]) -> None:
        for path in files:
            await asyncio.to_thread(path.unlink, missing_ok=True)


def _test_pause() -> float:
    """Fault injection for tests: LUNBRIDGE_GROUP_CUT_PAUSE=<seconds> between the clones of a
    group cut, so that a cut without its fence would visibly mix instants."""
    try:
        return max(float(os.environ.get("LUNBRIDGE_GROUP_CUT_PAUSE", "0")), 0.0)
    except ValueError:
        return 0.0
