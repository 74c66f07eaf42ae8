"""The simulator's data plane: tgtd targets that serve what the simulated SVM has mapped.

tgtd masks per target (its ACL lets an initiator reach all LUs of a target or none), not per
initiator inside one target as ONTAP does, so the simulator serves one tgt target per iSCSI
igroup, named `<iqn prefix><igroup name>`: its ACL holds the igroup's initiators, its LU n is
the LUN mapped with logical unit number n, backed by the LUN's file, with `scsi_id` =
`600a0980` + the serial's hex (what an initiator reads as the NAA on VPD page 0x83) and
`scsi_sn` = the serial. CHAP accounts of the igroup's initiators are bound to its target.

`apply` makes tgtd hold exactly the desired targets under the prefix (and never touches a
target outside it, nor an account the simulator did not make): it reads `tgtadm --op show`
and changes only what differs, so it is cheap to run after every change and after tgtd lost
everything (tgtd keeps its configuration in memory only). tgt reads a backing file's size
only when an LU is made, so a grown LUN's LU is made again (same number).

tgtadm is driven here directly, not through lunbridge's tgt backend: lunbridge must not be
tested against itself. Passwords go to tgtadm's command line (it has no other way) but never
into a log line.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("ontap-sim")


@dataclass(frozen=True)
class LuSpec:
    path: str
    size: int
    scsi_id: str
    scsi_sn: str


@dataclass(frozen=True)
class TargetSpec:
    luns: Mapping[int, LuSpec]
    acl: frozenset[str]
    incoming: Mapping[str, str]  # CHAP user → password
    outgoing: tuple[str, str] | None = None


@dataclass
class _ShownLu:
    scsi_id: str = ""
    scsi_sn: str = ""
    size_mib: int = -1
    path: str = ""


@dataclass
class _Shown:
    tid: int
    luns: dict[int, _ShownLu] = field(default_factory=dict)
    acl: set[str] = field(default_factory=set)
    incoming: set[str] = field(default_factory=set)
    outgoing: str | None = None


def _parse(text: str) -> dict[str, _Shown]:
    """Targets by name from `tgtadm --op show --mode target` (sections by indentation)."""
    targets: dict[str, _Shown] = {}
    current: _Shown | None = None
    section = ""
    lu: _ShownLu | None = None
    for line in text.splitlines():
        depth = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if depth == 0 and body.startswith("Target "):
            tid, name = body.removeprefix("Target ").split(": ", 1)
            current = targets[name] = _Shown(int(tid))
        elif current is None:
            continue
        elif depth == 4:
            section = body.rstrip(":")
        elif section == "LUN information" and depth == 8 and body.startswith("LUN: "):
            lu = current.luns[int(body.removeprefix("LUN: "))] = _ShownLu()
        elif section == "LUN information" and depth == 12 and lu is not None:
            key, _, value = body.partition(": ")
            if key == "SCSI ID":
                lu.scsi_id = value.strip()
            elif key == "SCSI SN":
                lu.scsi_sn = value.strip()
            elif key == "Size":
                lu.size_mib = int(value.split()[0])
            elif key == "Backing store path":
                lu.path = value.strip()
        elif section == "Account information" and depth == 8:
            if body.endswith(" (outgoing)"):
                current.outgoing = body.removesuffix(" (outgoing)")
            else:
                current.incoming.add(body)
        elif section == "ACL information" and depth == 8:
            current.acl.add(body)
    return targets


class DataPlane:
    def __init__(self, control: int, prefix: str, memo: Path) -> None:
        self.control = control
        self.prefix = prefix
        self.memo = memo  # the CHAP accounts this simulator made (to remove only those)
        self._passwords: dict[str, str] = {}  # what this process set; tgtd never shows them
        self._sizes: dict[tuple[str, int], int] = {}

    def _adm(self, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["tgtadm", "-C", str(self.control), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            shown = " ".join("***" if secret is not None and a == secret else a for a in argv)
            log.warning("tgtadm failed (%d): %s: %s", done.returncode, shown, done.stderr.strip())
        return done

    def show(self) -> dict[str, _Shown] | None:
        """What tgtd holds, or None when it does not answer."""
        done = self._adm("--lld", "iscsi", "--op", "show", "--mode", "target")
        return _parse(done.stdout) if done.returncode == 0 else None

    def lacks(self, desired: Mapping[str, TargetSpec]) -> bool:
        """tgtd does not answer, or lacks a target it should have (a restarted tgtd)."""
        shown = self.show()
        return shown is None or any(name not in shown for name in desired)

    def apply(
        self, desired: Mapping[str, TargetSpec], recreate: frozenset[tuple[str, int]] = frozenset()
    ) -> bool:
        """Make tgtd hold exactly `desired` under the prefix; False if tgtd cannot be reached."""
        if self.show() is None:
            log.warning("tgtd (control %d) does not answer: data plane not applied", self.control)
            return False
        self._accounts(desired)
        shown = self.show() or {}
        for name, have in shown.items():
            if name.startswith(self.prefix) and name not in desired:
                self._adm(
                    "--lld", "iscsi", "--op", "delete", "--force", "--mode", "target", "--tid", str(have.tid)
                )
        next_tid = max((t.tid for t in shown.values()), default=0) + 1
        for name, spec in sorted(desired.items()):
            found = shown.get(name)
            if found is None:
                self._adm(
                    "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", str(next_tid), "-T", name
                )
                found = _Shown(next_tid)
                next_tid += 1
            self._target(name, spec, found, recreate)
        return True

    def _target(
        self, name: str, spec: TargetSpec, have: _Shown, recreate: frozenset[tuple[str, int]]
    ) -> None:
        tid = str(have.tid)
        lu_base = ["--lld", "iscsi", "--mode", "logicalunit", "--tid", tid]
        for lun in sorted(set(have.luns) - set(spec.luns) - {0}):
            self._adm(*lu_base, "--op", "delete", "--lun", str(lun))
            self._sizes.pop((name, lun), None)
        for lun, lu in sorted(spec.luns.items()):
            shown = have.luns.get(lun)
            stale = (
                shown is None
                or (name, lun) in recreate
                or (shown.path, shown.scsi_id, shown.scsi_sn, shown.size_mib)
                != (lu.path, lu.scsi_id, lu.scsi_sn, lu.size >> 20)
                or self._sizes.get((name, lun), lu.size) != lu.size
            )
            if not stale:
                continue
            if shown is not None:
                self._adm(*lu_base, "--op", "delete", "--lun", str(lun))
            self._adm(*lu_base, "--op", "new", "--lun", str(lun), "-b", lu.path)
            params = f"scsi_id={lu.scsi_id},scsi_sn={lu.scsi_sn},thin_provisioning=1"
            self._adm(*lu_base, "--op", "update", "--lun", str(lun), "--params", params)
            self._sizes[(name, lun)] = lu.size
        target = ["--lld", "iscsi", "--mode", "target", "--tid", tid]
        for initiator in sorted(spec.acl - have.acl):
            self._adm(*target, "--op", "bind", "--initiator-name", initiator)
        for initiator in sorted(have.acl - spec.acl):
            self._adm(*target, "--op", "unbind", "--initiator-name", initiator)
        account = ["--lld", "iscsi", "--mode", "account", "--tid", tid]
        for user in sorted(set(spec.incoming) - have.incoming):
            self._adm(*account, "--op", "bind", "--user", user)
        for user in sorted(have.incoming - set(spec.incoming)):
            if user in self._owned():
                self._adm(*account, "--op", "unbind", "--user", user)
        wanted = spec.outgoing[0] if spec.outgoing else None
        if have.outgoing != wanted:
            if have.outgoing is not None:
                self._adm(*account, "--op", "unbind", "--user", have.outgoing, "--outgoing")
            if wanted is not None:
                self._adm(*account, "--op", "bind", "--user", wanted, "--outgoing")

    def _owned(self) -> set[str]:
        try:
            return set(json.loads(self.memo.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError):
            return set()

    def _accounts(self, desired: Mapping[str, TargetSpec]) -> None:
        """tgtd's accounts are global: make each wanted user with its password (again when
        this process has not set that password itself), and remove the users it made that
        no target needs any more."""
        wanted: dict[str, str] = {}
        for spec in desired.values():
            wanted.update(spec.incoming)
            if spec.outgoing:
                wanted[spec.outgoing[0]] = spec.outgoing[1]
        listed = self._adm("--lld", "iscsi", "--op", "show", "--mode", "account").stdout
        present = {line.strip() for line in listed.splitlines()[1:] if line.strip()}
        base = ["--lld", "iscsi", "--mode", "account"]
        for user in sorted(self._owned() - set(wanted)):
            if user in present:
                self._adm(*base, "--op", "delete", "--user", user)
            self._passwords.pop(user, None)
        for user, password in sorted(wanted.items()):
            if user in present and self._passwords.get(user) == password:
                continue
            if user in present:
                self._adm(*base, "--op", "delete", "--user", user)
            self._adm(*base, "--op", "new", "--user", user, "--password", password, secret=password)
            self._passwords[user] = password
        self.memo.write_text(json.dumps(sorted(wanted)), encoding="utf-8")

    def remove_all(self) -> None:
        """Delete every target under the prefix and every account this simulator made."""
        self.apply({})
