"""The tgt backend's initiator groups and maps: an iSCSI igroup is a tgt target whose ACL is
its initiators, and a LUN mapped to it is an LU of that target numbered by the map's LUN id.
An iSCSI igroup may also ask its initiators for CHAP (`set_chap`): tgtd accounts bound to its
target, kept in the state file with the igroup (see `chap` for the model and its errors)."""

from __future__ import annotations

from dataclasses import replace

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, LimitExceeded
from lunbridge.san import Transport, canonical_initiators
from lunbridge.storage.base import DEFAULT_OS_TYPE, Chap, InitiatorGroup, check_name, check_os_type
from lunbridge.storage.base import Mapping as LunMap
from lunbridge.storage.tgt import chap as chaps
from lunbridge.storage.tgt.config import MAX_LUN_ID, check_lun_id, igroup_of
from lunbridge.storage.tgt.core import TgtCore
from lunbridge.storage.tgt.state import IgroupRecord, MapRecord


class GroupOperations(TgtCore):
    """Initiator groups (create, get, list, change initiators, delete) and LUN maps."""

    # -- initiator groups -----------------------------------------------------------------

    async def create_igroup(
        self, name: str, transport: Transport, initiators: list[str], os_type: str = DEFAULT_OS_TYPE
    ) -> InitiatorGroup:
        """An igroup; an iSCSI one is a tgt target at once (empty ACL: nobody may log in).
        tgt has no OS types: `os_type` is recorded and reported, nothing more."""
        check_name("igroup", name)
        os_type = check_os_type(os_type)
        try:
            transport = Transport(transport)
        except ValueError:
            raise InvalidArgument(f"transport {transport!r} is neither 'iscsi' nor 'fcp'") from None
        wanted = canonical_initiators(transport, initiators)
        async with self._session() as state:
            old = state.igroups.get(name)
            if old is not None:
                if old.transport is transport and set(old.initiators) == set(wanted):
                    if old.os_type != os_type:
                        new = state.copy()
                        new.igroups[name] = replace(old, os_type=os_type)
                        await self._commit(new, tgt=False)
                        return igroup_of(name, new.igroups[name])
                    return igroup_of(name, old)
                raise AlreadyExists(
                    f"igroup {name} exists as {old.transport} with initiators {list(old.initiators)}: "
                    "change it with add/remove initiators, or delete it first"
                )
            new = state.copy()
            new.igroups[name] = IgroupRecord(transport, wanted, os_type)
            await self._commit(new, tgt=transport is Transport.ISCSI)
            return igroup_of(name, new.igroups[name])

    async def get_igroup(self, name: str) -> InitiatorGroup:
        check_name("igroup", name)
        async with self._read() as state:
            return igroup_of(name, self._need_igroup(state, name))

    async def list_igroups(self) -> list[InitiatorGroup]:
        async with self._read() as state:
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
            new.igroups[name] = replace(rec, initiators=result)
            await self._commit(new, tgt=rec.transport is Transport.ISCSI)
            return igroup_of(name, new.igroups[name])

    async def set_chap(self, igroup: str, chap: Chap | None) -> None:
        """The CHAP the igroup's initiators log in with (None: none). The same CHAP again
        changes nothing; a new user or secret re-creates its tgtd account (tgtd shows no
        secret to compare), first marking it in the state so that a failure half-way is
        rolled back by the next call. An account nobody uses any more is deleted."""
        check_name("igroup", igroup)
        if chap is not None:
            chaps.check_chap(igroup, chap)
        async with self._session() as state:
            rec = self._need_igroup(state, igroup)
            chaps.need_iscsi(igroup, rec)
            if rec.chap == chap:
                return
            reset: frozenset[str] = frozenset()
            if chap is not None:
                chaps.check_shared(state, igroup, chap)
                reset = chaps.changed_users(state, chap)
                await self._check_foreign(igroup, chap, reset)
            if reset:
                marked = state.copy()
                marked.reset_accounts = state.reset_accounts | reset
                await self._commit(marked, tgt=False)
            new = state.copy()
            new.igroups[igroup] = replace(rec, chap=chap)
            await self._commit(new, tgt=True, reset=reset)

    async def _check_foreign(self, igroup: str, chap: Chap, users: frozenset[str]) -> None:
        """Conflict if another tool's target (outside the IQN prefix) binds one of `users`."""
        if not users:
            return
        foreign = {
            user: name
            for name, target in (await self._adm.show()).items()
            if not name.startswith(self.config.iqn_prefix)
            for user in target.accounts
            if user in users
        }
        chaps.check_foreign(igroup, chap, foreign)

    async def delete_igroup(self, name: str) -> None:
        """Conflict while LUNs are mapped to it; its CHAP accounts go with it unless another
        igroup uses them."""
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
        async with self._read() as state:
            return [LunMap(m.lun, m.igroup, m.lun_id) for m in state.maps_of(lun=lun, igroup=igroup)]
