"""CHAP on the tgt backend (`set_chap`), against the fake tgtd: accounts made and bound, kept
in the state file, re-applied after a tgtd restart, shared, refused, removed, and never shown."""

from __future__ import annotations

import json
import logging
import stat
from typing import Any

import pytest

from lunbridge.errors import Conflict, InvalidArgument, LunbridgeError, NotFound
from lunbridge.san import Transport
from lunbridge.storage.base import Chap
from lunbridge.storage.tgt import TgtBackend
from tests.unit.storage.conftest import PREFIX
from tests.unit.storage.fake_tgt import FakeTgtd

A = "iqn.1998-01.com.example:node-a"
B = "iqn.1998-01.com.example:node-b"
ONE_WAY = Chap("node-user", "initiator-secret-1")
MUTUAL = Chap("node-user", "initiator-secret-1", "array-user", "target-secret-01")
SECRETS = ("initiator-secret-1", "initiator-secret-2", "target-secret-01")


@pytest.fixture
def guarded(fake: FakeTgtd) -> set[str]:
    """Names of targets that must ask for CHAP whenever their ACL lets anyone in, checked
    after every tgtadm command (tgtd asks for CHAP only while an incoming account is bound)."""
    names: set[str] = set()

    def never_open(tgtd: FakeTgtd) -> None:
        for target in tgtd.targets.values():
            if target.name in names and target.acl:
                assert target.count, f"{target.name} takes logins without CHAP"

    fake.after.append(never_open)
    return names


async def _group(backend: TgtBackend, name: str = "g", initiator: str = A) -> str:
    await backend.create_igroup(name, Transport.ISCSI, [initiator])
    return PREFIX + name


def _state(backend: TgtBackend) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(backend.config.state_file.read_text())
    return data


async def test_accounts_are_made_bound_and_kept_in_a_private_state_file(
    backend: TgtBackend, fake: FakeTgtd
) -> None:
    target = await _group(backend)
    await backend.set_chap("g", ONE_WAY)
    assert fake.accounts == {"node-user": "initiator-secret-1"}
    shown = fake.by_name(target)
    assert shown is not None
    assert shown.incoming == ["node-user"]
    assert fake.admits(target, A, ("node-user", "initiator-secret-1"))
    assert not fake.admits(target, A, ("node-user", "wrong-secret-123"))
    assert not fake.admits(target, A)  # CHAP is asked now
    assert not fake.admits(target, B, ("node-user", "initiator-secret-1"))  # and the ACL still

    await backend.set_chap("g", MUTUAL)
    assert shown.outgoing == "array-user"
    assert fake.admits(target, A, ("node-user", "initiator-secret-1"), ("array-user", "target-secret-01"))
    assert not fake.admits(target, A, ("node-user", "initiator-secret-1"), ("array-user", "other-secret-1"))

    path = backend.config.state_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    group = _state(backend)["igroups"]["g"]
    assert group["chap"] == {
        "user": "node-user",
        "secret": "initiator-secret-1",
        "mutual_user": "array-user",
        "mutual_secret": "target-secret-01",
    }


async def test_set_chap_is_idempotent(backend: TgtBackend, fake: FakeTgtd) -> None:
    await _group(backend)
    await backend.set_chap("g", MUTUAL)
    done = len(fake.mutations())
    await backend.set_chap("g", Chap("node-user", "initiator-secret-1", "array-user", "target-secret-01"))
    await backend.list_igroups()
    assert len(fake.mutations()) == done  # nothing re-applied, nothing re-created


async def test_a_changed_secret_is_applied_and_chap_is_never_off_meanwhile(
    backend: TgtBackend, fake: FakeTgtd, guarded: set[str]
) -> None:
    target = await _group(backend)
    await backend.set_chap("g", ONE_WAY)
    guarded.add(target)
    await backend.set_chap("g", Chap("node-user", "initiator-secret-2"))
    assert fake.accounts == {"node-user": "initiator-secret-2"}
    assert fake.admits(target, A, ("node-user", "initiator-secret-2"))
    assert not fake.admits(target, A, ("node-user", "initiator-secret-1"))
    await backend.set_chap("g", Chap("other-user", "initiator-secret-2"))  # a new user: bound first
    assert fake.accounts == {"other-user": "initiator-secret-2"}
    assert fake.admits(target, A, ("other-user", "initiator-secret-2"))
    assert _state(backend)["reset_accounts"] == []


async def test_a_restarted_tgtd_gets_its_accounts_back_before_its_acl(
    backend: TgtBackend, fake: FakeTgtd, guarded: set[str]
) -> None:
    target = await _group(backend)
    await backend.set_chap("g", MUTUAL)
    fake.restart()
    guarded.add(target)
    await backend.sync()
    assert fake.accounts == {"node-user": "initiator-secret-1", "array-user": "target-secret-01"}
    assert fake.admits(target, A, ("node-user", "initiator-secret-1"), ("array-user", "target-secret-01"))
    fresh = TgtBackend(backend.config, runner=fake)  # another process, from the state file alone
    fake.restart()
    await fresh.sync()
    assert fake.admits(target, A, ("node-user", "initiator-secret-1"), ("array-user", "target-secret-01"))
    await fresh.close()


