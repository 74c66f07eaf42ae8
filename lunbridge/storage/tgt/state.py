"""The tgt backend's own record of what it made, kept in one JSON file.

tgtd holds its configuration in memory only, so this file — not tgtd — is the truth: LUNs,
igroups, maps, snapshots and the id counter. It is replaced atomically (temp file, fsync,
rename, fsync of the folder) after every change, and guarded by an advisory file lock so two
processes sharing it serialize.

Ids: every LUN (created or cloned) takes the next value of a persistent counter, which is
never decremented, so an NAA id or serial is never handed out twice, not even after the LUN
is deleted. The NAA id is a type-6 (IEEE registered extended) designator:

    6 | 0a4c42 | 1 | installation (4 bytes) | counter (8 bytes)

`0a4c42` is a company id with the locally-administered bit set (so it cannot be an IEEE
assigned OUI), `1` is the layout version, the installation id is random per state file (two
backends never collide), and the counter is written in base 255 with digits 1..255. No byte of
the id is therefore zero: C-string tools (libiscsi's `iscsi-inq`) print binary designators
only up to the first zero byte, and these ids survive them whole.

CHAP: an iSCSI igroup's record holds its CHAP (`chap`: user, secret and, for mutual CHAP, the
target's user and secret; null or absent: none), since tgtd forgets its accounts on a restart
and never shows a password. So the file holds secrets: it is written with mode 0600 (the
folder it lies in should be private too). `reset_accounts` lists the CHAP users whose secret
in tgtd is not known to be the one recorded here (a secret change under way, see
`lunbridge.storage.tgt.chap`); the next call re-creates them. Files written before CHAP, without
these keys, load as "no CHAP".
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lunbridge.errors import Busy, Unavailable
from lunbridge.san import Transport
from lunbridge.storage.base import Chap

NAA_PREFIX = "60a4c421"
STATE_VERSION = 1
_COUNTER_BYTES = 8


def new_installation() -> str:
    """A random installation id: 4 bytes, none of them zero, as 8 hex digits."""
    return bytes(secrets.randbelow(255) + 1 for _ in range(4)).hex()


def _nonzero_bytes(value: int, width: int) -> bytes:
    """`value` in base 255 with digits 1..255, `width` digits: order-preserving, no zero byte."""
    if not 0 <= value < 255**width:
        raise ValueError(f"{value} does not fit in {width} base-255 digits")
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 255)
        digits.append(digit + 1)
    return bytes(reversed(digits))


def naa_for(installation: str, counter: int) -> str:
    """The 32-hex NAA id (without `naa.`) of LUN number `counter` of this installation."""
    return NAA_PREFIX + installation + _nonzero_bytes(counter, _COUNTER_BYTES).hex()


def serial_for(installation: str, counter: int) -> str:
    """The unit serial number (VPD page 0x80) of LUN number `counter`: 20 characters."""
    return f"LB{installation.upper()}{counter:010d}"


@dataclass(frozen=True)
class LunRecord:
    pool: str
    size_bytes: int
    serial: str
    naa: str  # 32 hex digits, no `naa.` prefix: what tgt takes as scsi_id
    source_snapshot: str | None = None


@dataclass(frozen=True)
class IgroupRecord:
    transport: Transport
    initiators: tuple[str, ...]
    os_type: str = "vmware"
    chap: Chap | None = None  # iSCSI only; its repr shows no secret


@dataclass(frozen=True)
class MapRecord:
    lun: str
    igroup: str
    lun_id: int


@dataclass(frozen=True)
class SnapshotRecord:
    lun: str
    pool: str
    size_bytes: int
    created: datetime
    lun_naa: str  # the source LUN's id, to tell it from a later LUN of the same name


@dataclass
class State:
    installation: str = field(default_factory=new_installation)
    next_id: int = 1
    luns: dict[str, LunRecord] = field(default_factory=dict)
    igroups: dict[str, IgroupRecord] = field(default_factory=dict)
    maps: list[MapRecord] = field(default_factory=list)
    snapshots: dict[str, SnapshotRecord] = field(default_factory=dict)
    reset_accounts: frozenset[str] = frozenset()  # CHAP users to re-create on the next call

    def copy(self) -> State:
        """A copy to change; records are immutable, so copying the containers is enough."""
        return State(
            self.installation,
            self.next_id,
            dict(self.luns),
            dict(self.igroups),
            list(self.maps),
            dict(self.snapshots),
            self.reset_accounts,
        )

    def allocate_ids(self) -> tuple[str, str]:
        """The next (naa, serial) pair; the counter only ever grows."""
        counter = self.next_id
        self.next_id += 1
        return naa_for(self.installation, counter), serial_for(self.installation, counter)

    def maps_of(self, *, lun: str | None = None, igroup: str | None = None) -> list[MapRecord]:
        return [
            m for m in self.maps if (lun is None or m.lun == lun) and (igroup is None or m.igroup == igroup)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "installation": self.installation,
            "next_id": self.next_id,
            "luns": {
                name: {
                    "pool": r.pool,
                    "size_bytes": r.size_bytes,
                    "serial": r.serial,
                    "naa": r.naa,
                    "source_snapshot": r.source_snapshot,
                }
                for name, r in sorted(self.luns.items())
            },
            "igroups": {
                name: {
                    "transport": str(r.transport),
                    "initiators": list(r.initiators),
                    "os_type": r.os_type,
                    "chap": _chap_to_json(r.chap),
                }
                for name, r in sorted(self.igroups.items())
            },
            "maps": [
                {"lun": m.lun, "igroup": m.igroup, "lun_id": m.lun_id}
                for m in sorted(self.maps, key=lambda m: (m.igroup, m.lun_id))
            ],
            "snapshots": {
                name: {
                    "lun": r.lun,
                    "pool": r.pool,
                    "size_bytes": r.size_bytes,
                    "created": r.created.isoformat(),
                    "lun_naa": r.lun_naa,
                }
                for name, r in sorted(self.snapshots.items())
            },
            "reset_accounts": sorted(self.reset_accounts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {data.get('version')!r} (expected {STATE_VERSION})")
        return cls(
            installation=str(data["installation"]),
            next_id=int(data["next_id"]),
            luns={name: LunRecord(**r) for name, r in data["luns"].items()},
            igroups={
                name: IgroupRecord(
                    Transport(r["transport"]),
                    tuple(r["initiators"]),
                    r["os_type"],
                    _chap_from_json(r.get("chap")),
                )
                for name, r in data["igroups"].items()
            },
            maps=[MapRecord(**m) for m in data["maps"]],
            snapshots={
                name: SnapshotRecord(
                    r["lun"],
                    r["pool"],
                    int(r["size_bytes"]),
                    datetime.fromisoformat(r["created"]),
                    r["lun_naa"],
                )
                for name, r in data["snapshots"].items()
            },
            reset_accounts=frozenset(str(user) for user in data.get("reset_accounts", [])),
        )


def _chap_to_json(chap: Chap | None) -> dict[str, str | None] | None:
    if chap is None:
        return None
    return {
        "user": chap.user,
        "secret": chap.secret,
        "mutual_user": chap.mutual_user,
        "mutual_secret": chap.mutual_secret,
    }


def _chap_from_json(data: dict[str, Any] | None) -> Chap | None:
    if data is None:
        return None
    return Chap(str(data["user"]), str(data["secret"]), data.get("mutual_user"), data.get("mutual_secret"))


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with `text` so that a crash leaves either the old or the new file; the new
    file has `mode` (0600: readable by its owner only) from its first byte on."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        os.fchmod(fd, mode)  # a stale temp file of another mode, or a umask that took bits away
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class StateFile:
    """The state file, its lock file (`<path>.lock`), and change detection between loads."""

    def __init__(self, path: Path, lock_timeout: float) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock_timeout = lock_timeout
        self._lock_fd: int | None = None
        self._signature: tuple[int, int, int] | None = None

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the advisory lock (polled, never blocking the event loop)."""
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Busy(
                        f"the tgt state file {self.path} stays locked by another process for more "
                        f"than {self._lock_timeout}s (lock {self.lock_path}); retry later, or stop "
                        "the other lunbridge process that uses the same state file"
                    ) from None
                await asyncio.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _stat_signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        """True when the file is not the one this object last loaded or saved."""
        return self._signature is None or self._stat_signature() != self._signature

    def load(self) -> State:
        """The saved state; a missing file is a fresh state (saved at once, to fix the
        installation id)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            state = State()
            self.save(state)
            return state
        except OSError as exc:
            raise Unavailable(
                f"cannot read the tgt state file {self.path}: {exc}; fix its permissions"
            ) from exc
        try:
            state = State.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(
                f"the tgt state file {self.path} is malformed ({exc}); restore it from a backup "
                "(never delete it: it holds the id counter that keeps NAA ids unique)"
            ) from exc
        self._signature = self._stat_signature()
        return state

    def save(self, state: State) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # compact: any indent makes json use its pure-Python encoder, 4x slower (13 ms a
            # save at 1,000 LUNs); `python -m json.tool` shows the file indented
            write_atomically(self.path, json.dumps(state.to_json(), separators=(",", ":")) + "\n")
        except OSError as exc:
            raise Unavailable(
                f"cannot write the tgt state file {self.path}: {exc}; free space or fix permissions"
            ) from exc
        self._signature = self._stat_signature()
