"""What the simulated SVM holds, and how it survives a restart of the simulator.

Volumes, LUNs, igroups, maps, snapshots and CHAP credentials are plain dataclasses kept in
one JSON file in the state folder, rewritten whole and atomically (a temporary file, fsync,
rename) after every change, so a killed simulator comes back with exactly what it had
answered for. Jobs are not kept: after a restart a job uuid is unknown (404).

Serials follow ONTAP's form, 12 printable ASCII characters that are not all letters and
digits (`wf0Iq+N4uck3`; here always at least one punctuation mark, so that a client that
mishandles them fails at once); the simulator never gives one out twice, not even after a
delete.
Its alphabet leaves out `,` and `=` (tgtadm's separators) and quotes, backslash and space.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERIAL_ALPHABET = string.ascii_letters + string.digits + "+-?]#$"
SERIAL_LENGTH = 12


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Volume:
    uuid: str
    name: str
    size: int
    aggregate: str
    guarantee: str = "none"
    comment: str = ""
    create_time: str = field(default_factory=now_iso)
    parent_volume: str | None = None  # a FlexClone's parent volume (uuid) until split
    parent_snapshot: str | None = None  # ... and the snapshot (uuid) it was cloned from
    split_initiated: bool = False


@dataclass
class Lun:
    uuid: str
    volume: str  # uuid; the LUN's path is /vol/<volume name>/<unit>
    unit: str
    serial: str
    os_type: str
    size: int
    comment: str = ""
    reserved: bool = False  # space.guarantee.requested
    thin: bool = True  # space.scsi_thin_provisioning_support_enabled
    create_time: str = field(default_factory=now_iso)
    clone_of_snapshot: str | None = None  # snapshot uuid a LUN clone depends on until split
    split_done_at: float = 0.0  # time.time() when that dependency ends


@dataclass
class Igroup:
    uuid: str
    name: str
    protocol: str
    os_type: str
    initiators: list[str] = field(default_factory=list)
    comment: str = ""


@dataclass
class LunMap:
    lun: str  # uuid
    igroup: str  # uuid
    lun_id: int


@dataclass
class Snapshot:
    uuid: str
    name: str
    volume: str  # uuid
    comment: str = ""
    create_time: str = field(default_factory=now_iso)
    seq: int = 0  # order of creation (create_time has whole seconds only)
    luns: list[Lun] = field(default_factory=list)  # the LUNs as they were at the snapshot


@dataclass
class Credential:
    initiator: str
    auth_type: str  # chap | none | deny
    inbound_user: str = ""
    inbound_password: str = ""
    outbound_user: str = ""
    outbound_password: str = ""


@dataclass
class State:
    svm_uuid: str = field(default_factory=new_uuid)
    cluster_uuid: str = field(default_factory=new_uuid)
    volumes: dict[str, Volume] = field(default_factory=dict)
    luns: dict[str, Lun] = field(default_factory=dict)
    igroups: dict[str, Igroup] = field(default_factory=dict)
    maps: list[LunMap] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)
    serials: list[str] = field(default_factory=list)  # every serial ever given out

    def new_serial(self) -> str:
        used = set(self.serials)
        while True:
            serial = "".join(secrets.choice(SERIAL_ALPHABET) for _ in range(SERIAL_LENGTH))
            if serial not in used and not serial.isalnum():  # always one punctuation mark
                self.serials.append(serial)
                return serial

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        data = json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        snapshots = {}
        for key, snap in raw.get("snapshots", {}).items():
            snap["luns"] = [Lun(**lun) for lun in snap.get("luns", [])]
            snapshots[key] = Snapshot(**snap)
        return cls(
            svm_uuid=raw["svm_uuid"],
            cluster_uuid=raw["cluster_uuid"],
            volumes={k: Volume(**v) for k, v in raw.get("volumes", {}).items()},
            luns={k: Lun(**v) for k, v in raw.get("luns", {}).items()},
            igroups={k: Igroup(**v) for k, v in raw.get("igroups", {}).items()},
            maps=[LunMap(**m) for m in raw.get("maps", [])],
            snapshots=snapshots,
            credentials={k: Credential(**v) for k, v in raw.get("credentials", {}).items()},
            serials=list(raw.get("serials", [])),
        )

    # --- look-ups ------------------------------------------------------------------------

    def volume_named(self, name: str) -> Volume | None:
        return next((v for v in self.volumes.values() if v.name == name), None)

    def lun_path(self, lun: Lun) -> str:
        return f"/vol/{self.volumes[lun.volume].name}/{lun.unit}"

    def lun_named(self, path: str) -> Lun | None:
        return next((lun for lun in self.luns.values() if self.lun_path(lun) == path), None)

    def igroup_named(self, name: str) -> Igroup | None:
        return next((g for g in self.igroups.values() if g.name == name), None)

    def maps_of_lun(self, lun_uuid: str) -> list[LunMap]:
        return [m for m in self.maps if m.lun == lun_uuid]

    def maps_of_igroup(self, igroup_uuid: str) -> list[LunMap]:
        return [m for m in self.maps if m.igroup == igroup_uuid]

    def snapshot_named(self, volume_uuid: str, name: str) -> Snapshot | None:
        return next((s for s in self.snapshots.values() if s.volume == volume_uuid and s.name == name), None)

    def luns_of(self, volume_uuid: str) -> list[Lun]:
        return [lun for lun in self.luns.values() if lun.volume == volume_uuid]