async def test_two_igroups_share_one_account(backend: TgtBackend, fake: FakeTgtd) -> None:
    first, second = await _group(backend, "g1", A), await _group(backend, "g2", B)
    await backend.set_chap("g1", ONE_WAY)
    await backend.set_chap("g2", Chap("node-user", "initiator-secret-1"))
    assert fake.accounts == {"node-user": "initiator-secret-1"}
    assert fake.admits(first, A, ("node-user", "initiator-secret-1"))
    assert fake.admits(second, B, ("node-user", "initiator-secret-1"))
    await backend.set_chap("g1", None)  # g2 still uses the account
    assert fake.admits(first, A)
    assert fake.admits(second, B, ("node-user", "initiator-secret-1"))
    assert not fake.admits(second, B)
    await backend.delete_igroup("g2")  # the last user of the account: it goes
    assert fake.accounts == {}


async def test_one_user_with_two_secrets_or_two_directions_is_refused(
    backend: TgtBackend, fake: FakeTgtd
) -> None:
    await _group(backend, "g1", A)
    await _group(backend, "g2", B)
    await backend.set_chap("g1", MUTUAL)
    before = len(fake.mutations())
    with pytest.raises(InvalidArgument, match="'node-user' of igroup g2 is used by igroup g1") as clash:
        await backend.set_chap("g2", Chap("node-user", "initiator-secret-2"))
    assert "initiator-secret" not in str(clash.value)
    with pytest.raises(InvalidArgument, match="'array-user' of igroup g2 is igroup g1's target account"):
        await backend.set_chap("g2", Chap("array-user", "target-secret-01"))
    with pytest.raises(InvalidArgument, match="mutual_user 'node-user' of igroup g2 is igroup g1's"):
        await backend.set_chap("g2", Chap("u2-user", "initiator-secret-2", "node-user", "initiator-secret-1"))
    assert len(fake.mutations()) == before
    assert fake.accounts == {"node-user": "initiator-secret-1", "array-user": "target-secret-01"}


async def test_none_and_delete_igroup_remove_bindings_and_accounts(
    backend: TgtBackend, fake: FakeTgtd
) -> None:
    target = await _group(backend)
    await backend.set_chap("g", MUTUAL)
    await backend.set_chap("g", None)
    assert fake.accounts == {}
    shown = fake.by_name(target)
    assert shown is not None
    assert (shown.incoming, shown.outgoing) == ([], None)
    assert fake.admits(target, A)
    assert _state(backend)["igroups"]["g"]["chap"] is None
    await backend.set_chap("g", None)  # idempotent
    await backend.set_chap("g", ONE_WAY)
    await backend.delete_igroup("g")
    assert fake.accounts == {}
    assert fake.by_name(target) is None


@pytest.mark.parametrize(
    ("chap", "field"),
    [
        (Chap("", "initiator-secret-1"), "user"),
        (Chap("two words", "initiator-secret-1"), "user"),
        (Chap("comma,user", "initiator-secret-1"), "user"),
        (Chap("x" * 256, "initiator-secret-1"), "user"),
        (Chap("node-user", "short-12345"), "secret"),  # 11 bytes
        (Chap("node-user", "s" * 256), "secret"),
        (Chap("node-user", "with space-secret"), "secret"),
        (Chap("node-user", "newline\nsecret12"), "secret"),
        (Chap("node-user", "tab\tsecret123456"), "secret"),
        (Chap("node-user", "initiator-secret-1", "bad user", "target-secret-01"), "mutual_user"),
        (Chap("node-user", "initiator-secret-1", "array-user", "short"), "mutual_secret"),
        (Chap("node-user", "initiator-secret-1", "array-user", None), "mutual_user and mutual_secret"),
        (Chap("node-user", "initiator-secret-1", None, "target-secret-01"), "mutual_user and mutual_secret"),
        (Chap("node-user", "initiator-secret-1", "node-user", "target-secret-01"), "mutual_user"),
        (Chap("node-user", "initiator-secret-1", "array-user", "initiator-secret-1"), "mutual_secret"),
    ],
)
async def test_bad_users_and_secrets_are_named_but_not_shown(
    backend: TgtBackend, fake: FakeTgtd, chap: Chap, field: str
) -> None:
    await _group(backend)
    with pytest.raises(InvalidArgument, match=f"CHAP {field}") as bad:
        await backend.set_chap("g", chap)
    for secret in (chap.secret, chap.mutual_secret):
        if secret and len(secret) > 5:
            assert secret not in str(bad.value)
    assert fake.accounts == {}


