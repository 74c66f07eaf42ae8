"""Configuration of the tgt backend and the checks and conversions of its requests.

Kept apart from `luns` and `groups` so that they hold only the operations: names (which
become file names and target IQN suffixes), sizes (whole 512-byte blocks), LUN ids,
initiators (one canonical spelling, so an ACL compares equal however vSphere wrote the name),
and the conversions from the state file's records to the protocol's dataclasses. The backing
files themselves are `files`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lunbridge import san
from lunbridge.errors import InvalidArgument
from lunbridge.storage.base import InitiatorGroup, Lun, Snapshot, check_name
from lunbridge.storage.tgt.state import IgroupRecord, LunRecord, SnapshotRecord

MAX_LUN_ID = 255
BLOCK = 512
_SETTINGS = {"portal", "nodePortals", "controlPort", "poolDir", "pools", "stateFile", "iqnPrefix",
             "timeoutSeconds", "copyTimeoutSeconds"}  # fmt: skip
_PORTAL = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def check_lun_id(lun_id: int | None) -> None:
    """A LUN id given by the caller: 1..255 (None lets the backend choose)."""
    if lun_id is not None and (
        not isinstance(lun_id, int) or isinstance(lun_id, bool) or not 1 <= lun_id <= MAX_LUN_ID
    ):
        raise InvalidArgument(
            f"LUN id {lun_id!r} must be 1..{MAX_LUN_ID}: 0 is tgt's controller, and tgt "
            "addresses ids above 255 in a way hosts read differently"
        )


@dataclass(frozen=True)
class TgtConfig:
    control: int  # tgtd's control socket number: `tgtd -C N`, `tgtadm -C N`
    portal: str  # host:port where initiators reach tgtd
    pools: Mapping[str, Path]  # pool name → folder of sparse backing files; the first is the default
    state_file: Path
    iqn_prefix: str = "iqn.2024-01.io.lunbridge:"
    timeout: float = 10.0  # per tgtadm call, and for the state file lock
    copy_timeout: float = 3600.0  # per snapshot or clone copy
    # where initiator-mode nodes log in (host:port each), when they reach tgtd elsewhere than
    # `portal` (NAT, a storage network); empty: `portal`
    node_portals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.control, int) or self.control < 0:
            raise InvalidArgument(f"tgt control socket number {self.control!r} must be an integer >= 0")
        for key, portal in [("portal", self.portal), *(("nodePortals", p) for p in self.node_portals)]:
            match = _PORTAL.match(portal) if isinstance(portal, str) else None
            if not match or not 0 < int(match.group(1)) < 65536:
                raise InvalidArgument(f"tgt {key} {portal!r} must be host:port, e.g. 127.0.0.1:3260")
        if not self.pools:
            raise InvalidArgument("the tgt backend needs at least one pool folder")
        for name in self.pools:
            check_name("pool", name)
        # tgtd opens backing files relative to its own working folder: give it absolute paths
        object.__setattr__(self, "pools", {name: Path(f).absolute() for name, f in self.pools.items()})
        probe = self.iqn_prefix + "x"
        try:
            valid = san.iqn(probe) == probe and probe[-2] in ":.-" and len(probe) <= 161
        except InvalidArgument:
            valid = False
        if not valid:
            raise InvalidArgument(
                f"tgt IQN prefix {self.iqn_prefix!r} must be a lowercase iSCSI name of at most 160 "
                "characters ending in ':', '.' or '-' (e.g. 'iqn.2024-01.io.lunbridge:')"
            )
        if self.timeout <= 0 or self.copy_timeout <= 0:
            raise InvalidArgument("tgt timeouts must be positive")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str = "settings") -> TgtConfig:
        """A backend section's settings: `portal`, `controlPort`, `poolDir` (one pool named
        default) or `pools` (name → folder), [`nodePortals` (list of host:port, or one string
        comma-separated), `stateFile`, `iqnPrefix`, `timeoutSeconds`, `copyTimeoutSeconds`].
        InvalidArgument names the missing or bad field."""
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise InvalidArgument(
                f"{where} has unknown keys {', '.join(sorted(unknown))}; "
                f"tgt takes {', '.join(sorted(_SETTINGS))}"
            )
        missing = [key for key in ("portal", "controlPort") if settings.get(key) in (None, "")]
        if not settings.get("poolDir") and not settings.get("pools"):
            missing.append("poolDir (or pools)")
        if missing:
            raise InvalidArgument(f"{where} lacks {', '.join(missing)}")
        pools = settings.get("pools") or {"default": settings["poolDir"]}
        if not isinstance(pools, Mapping):
            raise InvalidArgument(f"{where}.pools must map pool names to folders")
        numbers = {key: settings[key] for key in ("controlPort", "timeoutSeconds", "copyTimeoutSeconds")
                   if key in settings}  # fmt: skip
        for key, value in numbers.items():
            try:
                numbers[key] = int(value) if key == "controlPort" else float(value)
            except (TypeError, ValueError):
                raise InvalidArgument(f"{where}.{key} must be a number, not {value!r}") from None
        node_portals = settings.get("nodePortals") or []
        if isinstance(node_portals, str):
            node_portals = [p.strip() for p in node_portals.split(",") if p.strip()]
        if not isinstance(node_portals, list):
            raise InvalidArgument(f"{where}.nodePortals must be a list of host:port")
        first = Path(next(iter(pools.values())))
        return cls(
            control=numbers["controlPort"],
            portal=str(settings["portal"]),
            pools={str(name): Path(folder) for name, folder in pools.items()},
            state_file=Path(settings.get("stateFile") or first / "tgt-state.json"),
            iqn_prefix=str(settings.get("iqnPrefix") or cls.iqn_prefix),
            timeout=numbers.get("timeoutSeconds", cls.timeout),
            copy_timeout=numbers.get("copyTimeoutSeconds", cls.copy_timeout),
            node_portals=tuple(str(p) for p in node_portals),
        )

    @property
    def pool_names(self) -> tuple[str, ...]:
        """The configured pools in order; the first is where LUNs go by default."""
        return tuple(self.pools)


def lun_of(name: str, rec: LunRecord) -> Lun:
    return Lun(name, rec.pool, rec.size_bytes, rec.serial, f"naa.{rec.naa}", rec.source_snapshot)


def igroup_of(name: str, rec: IgroupRecord) -> InitiatorGroup:
    return InitiatorGroup(name, rec.transport, rec.initiators, rec.os_type)


def snapshot_of(name: str, rec: SnapshotRecord) -> Snapshot:
    return Snapshot(name, rec.lun, rec.size_bytes, rec.created)


def round_size(size_bytes: int) -> int:
    """A positive size, rounded up to whole 512-byte blocks (tgt's block size)."""
    if not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes <= 0:
        raise InvalidArgument(f"LUN size {size_bytes!r} must be a positive number of bytes")
    return -(-size_bytes // BLOCK) * BLOCK
