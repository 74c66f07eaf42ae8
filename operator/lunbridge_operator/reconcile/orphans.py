"""Orphans: LUNs, maps and RDMs that carry lunbridge's naming but belong to no lunbridge object.

Found by one rule (`lunbridge_operator.ownership` says who owns what):

- `lun`: a LUN on a configured backend whose name has lunbridge's form (`vd-<uuid>`) and that
  no owner owns;
- `map`: a map of such a LUN, or a map of an owned LUN to an igroup its (settled) owner does
  not name;
- `rdm`: an RDM / passthrough disk of a VM whose NAA is that of a lunbridge LUN on a backend,
  on a VM its (settled) owner does not record; every RDM of an orphan LUN.

A LUN of any other name is a user's own, and so are its maps and RDMs: never reported.

The owners are listed before and after storage and hypervisors are read, and either list
counts, so an object created or deleted meanwhile never makes an orphan of what it owns.

Nothing is removed unless asked (`remove`, from `lunbridge-operator sweep --remove`): it
finds the orphans again first and removes only those found both times, RDMs first (detach),
then maps, then LUNs (their snapshots stay); each step is idempotent, so two runs, or a run
and an operator's own teardown, never fail on each other. An orphan LUN that is neither mapped
nor attached may be the LUN a disk with `reclaimPolicy: Retain` left on purpose: it is
reported, and deleted only with `include_unmapped`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from lunbridge.errors import InvalidArgument, LunbridgeError
from lunbridge.hypervisor.base import Host, LunDisk, LunDiskLister, Vm
from lunbridge.storage.base import Lun, Mapping
from lunbridge_operator import metrics
from lunbridge_operator.ownership import (
    OwnerKind,
    Owners,
    gather,
    is_lunbridge_lun,
    owner_kinds_text,
)
from lunbridge_operator.reconcile.services import Services

log = logging.getLogger(__name__)


class OrphanKind(enum.StrEnum):
    LUN = "lun"
    MAP = "map"
    RDM = "rdm"


KIND_ORDER = {OrphanKind.RDM: 0, OrphanKind.MAP: 1, OrphanKind.LUN: 2}  # the order of removal


@dataclass(frozen=True)
class Orphan:
    """One orphan. `backend` and `lun` name the LUN (for a map and an RDM too), `igroup` the
    map's igroup, `vm` and `where` the RDM's VM and place; `unused`: an orphan LUN with no map
    and no RDM (perhaps kept on purpose by reclaimPolicy Retain)."""

    kind: OrphanKind
    backend: str
    lun: str
    naa: str
    why: str
    igroup: str | None = None
    vm: Vm | None = None
    where: str = ""
    unused: bool = False

    @property
    def key(self) -> tuple[str, str, str, str | None, str | None]:
        return (self.kind.value, self.backend, self.lun, self.igroup, self.vm.id if self.vm else None)

    @property
    def name(self) -> str:
        if self.kind is OrphanKind.MAP:
            return f"{self.lun} -> {self.igroup}"
        return self.lun

    @property
    def place(self) -> str:
        """`backend/<name>`, or `vm/<name>` for an RDM."""
        return f"vm/{self.vm.name}" if self.vm is not None else f"backend/{self.backend}"

    def line(self) -> str:
        """One tab-separated line: kind, backend/<name> or vm/<name>, name, NAA, why."""
        return "\t".join((self.kind.value, self.place, self.name, self.naa, self.why))

    def describe(self) -> str:
        if self.kind is OrphanKind.LUN:
            return f"LUN {self.lun} ({self.naa}) on backend {self.backend}"
        if self.kind is OrphanKind.MAP:
            return f"map of LUN {self.lun} to igroup {self.igroup} on backend {self.backend}"
        vm = self.vm.name if self.vm is not None else "?"
        return f"RDM of {self.naa} (LUN {self.lun}) on VM {vm}"


@dataclass(frozen=True)
class Seen:
    """What storage and the hypervisors hold at one moment."""

    luns: list[tuple[str, Lun]]  # (backend, LUN) of lunbridge's form
    maps: dict[tuple[str, str], list[Mapping]]  # (backend, LUN name) -> its maps
    disks: dict[str, list[LunDisk]]  # NAA -> the VM disks carrying it


async def look(svc: Services) -> Seen:
    """Every backend's lunbridge LUNs and maps, and every VM's LUN disks: one listing of each
    (what the orphan sweep and the re-check of Ready disks compare with)."""
    luns: list[tuple[str, Lun]] = []
    maps: dict[tuple[str, str], list[Mapping]] = {}
    for name, backend in svc.backends:
        for lun in await backend.list_luns():
            if is_lunbridge_lun(lun.name):
                luns.append((name, lun))
        for mapping in await backend.list_mappings():
            if is_lunbridge_lun(mapping.lun):
                maps.setdefault((name, mapping.lun), []).append(mapping)
    hypervisor = svc.hypervisor
    if not isinstance(hypervisor, LunDiskLister):
        raise InvalidArgument("the configured hypervisor cannot list the LUN disks of its VMs")
    disks: dict[str, list[LunDisk]] = {}
    for disk in await hypervisor.list_lun_disks():
        disks.setdefault(disk.naa, []).append(disk)
    return Seen(luns, maps, disks)


async def find(svc: Services, kinds: Sequence[OwnerKind] | None = None) -> list[Orphan]:
    """Every orphan now, sorted by kind (lun, map, rdm), backend and name."""
    before = await gather(svc.kube, kinds)
    seen = await look(svc)
    owners = before.merged(await gather(svc.kube, kinds))
    return judge(owners, seen, owner_kinds_text(kinds))


def judge(owners: Owners, seen: Seen, owner_words: str = "VirtualDisk") -> list[Orphan]:
    found: list[Orphan] = []
    for backend, lun in seen.luns:
        maps = seen.maps.get((backend, lun.name), [])
        disks = seen.disks.get(lun.naa, [])
        owner = owners.of_lun(lun.name)
        if owner is None:
            uid = lun.name.removeprefix("vd-")
            unused = not maps and not disks
            why = f"no {owner_words} with uid {uid} exists"
            if unused:
                why += "; not mapped or attached (reclaimPolicy Retain leaves a LUN so)"
            found.append(Orphan(OrphanKind.LUN, backend, lun.name, lun.naa, why, unused=unused))
            found += [
                Orphan(
                    OrphanKind.MAP,
                    backend,
                    lun.name,
                    lun.naa,
                    f"a map of orphan LUN {lun.name}",
                    igroup=m.igroup,
                )
                for m in maps
            ]
            found += [
                Orphan(
                    OrphanKind.RDM,
                    backend,
                    lun.name,
                    lun.naa,
                    f"an RDM of orphan LUN {lun.name}",
                    vm=d.vm,
                    where=d.where,
                )
                for d in disks
            ]
            continue
        if not owner.settled:
            continue  # its maps and RDMs are moving: judged once its status is settled
        named = ", ".join(sorted(owner.igroups)) or "none"
        found += [
            Orphan(
                OrphanKind.MAP,
                backend,
                lun.name,
                lun.naa,
                f"{owner.describe()} owns the LUN but records igroup {named}",
                igroup=m.igroup,
            )
            for m in maps
            if m.igroup not in owner.igroups
        ]
        found += [
            Orphan(
                OrphanKind.RDM,
                backend,
                lun.name,
                lun.naa,
                f"{owner.describe()} owns the LUN but records no attachment on this VM",
                vm=d.vm,
                where=d.where,
            )
            for d in disks
            if not owner.holds_vm(d.vm)
        ]
    return sorted(found, key=lambda o: (o.kind.value, o.backend, o.name, o.place))


# --- removal ---------------------------------------------------------------------------------
Say = Callable[[str], None]


async def remove(
    svc: Services,
    orphans: Iterable[Orphan],
    say: Say,
    *,
    include_unmapped: bool = False,
    kinds: Sequence[OwnerKind] | None = None,
) -> list[Orphan]:
    """Remove `orphans` that are still orphans now: detach RDMs, unmap, delete LUNs (their
    snapshots stay), rescan the hosts of the detached VMs; say each step. Returns the orphans
    left (kept on purpose or failed), each said with its reason."""
    wanted = list(orphans)
    now = {o.key: o for o in await find(svc, kinds)}
    left: list[Orphan] = []
    hosts: dict[str, Host] = {}
    for orphan in sorted(wanted, key=lambda o: (KIND_ORDER[o.kind], o.backend, o.name, o.place)):
        current = now.get(orphan.key)
        if current is None:
            say(f"skipped {orphan.describe()}: no longer an orphan")
            continue
        try:
            if not await _remove_one(svc, current, say, include_unmapped, hosts):
                left.append(current)
        except LunbridgeError as exc:
            say(f"failed to remove {current.describe()}: {exc}")
            left.append(current)
    for host in sorted(hosts.values(), key=lambda h: h.name):
        try:
            await svc.hypervisor.rescan(host)
            say(f"rescanned the HBAs of host {host.name}")
        except LunbridgeError as exc:
            say(f"failed to rescan host {host.name}: {exc} (it lists the removed LUNs until its next rescan)")
    return left


async def _remove_one(
    svc: Services, orphan: Orphan, say: Say, include_unmapped: bool, hosts: dict[str, Host]
) -> bool:
    _, storage = svc.backends.get(orphan.backend, "backend")
    if orphan.kind is OrphanKind.RDM:
        assert orphan.vm is not None
        await svc.hypervisor.detach_rdm(orphan.vm, orphan.naa)
        say(f"detached {orphan.naa} (LUN {orphan.lun}) from VM {orphan.vm.name}")
        try:
            scope = await svc.hypervisor.cluster_hosts(orphan.vm.host)
        except LunbridgeError:
            scope = [orphan.vm.host]
        hosts.update({host.id: host for host in scope})
        return True
    if orphan.kind is OrphanKind.MAP:
        assert orphan.igroup is not None
        await storage.unmap_lun(orphan.lun, orphan.igroup)
        say(f"unmapped LUN {orphan.lun} from igroup {orphan.igroup} on backend {orphan.backend}")
        return True
    if orphan.unused and not include_unmapped:
        say(f"kept {orphan.describe()}: it is not mapped or attached, as a disk deleted with "
            "reclaimPolicy Retain leaves its LUN; --include-unmapped deletes it")  # fmt: skip
        return False
    maps = await storage.list_mappings(lun=orphan.lun)
    if maps:
        say(f"kept {orphan.describe()}: still mapped to {', '.join(m.igroup for m in maps)}")
        return False
    await storage.delete_lun(orphan.lun)
    say(f"deleted {orphan.describe()} (its snapshots stay)")
    return True


# --- reporting (the operator) ----------------------------------------------------------------
EVENT_REASONS = {OrphanKind.LUN: "OrphanLuns", OrphanKind.MAP: "OrphanMaps", OrphanKind.RDM: "OrphanRdms"}
GONE_REASON = "OrphansGone"
NOUNS = {OrphanKind.LUN: "LUN", OrphanKind.MAP: "map", OrphanKind.RDM: "RDM"}
MESSAGE_LIMIT = 900  # the API server keeps 1 KiB of an Event's message


Announce = Callable[[str, str, bool], Awaitable[None]]  # (reason, message, warning)


def _message(kind: OrphanKind, orphans: Sequence[Orphan]) -> str:
    noun = NOUNS[kind] + ("" if len(orphans) == 1 else "s")
    text = f"{len(orphans)} orphan {noun} (`lunbridge-operator sweep` lists them, `--remove` removes them): "
    names = [f"{o.place}: {o.name}" for o in orphans]
    shown: list[str] = []
    for index, name in enumerate(names):
        rest = len(names) - index
        if len(text) + len("; ".join([*shown, name])) > MESSAGE_LIMIT - 20:
            shown.append(f"and {rest} more")
            break
        shown.append(name)
    return text + "; ".join(shown)


class Reporter:
    """Tells what a sweep found: the gauge `lunbridge_orphans{kind,backend}` every time, and
    one Event per kind whenever that kind's orphans change (a Warning listing them, or
    `OrphansGone` once none is left). The first sweep compares with nothing found."""

    def __init__(self, announce: Announce, backends: Iterable[str] = ()) -> None:
        self.announce = announce
        self.backends = set(backends)
        self.last: dict[OrphanKind, frozenset[tuple[str, str, str, str | None, str | None]]] = {
            kind: frozenset() for kind in OrphanKind
        }

    async def report(self, orphans: Sequence[Orphan]) -> None:
        self.backends |= {o.backend for o in orphans}
        for kind in OrphanKind:
            of_kind = [o for o in orphans if o.kind is kind]
            for backend in sorted(self.backends):
                count = sum(1 for o in of_kind if o.backend == backend)
                metrics.ORPHANS.labels(kind.value, backend).set(count)
            keys = frozenset(o.key for o in of_kind)
            if keys == self.last[kind]:
                continue
            self.last[kind] = keys
            if of_kind:
                await self.announce(EVENT_REASONS[kind], _message(kind, of_kind), True)
            else:
                await self.announce(GONE_REASON, f"no orphan {NOUNS[kind]} is left", False)


async def sweep_once(svc: Services, reporter: Reporter, kinds: Sequence[OwnerKind] | None = None) -> None:
    """Find the orphans and report them; a failure is logged and counted (the next sweep
    tries again). Never removes anything."""
    try:
        orphans = await find(svc, kinds)
        await reporter.report(orphans)
    except LunbridgeError as exc:
        metrics.SWEEPS.labels("failed").inc()
        log.warning("orphan sweep failed: %s", exc)
        return
    metrics.SWEEPS.labels("ok").inc()
    if orphans:
        log.warning("orphan sweep: %d orphan(s): %s", len(orphans), "; ".join(o.describe() for o in orphans))
    else:
        log.info("orphan sweep: no orphan")


async def sweep_forever(svc: Services, reporter: Reporter, seconds: float) -> None:
    """`sweep_once` now and every `seconds`, until cancelled."""
    while True:
        try:
            await sweep_once(svc, reporter)
        except Exception:  # never let the loop die of one bad sweep
            metrics.SWEEPS.labels("failed").inc()
            log.exception("orphan sweep failed")
        await asyncio.sleep(seconds)