async def test_the_limits_are_inclusive(backend: TgtBackend, fake: FakeTgtd) -> None:
    await _group(backend)
    await backend.set_chap("g", Chap("u" * 255, "s" * 12))
    await backend.set_chap("g", Chap("u", "s" * 255))
    await backend.set_chap("g", Chap("ü" * 127, "ß" * 127 + "s"))  # bytes are counted: 254 and 255
    assert fake.accounts == {"ü" * 127: "ß" * 127 + "s"}
    with pytest.raises(InvalidArgument, match="CHAP secret"):
        await backend.set_chap("g", Chap("u", "ß" * 128))  # 128 characters, 256 bytes


async def test_missing_and_fcp_igroups(backend: TgtBackend) -> None:
    with pytest.raises(NotFound, match="igroup 'nope'"):
        await backend.set_chap("nope", ONE_WAY)
    with pytest.raises(NotFound):
        await backend.set_chap("nope", None)
    await backend.create_igroup("f", Transport.FCP, ["20:00:00:25:b5:00:00:01"])
    with pytest.raises(InvalidArgument, match="FCP igroup"):
        await backend.set_chap("f", ONE_WAY)


async def test_a_change_that_fails_half_way_is_rolled_back(backend: TgtBackend, fake: FakeTgtd) -> None:
    target = await _group(backend)
    await backend.set_chap("g", ONE_WAY)
    # the account is re-created with the new secret, then binding it fails
    fake.fail_with[("bind", "node-user")] = "can't find the target"
    with pytest.raises(Conflict):
        await backend.set_chap("g", Chap("node-user", "initiator-secret-2"))
    assert fake.accounts["node-user"] == "initiator-secret-2"  # tgtd half changed
    saved = _state(backend)
    assert saved["igroups"]["g"]["chap"]["secret"] == "initiator-secret-1"
    assert saved["reset_accounts"] == ["node-user"]
    fresh = TgtBackend(backend.config, runner=fake)  # as if the process had died there
    await fresh.sync()
    assert fake.accounts == {"node-user": "initiator-secret-1"}  # back to the saved secret
    assert fake.admits(target, A, ("node-user", "initiator-secret-1"))
    assert _state(backend)["reset_accounts"] == []
    await fresh.close()


async def test_accounts_it_does_not_need_are_cleaned_but_other_tools_keep_theirs(
    backend: TgtBackend, fake: FakeTgtd, guarded: set[str]
) -> None:
    target = await _group(backend)
    await backend.set_chap("g", ONE_WAY)
    ours = fake.by_name(target)
    assert ours is not None
    tid = str(next(t for t, found in fake.targets.items() if found is ours))
    await fake.tgtadm("--op", "new", "--mode", "target", "--tid", "99", "-T", "iqn.2024-01.other:t")
    for user, secret in [("stray", "stray-secret-1"), ("both", "both-secret-1"), ("theirs", "their-secret1")]:
        await fake.tgtadm("--mode", "account", "--op", "new", "--user", user, "--password", secret)
    # left by a crash, say, and in the order in which unbinding the first one crashes tgtd
    await fake.tgtadm("--mode", "account", "--op", "unbind", "--tid", tid, "--user", "node-user")
    for user in ("stray", "both", "node-user"):
        await fake.tgtadm("--mode", "account", "--op", "bind", "--tid", tid, "--user", user)
    for user in ("both", "theirs"):
        await fake.tgtadm("--mode", "account", "--op", "bind", "--tid", "99", "--user", user)
    assert ours.incoming == ["stray", "both", "node-user"]
    guarded.add(target)
    await backend.sync()
    assert ours.incoming == ["node-user"]
    assert fake.targets[99].incoming == ["both", "theirs"]  # another tool's target: untouched
    assert set(fake.accounts) == {"node-user", "both", "theirs"}  # "stray" only served lunbridge
    assert fake.admits(target, A, ("node-user", "initiator-secret-1"))
    with pytest.raises(Conflict, match=r"'theirs' of igroup g is an account of target iqn\.2024-01\.other:t"):
        await backend.set_chap("g", Chap("theirs", "initiator-secret-9"))
    assert fake.accounts["theirs"] == "their-secret1"


async def test_no_secret_in_reprs_logs_or_errors(
    backend: TgtBackend, fake: FakeTgtd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _group(backend)
    texts = [repr(MUTUAL), str(MUTUAL)]
    await backend.set_chap("g", MUTUAL)
    for secret in ("-initiator'sec,ret", "initiator-secret-2"):
        fake.fail_with[("new", "node-user")] = "this account already exists"
        with pytest.raises(LunbridgeError) as failed:
            await backend.set_chap("g", Chap("node-user", secret, "array-user", "target-secret-01"))
        texts += [str(failed.value), repr(failed.value)]
        await backend.sync()
    texts += [repr(backend._state), caplog.text]
    for text in texts:
        for secret in (*SECRETS, "-initiator'sec,ret", "initiator'sec", "sec,ret"):
            assert secret not in text
