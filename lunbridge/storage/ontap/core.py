"""What the ontap backend's operations share: the layout of disks on the SVM (one FlexVol per
LUN), the records they read, and how an ONTAP record becomes lunbridge's typed data.

Layout: LUN `<name>` lives at `/vol/<flexvolPrefix><name with '-' as '_'>/<name>`, alone in its
FlexVol, so a volume snapshot is a snapshot of exactly one disk and a volume SnapRestore
reverts exactly one disk (never another disk's LUN); a clone is a FlexClone volume of the
snapshot, split from it at once. What ONTAP cannot hold in its own fields is kept in comments,
as JSON: the LUN's pool and source snapshot on the LUN, the size the disk was last given on
its FlexVol (a volume SnapRestore does not revert the volume's comment, so a restore knows the
size to grow the LUN back to), the LUN and size on each snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from lunbridge.concurrency import KeyedLocks
from lunbridge.errors import Busy, InvalidArgument, NotFound
from lunbridge.storage.base import Lun, Snapshot, check_name
from lunbridge.storage.ontap.client import OntapClient, Record
from lunbridge.storage.ontap.identity import naa_from_serial

LUN_FIELDS = "uuid,name,serial_number,space.size,comment,location.volume.name,location.volume.uuid,lun_maps"
VOLUME_FIELDS = "uuid,name,size,comment,clone.is_flexclone,clone.split_initiated"
SNAPSHOT_FIELDS = "uuid,name,create_time,comment,volume.name,volume.uuid"
LUN_OS_TYPE = "linux"  # the OS that reads the LUN: a Kubernetes node (through an RDM or its own initiator)
MIB = 1 << 20
GONE = ""  # a snapshot this backend deleted, in OntapCore's memory of where snapshots are
MAX_REMEMBERED = 100_000


def volume_size(lun_bytes: int) -> int:
    """The FlexVol size for a LUN of `lun_bytes`: 10 % and 64 MiB more, for ONTAP's metadata and
    the blocks snapshots hold (autosize grows it further when they need more)."""
    return (lun_bytes + lun_bytes // 10 + 64 * MIB + MIB - 1) // MIB * MIB


def comment(**values: Any) -> str:
    return json.dumps({"lunbridge": 1, **values}, separators=(",", ":"), sort_keys=True)


def parse_comment(text: Any) -> dict[str, Any]:
    """lunbridge's values in an ONTAP comment; {} when someone else wrote it."""
    try:
        values = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return values if isinstance(values, dict) and values.get("lunbridge") == 1 else {}


def dig(record: Record, path: str, default: Any = None) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def created(record: Record) -> datetime:
    """When a snapshot was taken: lunbridge's own record of it (its comment's `at`, to the
    microsecond) when there is one, else ONTAP's `create_time` (to the second)."""
    at = parse_comment(record.get("comment")).get("at")
    if isinstance(at, (int, float)):
        return datetime.fromtimestamp(at, UTC)
    text = record.get("create_time")
    if isinstance(text, datetime):
        return text
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)  # unknown: the oldest


