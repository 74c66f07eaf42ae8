"""The ontap backend's LUNs, snapshots, clones and restores, each LUN in a FlexVol of its own
(see `core` for the layout and why).

Every step can be repeated after a crash at any point: a FlexVol without its LUN gets the LUN,
a FlexClone whose LUN still has its parent's name gets the new name, a restore finds the size
to grow back to on the FlexVol.
"""

from __future__ import annotations

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.storage.base import Lun, Pool, check_name
from lunbridge.storage.ontap.client import Record
from lunbridge.storage.ontap.core import (
    LUN_OS_TYPE,
    OntapCore,
    comment,
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
        """The LUN, alone in a new FlexVol; the size asked for is kept in the LUN's comment, so a
        retried create compares it exactly (ONTAP rounds the LUN's own size up)."""
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
                "autosize": {"mode": "grow", "maximum": 2 * volume_size(size_bytes)},
                "comment": comment(lun=name, size=size_bytes),
            }
            await self.client.create(f"creating FlexVol {volume} for LUN {name}", "volume", body)
        body = {
            "name": self.lun_path(name),
            "os_type": LUN_OS_TYPE,
            "space": {"size": size_bytes, "guarantee": {"requested": self.config.space_reservation}},
            "comment": comment(pool=aggregate, size=size_bytes),
        }
        await self.client.create(f"creating LUN {name}", "lun", body, done=LUN_EXISTS)
        return self._same(name, await self.need_lun(name), size_bytes)

    def _same(self, name: str, record: Record, size_bytes: int) -> Lun:
        lun = self.lun_of(record)
        recorded = _asked(record)
        matches = recorded == size_bytes if recorded is not None else same_size(size_bytes, lun.size_bytes)
        if not matches:
            raise AlreadyExists(
                f"LUN {name} exists with {recorded or lun.size_bytes} bytes, not {size_bytes}: "
                "resize it, or delete it first"
            )
        return lun

    async def get_lun(self, name: str) -> Lun:
        return self.lun_of(await self.need_lun(check_name("LUN", name)))

    async def list_luns(self) -> list[Lun]:
        """lunbridge's LUNs: each in its own FlexVol (a FlexClone whose LUN still has its
        parent's name is a clone half made, not a disk)."""
        found = await self.client.records(
            "listing lunbridge's LUNs",
            "lun",
            "uuid,name,serial_number,space.size,comment",
            name=f"/vol/{self.config.flexvol_prefix}*/*",
        )
        luns = [self.lun_of(r) for r in found]
        return sorted((lun for lun in luns if self._at_home(lun.name, found)), key=lambda lun: lun.name)

    def _at_home(self, lun: str, records: list[Record]) -> bool:
        try:
            path = self.lun_path(lun)
        except InvalidArgument:
            return False
        return any(r.get("name") == path for r in records)

    async def resize_lun(self, name: str, size_bytes: int) -> Lun:
        """Grow the FlexVol (and record the size on it), then the LUN. The size last asked for
        is what a grow compares with; ONTAP may have rounded the LUN up past it already."""
        record = await self.need_lun(check_name("LUN", name))
        current = int(dig(record, "space.size", 0))
        recorded = _asked(record) or current
        if size_bytes == recorded:
            return self.lun_of(record)
        if size_bytes < recorded:
            raise InvalidArgument(
                f"LUN {name} has {recorded} bytes; it can grow but not shrink to {size_bytes}"
            )
        volume = str(dig(record, "location.volume.uuid"))
        held = await self.client.first(
            f"reading the FlexVol of LUN {name}", "volume", "uuid,size", uuid=volume
        )
        body: dict[str, object] = {"comment": comment(lun=name, size=size_bytes)}
        if held is None or int(held.get("size", 0)) < volume_size(size_bytes):
            body["size"] = volume_size(size_bytes)
            body["autosize"] = {"mode": "grow", "maximum": 2 * volume_size(size_bytes)}
        await self.client.modify(f"growing the FlexVol of LUN {name}", "volume", {"uuid": volume}, body)
        change: dict[str, object] = {"comment": comment(pool=self.lun_of(record).pool, size=size_bytes)}
        if size_bytes > current:
            change["space"] = {"size": size_bytes}
        await self.client.modify(
            f"growing LUN {name} to {size_bytes} bytes",
            "lun",
            {"uuid": record["uuid"]},
            change,
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
            await self.client.remove(f"deleting LUN {name}", "lun", {"uuid": record["uuid"]})
        await self.drop_volume_if_empty(self.volume_name(name))


def _asked(record: Record) -> int | None:
    """The size a LUN was last asked to have (its comment), None when unknown."""
    size = parse_comment(record.get("comment")).get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None
