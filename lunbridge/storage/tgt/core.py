"""What every tgt backend operation shares: the state file, the lock that serializes calls,
the synchronisation of tgtd with the state, and the paths of backing files.

Each call runs in `_session`: it takes the asyncio lock and the state file's advisory lock,
reloads the state if another process changed it, and brings tgtd in line with it
(`sync.reconcile`: targets, LUs, ACLs and CHAP accounts) when it may not be: the first time,
after the state was reloaded, after a call that failed, when tgtd was restarted (another pid
holds its lock file), and otherwise at most every `sync_seconds` (a change made behind the
backend's back, or a tgtd that died, is found within that). In between, a read is answered
from the state alone: `tgtadm --op show` costs more the more LUs tgtd serves, and the state is
the truth tgtd is made to hold. A change is `_commit`ted: applied to tgtd when it touches
targets (only its own commands, against the picture of tgtd the last sync or change left,
when tgtd is in line; else after a full sync), then saved; a failed change is not saved, and
the next session takes tgtd back to the saved state. A read that arrives while a call holds
the session answers from the last committed state at once, rather than queueing behind
every change waiting for the lock (what a burst of many disks at once would otherwise do).
CHAP accounts whose secret tgtd may hold wrongly (the state's `reset_accounts`, left by a
secret change that did not finish) are re-created by the next session, which then saves the
state without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path

from lunbridge.command import Runner, run
from lunbridge.errors import NotFound, Unavailable
from lunbridge.san import Transport
from lunbridge.storage.base import Pool, Portal, check_name
from lunbridge.storage.tgt import chap
from lunbridge.storage.tgt.admin import ShownTarget, Tgtadm
from lunbridge.storage.tgt.config import TgtConfig
from lunbridge.storage.tgt.files import pool_usage
from lunbridge.storage.tgt.state import IgroupRecord, LunRecord, State, StateFile
from lunbridge.storage.tgt.sync import DesiredLu, DesiredTarget, reconcile

FLOCK = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (64-bit Linux)


class TgtCore:
    """The shared part of `TgtBackend` (see `lunbridge.storage.tgt.backend`)."""

    def __init__(self, config: TgtConfig, runner: Runner = run, *, sync_seconds: float = 5.0) -> None:
        self.config = config
        self._adm = Tgtadm(config.control, config.portal, config.timeout, runner)
        self._runner = runner
        self._lock = asyncio.Lock()
        self._sessions = 0  # calls that hold the lock or wait for it
        self._file = StateFile(config.state_file, config.timeout)
        self._state: State | None = None
        self.sync_seconds = sync_seconds
        self.control_lock = Path(f"/var/run/tgtd/socket.{config.control}.lock")
        self._synced: tuple[float, int | None] | None = None  # when, and which tgtd (its pid)
        self._picture: dict[str, ShownTarget] | None = None  # what tgtd holds, after the last sync or change

    def target_name(self, igroup: str) -> str:
        """The IQN of the tgt target that serves iSCSI igroup `igroup`."""
        return self.config.iqn_prefix + check_name("igroup", igroup)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[State]:
        """Serialize, load the state if another process changed it, and bring tgtd in line."""
        self._sessions += 1
        try:
            async with self._lock, self._file.locked():
                state = await self._load()
                commands = self._adm.commands
                try:
                    yield state
                except BaseException:
                    if self._adm.commands != commands:  # tgtd may be half-changed: look at it next time
                        self._synced, self._picture = None, None
                    raise
        finally:
            self._sessions -= 1

    async def _load(self) -> State:
        """The state (read again if another process changed it), with tgtd in line with it."""
        if self._state is None or self._file.changed():
            self._state = await asyncio.to_thread(self._file.load)
            self._synced = None
        state = self._state
        if self._needs_sync(state):
            await self._reconcile(state, state.reset_accounts)
            if state.reset_accounts:  # re-created with the recorded secrets: done
                done = state.copy()
                done.reset_accounts = frozenset()
                await self._commit(done, tgt=False)
        return self._state

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[State]:
        """The state a read answers from: while other calls hold the session or wait for it,
        the last committed one (as if the read ran just before their changes), without waiting;
        else a session of its own, which first brings tgtd in line if that is due."""
        if self._sessions and self._state is not None:
            yield self._state
            return
        async with self._session() as state:
            yield state

    def _needs_sync(self, state: State) -> bool:
        if self._synced is None or state.reset_accounts:
            return True
        when, tgtd = self._synced
        return tgtd is None or tgtd != self._tgtd() or time.monotonic() - when >= self.sync_seconds

    def _tgtd(self) -> int | None:
        """The pid of the tgtd that runs on the control port: tgtd holds a lock on
        `<socket>.lock` while it runs (`lockf`, tgt's usr/mgmt.c), which F_GETLK shows without
        touching tgtd (tgt 1.0.85 never closes a control connection that sends nothing: probing
        the socket itself leaks one each time, and tgtd ends up spinning). A restarted tgtd is
        a new pid; None when no tgtd holds the lock, or there is no file to tell by: then the
        next `show` says what is wrong."""
        try:
            with open(self.control_lock, "rb") as lock:
                asked = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
                kind, _, _, _, pid = struct.unpack(FLOCK, fcntl.fcntl(lock, fcntl.F_GETLK, asked))
        except OSError:
            return None
        return pid if kind != fcntl.F_UNLCK and pid > 0 else None

    async def _commit(self, state: State, *, tgt: bool, reset: Collection[str] = ()) -> None:
        """Apply `state` to tgtd (when it changes targets), re-creating the CHAP accounts of
        `reset`, then save it."""
        if tgt:
            synced, self._synced = self._synced, None  # None until tgtd holds `state`
            await self._reconcile(state, reset, since=synced if self._picture is not None else None)
        await asyncio.to_thread(self._file.save, state)
        self._state = state

    async def _reconcile(
        self, state: State, reset: Collection[str], *, since: tuple[float, int | None] | None = None
    ) -> None:
        """Make tgtd hold `state`: from a `show` of it, or, given `since` (the last sync, after
        which tgtd has held the picture that sync and the changes since left), by that picture."""
        accounts = chap.accounts(state.igroups)
        tgtd = None if since is not None else self._tgtd()
        shown, self._picture = (self._picture if since is not None else None), None
        self._picture = await reconcile(
            self._adm, self._desired(state), self.config.iqn_prefix, accounts, reset, shown
        )
        self._synced = since or (time.monotonic(), tgtd)

    async def sync(self) -> None:
        """Re-apply the saved state to tgtd now (other calls do it when it may be due)."""
        self._synced = None
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
            incoming, outgoing = frozenset[str](), None
            if group.chap is not None:
                incoming, outgoing = frozenset({group.chap.user}), group.chap.mutual_user
            desired[target] = DesiredTarget(target, frozenset(group.initiators), luns, incoming, outgoing)
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

    def _need_lun(self, state: State, name: str) -> LunRecord:
        rec = state.luns.get(name)
        if rec is None:
            raise NotFound(f"LUN {name!r} does not exist on tgtd -C {self.config.control}")
        return rec

    def _need_igroup(self, state: State, name: str) -> IgroupRecord:
        rec = state.igroups.get(name)
        if rec is None:
            raise NotFound(f"igroup {name!r} does not exist on tgtd -C {self.config.control}")
        return rec

    async def pools(self) -> list[Pool]:
        async with self._session():
            pools = self.config.pools
            return [await asyncio.to_thread(pool_usage, name, pools[name]) for name in self.config.pool_names]

    async def portals(self) -> list[Portal]:
        return [Portal(self.config.portal)]

    async def login_portals(self, igroup: str) -> list[Portal]:
        """`nodePortals` (else `portal`), each with the target that serves `igroup`."""
        check_name("igroup", igroup)
        async with self._read() as state:
            self._need_igroup(state, igroup)
        target = self.target_name(igroup)
        return [Portal(address, target) for address in self.config.node_portals or (self.config.portal,)]

    async def close(self) -> None:
        self._file.close()