class OntapCore:
    """The shared part of `OntapBackend` (see `lunbridge.storage.ontap.backend`)."""

    def __init__(self, client: OntapClient) -> None:
        self.client = client
        self.config = client.config
        # snapshot name -> its FlexVol's UUID; GONE: deleted by this backend (names come from
        # UIDs, so a deleted one is not made again unless create_snapshot says so)
        self._snapshot_volumes: dict[str, str] = {}
        self._disk_locks: KeyedLocks[str] = KeyedLocks()  # a disk's snapshots against its restores

    def volume_name(self, lun: str) -> str:
        """The FlexVol of LUN `lun` (ONTAP's FlexVol names take letters, digits and '_')."""
        check_name("LUN", lun)
        if "." not in lun:
            return self.config.flexvol_prefix + lun.replace("-", "_")
        digest = hashlib.sha256(lun.encode()).hexdigest()[:8]
        return f"{self.config.flexvol_prefix}{lun.replace('-', '_').replace('.', '_')}_{digest}"

    def lun_path(self, lun: str) -> str:
        return f"/vol/{self.volume_name(lun)}/{lun}"

    def lun_of(self, record: Record) -> Lun:
        name = str(record["name"]).rsplit("/", 1)[-1]
        notes = parse_comment(record.get("comment"))
        serial = str(record.get("serial_number", ""))
        return Lun(
            name=name,
            pool=str(notes.get("pool", "")),
            size_bytes=int(dig(record, "space.size", 0)),
            serial=serial,
            naa=naa_from_serial(serial),
            source_snapshot=notes.get("source"),
        )

    def snapshot_of(self, record: Record) -> Snapshot | None:
        """lunbridge's snapshot of one disk, or None: not lunbridge's (an administrator's, or
        ONTAP's schedule), or a copy a FlexClone inherited from its parent FlexVol (its comment
        names a LUN of another FlexVol)."""
        notes = parse_comment(record.get("comment"))
        lun = notes.get("lun")
        if not isinstance(lun, str):
            return None
        try:
            check_name("LUN", lun)
        except InvalidArgument:
            return None
        held_by = dig(record, "volume.name")
        if held_by is not None and held_by != self.volume_name(lun):
            return None
        return Snapshot(str(record["name"]), lun, int(notes.get("size", 0)), created(record))

    async def find_lun(self, name: str) -> Record | None:
        return await self.client.first(f"reading LUN {name}", "lun", LUN_FIELDS, name=self.lun_path(name))

    async def need_lun(self, name: str) -> Record:
        found = await self.find_lun(name)
        if found is None:
            raise NotFound(f"LUN {name!r} does not exist on SVM {self.config.svm}")
        return found

    async def find_volume(self, name: str) -> Record | None:
        return await self.client.first(f"reading FlexVol {name}", "volume", VOLUME_FIELDS, name=name)

    async def volume_snapshots(self, volume_uuid: str, **query: Any) -> list[Record]:
        """The snapshots of a FlexVol that are lunbridge's snapshots of its own disk."""
        found = await self.client.records(
            f"listing the snapshots of FlexVol {volume_uuid}",
            "snapshot",
            SNAPSHOT_FIELDS,
            (volume_uuid,),
            **query,
        )
        own = [record for record in found if self.snapshot_of(record) is not None]
        for record in own:
            self.remember(str(record["name"]), volume_uuid)
        return own

    def remember(self, snapshot: str, volume_uuid: str) -> None:
        """Where snapshot `snapshot` is (a FlexVol's UUID), or GONE."""
        if len(self._snapshot_volumes) >= MAX_REMEMBERED:
            self._snapshot_volumes.clear()
        self._snapshot_volumes[snapshot] = volume_uuid

    async def our_volumes(self) -> list[Record]:
        return await self.client.records(
            "listing lunbridge's FlexVols", "volume", VOLUME_FIELDS, name=f"{self.config.flexvol_prefix}*"
        )

    async def find_snapshot(self, name: str) -> Record | None:
        """Snapshot `name` of any of lunbridge's FlexVols: the FlexVol known to hold it, else
        every FlexVol, one call each (never for a snapshot this backend deleted)."""
        known = self._snapshot_volumes.get(name)
        if known == GONE:
            return None
        if known is not None:
            with contextlib.suppress(NotFound):  # the FlexVol itself may be gone
                found = await self.volume_snapshots(known, name=name)
                if found:
                    return found[0]
            self._snapshot_volumes.pop(name, None)
        for volume in await self.our_volumes():
            found = await self.volume_snapshots(str(volume["uuid"]), name=name)
            if found:
                return found[0]
        return None

    async def splitting_clones(self, volume: str, snapshot: str | None = None) -> list[str]:
        """The FlexClones of FlexVol `volume` (made from `snapshot`, when given) that are not
        yet split from it: while they are, ONTAP keeps the snapshot and the FlexVol."""
        query: dict[str, Any] = {"clone.parent_volume.name": volume, "clone.is_flexclone": "true"}
        if snapshot is not None:
            query["clone.parent_snapshot.name"] = snapshot
        found = await self.client.records(f"listing the FlexClones of {volume}", "volume", "name", **query)
        return sorted(str(r["name"]) for r in found)

    async def drop_volume_if_empty(self, volume: str) -> None:
        """Delete FlexVol `volume` once it holds neither its disk's LUN nor a snapshot of it.
        A LUN there under another name is a clone half made (a FlexClone whose LUN still has its
        parent's name): it goes with the FlexVol, unless mapped. Busy while FlexClones of it
        are still being split from it."""
        held = await self.find_volume(volume)
        if held is None:
            return
        disk = parse_comment(held.get("comment")).get("lun")
        inside = await self.client.records(
            f"reading the LUNs of FlexVol {volume}", "lun", "uuid,name,lun_maps", name=f"/vol/{volume}/*"
        )
        if any(isinstance(disk, str) and r.get("name") == f"/vol/{volume}/{disk}" for r in inside):
            return
        if any(r.get("lun_maps") for r in inside):
            return  # someone uses what is in it: not ours to take away
        uuid = str(held["uuid"])
        if await self.volume_snapshots(uuid):
            return
        clones = await self.splitting_clones(volume)
        if clones:
            raise Busy(f"FlexVol {volume} waits for FlexClones {', '.join(clones)} to be split from it")
        for record in inside:
            await self.client.remove(
                f"deleting the half-made LUN {record['name']}", "lun", {"uuid": record["uuid"]}
            )
        await self.client.remove(f"deleting FlexVol {volume}", "volume", {"uuid": uuid})
