"""CHAP for the tgt backend: which checks a `Chap` passes, and which tgtd accounts a state needs.

Why: initiator-mode nodes log in to an igroup's target themselves, and the target's ACL alone
trusts any initiator that names an allowed IQN. With CHAP (`set_chap`) those initiators must
also prove a secret; with mutual CHAP the target proves one back.

Shapes. tgtd's CHAP accounts are global (a user and its password) and bound to targets:
incoming (initiators prove it) or outgoing (the target proves it; one per target). An igroup's
`Chap(user, secret)` is the incoming account `user` bound to the igroup's target; with
`mutual_user`/`mutual_secret` the outgoing account `mutual_user` too. The state file
(`state.IgroupRecord.chap`) is the truth, and `sync.reconcile` makes every target's bindings
match it on every call (after a tgtd restart it re-creates the accounts from the state file).
Two igroups may share an account (same user, same secret), so an account lives as long as one
igroup uses it. tgtd's account names are global: an account of the same name that no target
binds is taken over (re-created with lunbridge's secret) once an igroup uses that name; one
that a target outside the backend's IQN prefix binds is refused (see below).

Secrets: tgtd never shows a password, so the sync can only see that an account is bound, not
with what secret. A new or changed secret is therefore applied by re-creating the account
(`delete`, `new`): the user is first recorded in the state's `reset_accounts` and the state
saved, so a call that fails or a process that dies half-way leaves a mark that makes the next
call re-create the account with the recorded secret (the old one: a failed change is not
saved). While the account is re-created, its targets have no ACL, so they never take a login
without CHAP in between (tgtd asks for CHAP only while an incoming account is bound; see
`sync` for that, and for the tgtd bug that decides the order of the commands). A new user
that a target outside the backend's IQN prefix binds (another tool's account) is refused:
its secret cannot be known, and re-creating it would change that target.

Errors, all InvalidArgument and naming the field (`user`, `secret`, `mutual_user`,
`mutual_secret`) but never a secret's value: a user of 1..255 bytes (UTF-8) without
whitespace, control characters or ',' (tgtadm cuts the user at a ','); a secret of 12..255
bytes without whitespace or control characters (RFC 3720 §8.2.1 asks for at least 96 bits;
tgtd, libiscsi and open-iscsi take at most 255 bytes); a mutual user and secret both or
neither, the mutual secret not the initiators' secret (RFC 3720 §8.2.1: a secret MUST NOT
serve both directions), a user that another igroup uses with another secret, or in the other
direction; an igroup that is FCP (tgtd serves iSCSI only). Conflict: a user that another
tool's target binds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from lunbridge.errors import Conflict, InvalidArgument
from lunbridge.san import Transport
from lunbridge.storage.base import Chap
from lunbridge.storage.tgt.state import IgroupRecord, State

MIN_SECRET = 12  # bytes: RFC 3720 §8.2.1 asks for 96 bits at least
MAX_LENGTH = 255  # bytes, of a user or a secret: tgtd's and the initiators' limit (256 with the NUL)


def _bad_character(value: str, extra: str = "") -> bool:
    return any(c.isspace() or not c.isprintable() or c in extra for c in value)


def _check_user(igroup: str, field: str, user: object) -> None:
    if not isinstance(user, str) or not 1 <= len(user.encode()) <= MAX_LENGTH or _bad_character(user, ","):
        raise InvalidArgument(
            f"CHAP {field} {user!r} of igroup {igroup} is invalid: use 1-{MAX_LENGTH} bytes without "
            "whitespace, control characters or ','"
        )


def _check_secret(igroup: str, field: str, secret: object) -> None:
    if not isinstance(secret, str):
        raise InvalidArgument(f"CHAP {field} of igroup {igroup} must be a string")
    size = len(secret.encode())
    if not MIN_SECRET <= size <= MAX_LENGTH or _bad_character(secret):
        raise InvalidArgument(
            f"CHAP {field} of igroup {igroup} is invalid: use {MIN_SECRET}-{MAX_LENGTH} bytes "
            "without whitespace or control characters (RFC 3720 asks for at least 96 bits; tgtd "
            f"and the initiators take at most {MAX_LENGTH} bytes)"
        )


def check_chap(igroup: str, chap: Chap) -> None:
    """The checks of one `Chap` on its own (see the module's docstring)."""
    if not isinstance(chap, Chap):
        raise InvalidArgument(f"CHAP of igroup {igroup} must be a Chap or None, not {type(chap).__name__}")
    _check_user(igroup, "user", chap.user)
    _check_secret(igroup, "secret", chap.secret)
    if (chap.mutual_user is None) != (chap.mutual_secret is None):
        raise InvalidArgument(
            f"CHAP mutual_user and mutual_secret of igroup {igroup} come together: give both "
            "(mutual CHAP) or neither (one-way)"
        )
    if chap.mutual_user is not None:
        _check_user(igroup, "mutual_user", chap.mutual_user)
        _check_secret(igroup, "mutual_secret", chap.mutual_secret)
        if chap.mutual_user == chap.user:
            raise InvalidArgument(
                f"CHAP mutual_user {chap.mutual_user!r} of igroup {igroup} equals its user: the "
                "target needs an account of its own, choose another mutual_user"
            )
        if chap.mutual_secret == chap.secret:
            raise InvalidArgument(
                f"CHAP mutual_secret of igroup {igroup} equals its secret, and RFC 3720 forbids "
                "one secret for both directions: choose another"
            )


def _accounts_of(chap: Chap) -> Iterator[tuple[str, str, bool]]:
    """(user, secret, outgoing) of each account `chap` needs."""
    yield chap.user, chap.secret, False
    if chap.mutual_user is not None and chap.mutual_secret is not None:
        yield chap.mutual_user, chap.mutual_secret, True


def accounts(igroups: Mapping[str, IgroupRecord]) -> dict[str, str]:
    """user → secret of every tgtd account the (iSCSI) igroups need."""
    return {
        user: secret
        for rec in igroups.values()
        if rec.chap is not None and rec.transport is Transport.ISCSI
        for user, secret, _ in _accounts_of(rec.chap)
    }


def check_shared(state: State, igroup: str, chap: Chap) -> None:
    """Refuse a user that another igroup uses with another secret or in the other direction."""
    for other, rec in sorted(state.igroups.items()):
        if other == igroup or rec.chap is None:
            continue
        theirs = {user: (secret, outgoing) for user, secret, outgoing in _accounts_of(rec.chap)}
        for user, secret, outgoing in _accounts_of(chap):
            if user not in theirs:
                continue
            field = "mutual_user" if outgoing else "user"
            if theirs[user][1] != outgoing:
                raise InvalidArgument(
                    f"CHAP {field} {user!r} of igroup {igroup} is igroup {other}'s "
                    f"{'initiator' if outgoing else 'target'} account: one account cannot serve "
                    "both directions, choose another user"
                )
            if theirs[user][0] != secret:
                raise InvalidArgument(
                    f"CHAP {field} {user!r} of igroup {igroup} is used by igroup {other} with "
                    "another secret, and igroups may share an account only with the same secret: "
                    "choose another user, or give both igroups the same secret"
                )


def changed_users(state: State, chap: Chap) -> frozenset[str]:
    """The users of `chap` whose secret tgtd may not hold yet: those the state does not
    already record with that very secret (new users, and changed secrets)."""
    known = accounts(state.igroups)
    return frozenset(user for user, secret, _ in _accounts_of(chap) if known.get(user) != secret)


def check_foreign(igroup: str, chap: Chap, foreign: Mapping[str, str]) -> None:
    """Refuse a user that a target outside the prefix binds (`foreign`: user → target)."""
    for user, _, outgoing in _accounts_of(chap):
        if user in foreign:
            raise Conflict(
                f"CHAP {'mutual_user' if outgoing else 'user'} {user!r} of igroup {igroup} is an "
                f"account of target {foreign[user]}, which lunbridge does not manage: choose "
                "another user, or unbind it from that target"
            )


def need_iscsi(igroup: str, rec: IgroupRecord) -> None:
    if rec.transport is not Transport.ISCSI:
        raise InvalidArgument(
            f"igroup {igroup} is an FCP igroup: CHAP is iSCSI's login authentication, set it on an "
            "iSCSI igroup"
        )
