"""The ontap backend's LUNs, snapshots, clones and restores, each LUN in a FlexVol of its own
(see `core` for the layout and why).

Every step can be repeated after a crash at any point: a FlexVol without its LUN gets the LUN,
a FlexClone whose LUN still has its parent's name gets the new name, a restore finds the size
to grow back to on the FlexVol.
"""

from __future__ import annotations

import asyncio
import time

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.storage.base import Lun, Pool, Snapshot
from lunbridge.storage.ontap.client import Record
from lunbridge.storage.ontap.core import (
    LUN_OS_TYPE,
    OntapCore,
    check_name,
    comment,
    created,
    dig,
    parse_comment,
    volume_size,
)
from lunbridge.storage.ontap.identity import same_size

# ONTAP codes met on the way whose meaning is "already there" for that step only
LUN_EXISTS = ("5374242", "5440688", "1260136")
SNAPSHOT_EXISTS = ("525059",)
SAME_SIZE = ("1254226",)
SNAPSHOT_GONE = ("1638600",)


class LunOperations(OntapCore):
    """Pools, LUNs (create, get, list, grow, delete), snapshots, clones and restores."""

    async def pools(self) -> list[Pool]:
        """The SVM's aggregates (or the configured ones) with their free space; ONTAP reports no
        total to an SVM, so a pool's size is its free space."""
        svm = await self.client.first(
            f"reading SVM {self.config.svm}",
            "svm",
            "uuid,name,aggregates.name,aggregates.available_size",
            name=self.config.svm,
        )
        if svm is None:
            raise NotFound(f"SVM {self.config.svm!r} does not exist on the cluster (settings.svm)")
        pools = [
            Pool(str(a["name"]), int(a.get("available_size", 0)), int(a.get("available_size", 0)))
            for a in svm.get("aggregates", [])
        ]
        if self.config.aggregates:
            pools = [p for p in pools if p.name in self.config.aggregates]
        return pools

    async def _pool(self, pool: str | None) -> str:
        names = list(self.config.aggregates) or [p.name for p in await self.pools()]
        if not names:
            raise NotFound(f"SVM {self.config.svm} has no aggregate to put FlexVols on (settings.aggregates)")
        if pool is None:
            return names[0]
        if pool not in names:
            raise NotFound(
                f"pool {pool!r} is not an aggregate of SVM {self.config.svm}; pools: {', '.join(names)}"
            )
        return pool

    # -- LUNs -----------------------------------------------------------------------------

    async def create_lun(self, name: str, size_bytes: int, pool: str | None = None) -> Lun:
        volume = self.volume_name(name)
        if size_bytes <= 0:
            raise InvalidArgument(f"LUN {name} size must be positive, not {size_bytes}")
        existing = await self.find_lun(name)
        if existing is not None:
            return self._same(name, existing, size_bytes)
        aggregate = await self._pool(pool)
        if await self.find_volume(volume) is None:
            body = {
                "name": volume,
                "aggregates": [{"name": aggregate}],
                "size": volume_size(size_bytes),
                "guarantee": {"type": "volume" if self.config.space_reservation else "none"},
                "snapshot_policy": {"name": "none"},
                "autosize": {"mode": "grow"},
                "comment": comment(lun=name, size=size_bytes),
            }
            await self.client.create(f"creating FlexVol {volume} for LUN {name}", "volume", body)
        body = {
            "name": self.lun_path(name),
            "os_type": LUN_OS_TYPE,
            "space": {"size": size_bytes, "guarantee": {"requested": self.config.space_reservation}},
            "comment": comment(pool=aggregate),
        }
        await self.client.create(f"creating LUN {name}", "lun", body, done=LUN_EXISTS)
        return self._same(name, await self.need_lun(name), size_bytes)

    def _same(self, name: str, record: dict[str, object], size_bytes: int) -> Lun:
        lun = self.lun_of(record)
        if not same_size(size_bytes, lun.size_bytes):
            raise AlreadyExists(
                f"LUN {name} exists with {lun.size_bytes} bytes, not {size_bytes}: "
                "resize it, or delete it first"
            )
        return lun

    async def get_lun(self, name: str) -> Lun:
        return self.lun_of(await self.need_lun(check_name("LUN", name)))

    async def list_luns(self) -> list[Lun]:
        found = await self.client.records(
            "listing lunbridge's LUNs",
            "lun",
            "uuid,name,serial_number,space.size,comment",
            name=f"/vol/{self.config.flexvol_prefix}*/*",
        )
        return sorted((self.lun_of(r) for r in found), key=lambda lun: lun.name)

    async def resize_lun(self, name: str, size_bytes: int) -> Lun:
        """Grow the FlexVol (and record the size on it), then the LUN; ONTAP rounds sizes up,
        so a size within its rounding of the current one is no change."""
        record = await self.need_lun(check_name("LUN", name))
        current = int(dig(record, "space.size", 0))
        if size_bytes <= current:
            if same_size(size_bytes, current):
                return self.lun_of(record)
            raise InvalidArgument(
                f"LUN {name} has {current} bytes; it can grow but not shrink to {size_bytes}"
            )
        volume = str(dig(record, "location.volume.uuid"))
        held = await self.client.first(
            f"reading the FlexVol of LUN {name}", "volume", "uuid,size", uuid=volume
        )
        body: dict[str, object] = {"comment": comment(lun=name, size=size_bytes)}
        if held is None or int(held.get("size", 0)) < volume_size(size_bytes):
            body["size"] = volume_size(size_bytes)
        await self.client.modify(f"growing the FlexVol of LUN {name}", "volume", {"uuid": volume}, body)
        await self.client.modify(
            f"growing LUN {name} to {size_bytes} bytes",
            "lun",
            {"uuid": record["uuid"]},
            {"space": {"size": size_bytes}},
            done=SAME_SIZE,
        )
        return self.lun_of(await self.need_lun(name))

    async def delete_lun(self, name: str) -> None:
        """Delete the LUN, then its FlexVol unless snapshots of it are left (they are deleted
        with the last of them). Conflict while the LUN is mapped."""
        record = await self.find_lun(check_name("LUN", name))
        if record is not None:
            maps = record.get("lun_maps") or []
            if maps:
                igroups = ", ".join(sorted(str(dig(m, "igroup.name", "?")) for m in maps))
                raise Conflict(f"LUN {name} is mapped to igroup {igroups}: unmap it first")
            await self.client.remove(f"deleting LUN {name}", "lun", {"uuid": record["uuid"]}, done=("4",))
        await self._drop_volume_if_empty(self.volume_name(name))

    async def _drop_volume_if_empty(self, volume: str) -> None:
        held = await self.find_volume(volume)
        if held is None:
            return
        uuid = str(held["uuid"])
        if await self.client.first(
            f"reading the LUNs of FlexVol {volume}", "lun", "uuid", name=f"/vol/{volume}/*"
        ):
            return
        if await self.volume_snapshots(uuid):
            return
        await self.client.remove(f"deleting FlexVol {volume}", "volume", {"uuid": uuid}, done=("4",))

    # -- snapshots ------------------------------------------------------------------------

    async def create_snapshot(self, lun: str, name: str) -> Snapshot:
        """A snapshot of the LUN's FlexVol (ONTAP snapshots are point-in-time: every write
        acknowledged before it is in it, none after)."""
        check_name("snapshot", name)
        record = await self.need_lun(check_name("LUN", lun))
        volume = str(dig(record, "location.volume.uuid"))
        other = self._snapshot_volumes.get(name)
        if other is not None and other != volume:
            raise AlreadyExists(f"snapshot {name} exists, of another LUN than {lun}")
        size = int(dig(record, "space.size", 0))
        await self.client.create(
            f"creating snapshot {name} of LUN {lun}",
            "snapshot",
            {"name": name, "comment": comment(lun=lun, size=size, at=round(time.time(), 6))},
            (volume,),
            done=SNAPSHOT_EXISTS,
        )
        found = await self.volume_snapshots(volume, name=name)
        snap = self.snapshot_of(found[0]) if found else None
        if snap is None or snap.lun != lun:
            raise AlreadyExists(
                f"snapshot {name} exists on FlexVol of LUN {lun}, but lunbridge did not make it"
            )
        return snap

    async def list_snapshots(self, lun: str | None = None) -> list[Snapshot]:
        if lun is not None:
            volume = await self.find_volume(self.volume_name(lun))
            volumes = [volume] if volume is not None else []
        else:
            volumes = await self.our_volumes()
        found = await asyncio.gather(*(self.volume_snapshots(str(v["uuid"])) for v in volumes))
        snaps = [s for records in found for r in records if (s := self.snapshot_of(r)) is not None]
        return sorted(snaps, key=lambda s: (s.lun, s.created, s.name))

    async def delete_snapshot(self, name: str) -> None:
        """Busy while a clone made from it is still being split from it."""
        record = await self.find_snapshot(check_name("snapshot", name))
        if record is None:
            return
        volume = str(dig(record, "volume.uuid"))
        await self.client.remove(
            f"deleting snapshot {name}", "snapshot", {"uuid": record["uuid"]}, (volume,), done=SNAPSHOT_GONE
        )
        self._snapshot_volumes.pop(name, None)
        await self._drop_volume_if_empty(str(dig(record, "volume.name")))

    async def clone_lun(self, snapshot: str, name: str) -> Lun:
        """A FlexClone of the snapshot's FlexVol holding the new LUN (a new serial, so a new
        NAA), split from the snapshot at once so the snapshot can be deleted later."""
        check_name("snapshot", snapshot)
        existing = await self.find_lun(check_name("LUN", name))
        if existing is not None:
            lun = self.lun_of(existing)
            if lun.source_snapshot != snapshot:
                raise AlreadyExists(f"LUN {name} exists, and was not cloned from snapshot {snapshot}")
            return lun
        source = await self.find_snapshot(snapshot)
        if source is None:
            raise NotFound(f"snapshot {snapshot!r} does not exist on SVM {self.config.svm}")
        notes = parse_comment(source.get("comment"))
        volume = self.volume_name(name)
        if await self.find_volume(volume) is None:
            body = {
                "name": volume,
                "clone": {
                    "is_flexclone": True,
                    "parent_volume": {"name": dig(source, "volume.name")},
                    "parent_snapshot": {"name": snapshot},
                },
                "comment": comment(lun=name, size=int(notes.get("size", 0))),
            }
            await self.client.create(f"cloning snapshot {snapshot} into FlexVol {volume}", "volume", body)
        inside = await self.client.first(
            f"reading the LUN of FlexClone {volume}",
            "lun",
            "uuid,name,serial_number,enabled",
            name=f"/vol/{volume}/*",
        )
        if inside is None:
            raise NotFound(f"snapshot {snapshot} holds no LUN (FlexClone {volume} is empty)")
        parent = await self.client.first(
            "reading the parent LUN", "lun", "serial_number", name=f"/vol/{dig(source, 'volume.name')}/*"
        )
        if parent is not None and parent.get("serial_number") == inside.get("serial_number"):
            raise Conflict(
                f"the LUN of FlexClone {volume} has its parent's serial number; it would share its NAA"
            )
        change: dict[str, object] = {
            "name": self.lun_path(name),
            "comment": comment(pool=notes.get("pool", ""), source=snapshot),
        }
        if inside.get("enabled") is False:  # ONTAP may leave a FlexClone's LUNs offline
            change["enabled"] = True
        await self.client.modify(
            f"naming the LUN of FlexClone {volume} {name}", "lun", {"uuid": inside["uuid"]}, change
        )
        held = await self.find_volume(volume)
        if held is not None:
            await self.client.modify(
                f"splitting FlexClone {volume} from snapshot {snapshot}",
                "volume",
                {"uuid": held["uuid"]},
                {"clone": {"split_initiated": True}},
            )
        return self.lun_of(await self.need_lun(name))

    async def create_group_snapshot(self, members: dict[str, str], limit: float = 5.0) -> list[Snapshot]:
        raise Conflict(
            "group snapshots of several disks need ONTAP consistency groups, which the ontap backend "
            "does not drive yet; take one VolumeSnapshot per disk, or use a backend that cuts groups (tgt)"
        )

    async def revert_lun(self, name: str, snapshot: str) -> Lun:
        """A volume SnapRestore of the LUN's own FlexVol (atomic in ONTAP; same LUN, serial and
        NAA), then the LUN grown back to the size it had. Refused while the LUN is mapped, and
        when snapshots newer than `snapshot` exist: ONTAP's SnapRestore would delete them."""
        check_name("snapshot", snapshot)
        record = await self.need_lun(check_name("LUN", name))
        if record.get("lun_maps"):
            raise Conflict(f"LUN {name} is mapped: unmap it before restoring snapshot {snapshot} into it")
        volume = str(dig(record, "location.volume.uuid"))
        snaps = await self.volume_snapshots(volume)
        chosen = next((s for s in snaps if s.get("name") == snapshot), None)
        if chosen is None:
            raise NotFound(f"snapshot {snapshot!r} of LUN {name} does not exist")
        newer = sorted(str(s["name"]) for s in snaps if s is not chosen and _maybe_newer(s, chosen))
        if newer:
            raise Conflict(
                f"snapshots {', '.join(newer)} of LUN {name} are newer than {snapshot}, and ONTAP's "
                "SnapRestore would delete them: delete them first, or restore into a new disk (a clone)"
            )
        held = await self.client.first("reading the FlexVol", "volume", "uuid,comment", uuid=volume)
        wanted = max(
            int(dig(record, "space.size", 0)), int(parse_comment((held or {}).get("comment")).get("size", 0))
        )
        await self.client.modify(
            f"recording the size of LUN {name}",
            "volume",
            {"uuid": volume},
            {"comment": comment(lun=name, size=wanted)},
        )
        await self.client.modify(
            f"restoring snapshot {snapshot} into LUN {name}",
            "volume",
            {"uuid": volume},
            {},
            **{"restore_to.snapshot.name": snapshot},
        )
        restored = await self.need_lun(name)
        if int(dig(restored, "space.size", 0)) < wanted:
            await self.client.modify(
                f"growing LUN {name} back to {wanted} bytes",
                "lun",
                {"uuid": restored["uuid"]},
                {"space": {"size": wanted}},
                done=SAME_SIZE,
            )
            restored = await self.need_lun(name)
        return self.lun_of(restored)


def _maybe_newer(other: Record, chosen: Record) -> bool:
    """Whether snapshot `other` may be newer than `chosen`: ONTAP's create_time has whole
    seconds, so without lunbridge's own time on both, the same second counts as newer."""
    precise = all(
        isinstance(parse_comment(r.get("comment")).get("at"), (int, float)) for r in (other, chosen)
    )
    if precise:
        return created(other) > created(chosen)
    return int(created(other).timestamp()) >= int(created(chosen).timestamp())
