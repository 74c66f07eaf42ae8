"""The ontap backend's snapshots, clones and restores: volume snapshots of a disk's own FlexVol,
FlexClones of them split at once, and volume SnapRestores (see `core` for the layout).

A snapshot and a restore of the same disk are serialized here (a snapshot taken while a
restore runs would be deleted by the SnapRestore); every step may be repeated after a crash:
a FlexClone whose LUN still has its parent's name gets the new name and its split, a restore
finds the size to grow back to on the FlexVol.
"""

from __future__ import annotations

import asyncio
import time

from lunbridge.errors import AlreadyExists, Busy, Conflict, NotFound
from lunbridge.storage.base import Lun, Snapshot, check_name
from lunbridge.storage.ontap.client import Record
from lunbridge.storage.ontap.core import (
    GONE,
    SNAPSHOT_FIELDS,
    OntapCore,
    comment,
    created,
    dig,
    parse_comment,
)

SNAPSHOT_EXISTS = ("525059",)
SNAPSHOT_GONE = ("1638600",)
SAME_SIZE = ("1254226",)


class SnapshotOperations(OntapCore):
    """Snapshots, clones and restores."""

    async def create_snapshot(self, lun: str, name: str) -> Snapshot:
        """A snapshot of the LUN's FlexVol (ONTAP snapshots are point-in-time: every write
        acknowledged before it is in it, none after). Busy while the disk is a FlexClone still
        being split from its parent (ONTAP takes no snapshot of it then)."""
        check_name("snapshot", name)
        async with self._disk_locks.hold(check_name("LUN", lun)):
            record = await self.need_lun(lun)
            volume = str(dig(record, "location.volume.uuid"))
            other = self._snapshot_volumes.get(name)
            if other and other != volume:
                raise AlreadyExists(f"snapshot {name} exists, of another LUN than {lun}")
            found = await self.volume_snapshots(volume, name=name)
            if not found:
                held = await self.find_volume(self.volume_name(lun))
                if held is not None and dig(held, "clone.is_flexclone"):
                    raise Busy(f"LUN {lun} is a clone still being split from its source snapshot; try again")
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
                    f"snapshot {name} exists on the FlexVol of LUN {lun}, but not made by lunbridge"
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
        """Busy while a clone made from it is still being split from it; the FlexVol of a
        deleted disk goes with its last snapshot."""
        record = await self.find_snapshot(check_name("snapshot", name))
        if record is None:
            return
        volume, volume_name = str(dig(record, "volume.uuid")), str(dig(record, "volume.name"))
        clones = await self.splitting_clones(volume_name, name)
        if clones:
            raise Busy(f"snapshot {name} waits for clones {', '.join(clones)} to be split from it")
        await self.client.remove(
            f"deleting snapshot {name}", "snapshot", {"uuid": record["uuid"]}, (volume,), done=SNAPSHOT_GONE
        )
        self.remember(name, GONE)
        await self.drop_volume_if_empty(volume_name)

    async def clone_lun(self, snapshot: str, name: str) -> Lun:
        """A FlexClone of the snapshot's FlexVol holding the new LUN (a new serial, so a new
        NAA), split from the snapshot at once so the snapshot can be deleted later."""
        check_name("snapshot", snapshot)
        volume = self.volume_name(check_name("LUN", name))
        existing = await self.find_lun(name)
        if existing is not None:
            lun = self.lun_of(existing)
            if lun.source_snapshot != snapshot:
                raise AlreadyExists(f"LUN {name} exists, and was not cloned from snapshot {snapshot}")
            await self._split(volume, snapshot)  # a crash may have come between the rename and the split
            return lun
        source = await self.find_snapshot(snapshot)
        if source is None:
            raise NotFound(f"snapshot {snapshot!r} does not exist on SVM {self.config.svm}")
        notes = parse_comment(source.get("comment"))
        parent_volume = str(dig(source, "volume.name"))
        if await self.find_volume(volume) is None:
            body = {
                "name": volume,
                "clone": {
                    "is_flexclone": True,
                    "parent_volume": {"name": parent_volume},
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
            "reading the parent LUN", "lun", "serial_number", name=f"/vol/{parent_volume}/{notes.get('lun')}"
        )
        if parent is not None and parent.get("serial_number") == inside.get("serial_number"):
            raise Conflict(
                f"the LUN of FlexClone {volume} has its parent's serial number; it would share its NAA"
            )
        change: dict[str, object] = {
            "name": self.lun_path(name),
            "comment": comment(pool=notes.get("pool", ""), source=snapshot, size=int(notes.get("size", 0))),
        }
        if inside.get("enabled") is False:  # ONTAP may leave a FlexClone's LUNs offline
            change["enabled"] = True
        await self.client.modify(
            f"naming the LUN of FlexClone {volume} {name}", "lun", {"uuid": inside["uuid"]}, change
        )
        await self._split(volume, snapshot)
        return self.lun_of(await self.need_lun(name))

    async def _split(self, volume: str, snapshot: str) -> None:
        held = await self.find_volume(volume)
        if held is None or not dig(held, "clone.is_flexclone") or dig(held, "clone.split_initiated"):
            return
        await self.client.modify(
            f"splitting FlexClone {volume} from snapshot {snapshot}",
            "volume",
            {"uuid": held["uuid"]},
            {"clone": {"split_initiated": True}},
        )

    async def create_group_snapshot(self, members: dict[str, str], limit: float = 5.0) -> list[Snapshot]:
        raise Conflict(
            "group snapshots of several disks need ONTAP consistency groups, which the ontap backend "
            "does not drive yet; take one VolumeSnapshot per disk, or use a backend that cuts groups (tgt)"
        )

    async def revert_lun(self, name: str, snapshot: str) -> Lun:
        """A volume SnapRestore of the LUN's own FlexVol (atomic in ONTAP; same LUN, serial and
        NAA), then the LUN grown back to the size it had. Refused while the LUN is mapped, and
        when any snapshot of the FlexVol may be newer than `snapshot` (lunbridge's or not):
        ONTAP's SnapRestore would delete it."""
        check_name("snapshot", snapshot)
        async with self._disk_locks.hold(check_name("LUN", name)):
            return await self._revert(name, snapshot)

    async def _revert(self, name: str, snapshot: str) -> Lun:
        record = await self.need_lun(name)
        if record.get("lun_maps"):
            raise Conflict(f"LUN {name} is mapped: unmap it before restoring snapshot {snapshot} into it")
        volume = str(dig(record, "location.volume.uuid"))
        every = await self.client.records(
            f"listing the snapshots of LUN {name}", "snapshot", SNAPSHOT_FIELDS, (volume,)
        )
        chosen = next((s for s in every if s.get("name") == snapshot), None)
        own = self.snapshot_of(chosen) if chosen is not None else None
        if chosen is None or own is None or own.lun != name:
            raise NotFound(f"snapshot {snapshot!r} of LUN {name} does not exist")
        newer = sorted(str(s["name"]) for s in every if s is not chosen and _maybe_newer(s, chosen))
        if newer:
            raise Conflict(
                f"snapshots {', '.join(newer)} of LUN {name} are newer than {snapshot}, and ONTAP's "
                "SnapRestore would delete them: delete them first, or restore into a new disk (a clone)"
            )
        held = await self.client.first("reading the FlexVol", "volume", "uuid,comment", uuid=volume)
        recorded = parse_comment((held or {}).get("comment")).get("size", 0)
        wanted = max(int(dig(record, "space.size", 0)), int(recorded))
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
            pool = self.lun_of(restored).pool
            await self.client.modify(
                f"growing LUN {name} back to {wanted} bytes",
                "lun",
                {"uuid": restored["uuid"]},
                {"space": {"size": wanted}, "comment": comment(pool=pool, size=wanted)},
                done=SAME_SIZE,
            )
            restored = await self.need_lun(name)
        return self.lun_of(restored)


def _maybe_newer(other: Record, chosen: Record) -> bool:
    """Whether snapshot `other` may be newer than `chosen`: ONTAP's create_time has whole
    seconds, so without lunbridge's own time on both, the same second counts as newer."""
    if any(not r.get("create_time") and "at" not in parse_comment(r.get("comment")) for r in (other, chosen)):
        return True  # no time known: it may be newer
    precise = all(
        isinstance(parse_comment(r.get("comment")).get("at"), (int, float)) for r in (other, chosen)
    )
    if precise:
        return created(other) > created(chosen)
    return int(created(other).timestamp()) >= int(created(chosen).timestamp())
