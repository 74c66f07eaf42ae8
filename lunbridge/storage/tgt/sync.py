"""Make tgtd hold exactly the targets the state file describes.

tgtd forgets everything when it restarts, and a crash between a tgtadm command and the state
write can leave tgtd half-changed. So a backend call that may find tgtd out of line (see
`core`) starts with one `tgtadm --op show` and compares it with the desired targets; anything
missing or different is (re)applied and anything extra under the backend's IQN prefix is
removed. On an unchanged tgtd this costs one tgtadm run and no change. `reconcile` returns what
tgtd then holds, so a change made right after compares with that picture and sends only its
own commands: no `show`, whose cost grows with every LU tgtd serves.

Compared per target: the ACL (initiator names), the CHAP accounts bound to it (incoming and
outgoing users) and, per LU, the backing file, scsi_id, scsi_sn and thin provisioning. Sizes
are not compared: tgt reads the size from the backing file when an LU is created, so a resize
re-creates the LU explicitly (see `TgtBackend`). A new target gets its LUs and its CHAP
accounts before its ACL, so no initiator sees it half made or logs in before CHAP is asked.

CHAP accounts (see `chap`) are global in tgtd and show no password, so the sync cannot compare
secrets. It re-creates (`delete`, `new`) an account that no target of the prefix binds (after a
tgtd restart: all of them) and each account it is told to `reset` (a new or changed secret);
an account bound to a target of the prefix is taken to hold its recorded secret. An account
that no igroup needs any more is deleted once no target of the prefix binds it (an account
that another tool's target binds is left alone, and not re-created either).

How, because of a tgtd bug (tgt 1.0.85; upstream's target.c reads the same): a target keeps
its incoming accounts in an array that `unbind` (and `delete` of a bound account) leaves a hole
in unless it takes the last one, while `show` and the login check walk only the first `count`
slots: `show` then follows a NULL account and tgtd dies (measured: bind a1, bind b1, unbind
a1, show → tgtd gone), and a login would miss the account past the hole (by the code). So a
target whose incoming accounts change is rebuilt: its incoming accounts are unbound last
first, accounts are deleted only once no target of the prefix binds them, and the wanted ones
are bound again. A target that had CHAP and keeps it has its ACL taken away for those
milliseconds (tgtd lets nobody in without an ACL, and asks for no CHAP without an incoming
account), so it never takes a login without CHAP; sessions already logged in stay (measured).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from lunbridge.storage.tgt.admin import ShownLu, ShownTarget, Tgtadm


@dataclass(frozen=True)
class DesiredLu:
    path: str
    scsi_id: str
    scsi_sn: str

    def params(self) -> dict[str, str]:
        return {"scsi_id": self.scsi_id, "scsi_sn": self.scsi_sn, "thin_provisioning": "1"}

    def matches(self, shown: ShownLu) -> bool:
        return (
            shown.backing_path == self.path
            and shown.scsi_id == self.scsi_id
            and shown.scsi_sn == self.scsi_sn
            and shown.thin
        )


@dataclass(frozen=True)
class DesiredTarget:
    name: str
    acl: frozenset[str]
    luns: Mapping[int, DesiredLu]
    incoming: frozenset[str] = frozenset()  # CHAP users the initiators prove
    outgoing: str | None = None  # the CHAP user the target proves (mutual CHAP)


async def reconcile(
    adm: Tgtadm,
    desired: Mapping[str, DesiredTarget],
    prefix: str,
    accounts: Mapping[str, str] | None = None,
    reset: Collection[str] = (),
    shown: Mapping[str, ShownTarget] | None = None,
) -> dict[str, ShownTarget]:
    """Apply the difference between tgtd and `desired`; returns what tgtd holds afterwards
    (every target by IQN, as `show` would list it). `accounts` (user → secret) are the CHAP
    accounts the targets bind; `reset` the users to re-create whatever tgtd holds (to delete,
    when not in `accounts`). `shown` is what tgtd holds when the caller knows it (the picture
    a previous call returned, with nothing changed since): then no `show` runs."""
    accounts = accounts or {}
    if shown is None:
        shown = await adm.show()
    ours = {name: target for name, target in shown.items() if name.startswith(prefix)}
    foreign = {user for name, t in shown.items() if name not in ours for user in t.accounts}
    seen = {user for target in ours.values() for user in target.accounts}
    stale = (set(reset) | (set(accounts) - seen)) - foreign
    for name, target in ours.items():
        if name not in desired:
            await adm.delete_target(target.tid)
    plans = {name: _Plan(want, shown[name], stale) for name, want in desired.items() if name in shown}
    for each in plans.values():  # then no target of the prefix binds a stale or unneeded account
        await each.strip(adm)
    for user in sorted(stale | (seen - set(accounts) - foreign)):
        await adm.delete_account(user)
        if user in stale and user in accounts:
            await adm.new_account(user, accounts[user])
    used = {target.tid for target in shown.values()}
    picture = {name: target for name, target in shown.items() if name not in ours}
    for name, want in sorted(desired.items()):
        plan = plans.get(name)
        if plan is None:
            tid = await _create(adm, want, used)
            picture[name] = _held(tid, want, tuple(sorted(want.incoming)))
        else:
            await plan.apply(adm)
            incoming = tuple(sorted(want.incoming)) if plan.incoming else plan.have.incoming
            picture[name] = _held(plan.have.tid, want, incoming)
    return picture


def _held(tid: int, want: DesiredTarget, incoming: tuple[str, ...]) -> ShownTarget:
    """Target `want` as `show` lists it once made so (`incoming` in the order bound)."""
    luns = {n: ShownLu(n, "disk", lu.scsi_id, lu.scsi_sn, lu.path, thin=True) for n, lu in want.luns.items()}
    return ShownTarget(tid, want.name, luns, tuple(sorted(want.acl)), incoming, want.outgoing)


async def _create(adm: Tgtadm, want: DesiredTarget, used: set[int]) -> int:
    """Make target `want` with its LUs, CHAP bindings and ACL; returns its tid."""
    tid = max(used, default=0) + 1
    while not await adm.new_target(tid, want.name):  # taken meanwhile by another tool
        used.add(tid)
        tid += 1
    used.add(tid)
    for lun, lu in sorted(want.luns.items()):
        await adm.new_lu(tid, lun, lu.path, lu.params())
    for user in sorted(want.incoming):  # CHAP before the ACL lets anyone in
        await adm.bind_account(tid, user)
    if want.outgoing is not None:
        await adm.bind_account(tid, want.outgoing, outgoing=True)
    for initiator in sorted(want.acl):
        await adm.bind(tid, initiator)
    return tid


@dataclass
class _Plan:
    """What changes on a target that exists: `strip` takes off the CHAP bindings that change
    (and the ACL while they do, if the target keeps CHAP), `apply` sets LUs, CHAP and ACL."""

    want: DesiredTarget
    have: ShownTarget
    stale: Collection[str] = field(repr=False)

    def __post_init__(self) -> None:
        have, want = self.have, self.want
        self.incoming = set(have.incoming) != want.incoming or any(u in self.stale for u in have.incoming)
        self.outgoing = have.outgoing != want.outgoing or have.outgoing in self.stale
        self.closed = self.incoming and bool(have.incoming and want.incoming and have.acl)

    async def strip(self, adm: Tgtadm) -> None:
        tid, have = self.have.tid, self.have
        if self.closed:
            for initiator in have.acl:
                await adm.unbind(tid, initiator)
        if self.outgoing and have.outgoing is not None:
            await adm.unbind_account(tid, have.outgoing, outgoing=True)
        if self.incoming:
            for user in reversed(have.incoming):  # last first: no hole in tgtd's array
                await adm.unbind_account(tid, user)

    async def apply(self, adm: Tgtadm) -> None:
        want, tid = self.want, self.have.tid
        await _update_luns(adm, want, self.have)
        if self.outgoing and want.outgoing is not None:
            await adm.bind_account(tid, want.outgoing, outgoing=True)
        if self.incoming:
            for user in sorted(want.incoming):
                await adm.bind_account(tid, user)
        acl = set() if self.closed else set(self.have.acl)
        for initiator in sorted(acl - want.acl):
            await adm.unbind(tid, initiator)
        for initiator in sorted(want.acl - acl):
            await adm.bind(tid, initiator)


async def _update_luns(adm: Tgtadm, want: DesiredTarget, have: ShownTarget) -> None:
    for lun in sorted(have.luns):
        if lun != 0 and lun not in want.luns:
            await adm.delete_lu(have.tid, lun)
    for lun, lu in sorted(want.luns.items()):
        shown = have.luns.get(lun)
        if shown is not None and lu.matches(shown):
            continue
        if shown is not None:
            if shown.backing_path == lu.path:  # only the ids differ: set them in place
                await adm.update_lu(have.tid, lun, lu.params())
                continue
            await adm.delete_lu(have.tid, lun)
        await adm.new_lu(have.tid, lun, lu.path, lu.params())
