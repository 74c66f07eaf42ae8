"""tgtadm command lines, the `--op show` parser and the meaning of tgtadm failures."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lunbridge.command import CommandTimedOut, NotInstalled, Result
from lunbridge.errors import Busy, Conflict, InvalidArgument, Unavailable
from lunbridge.storage.tgt.admin import Tgtadm, parse_show
from tests.unit.storage.fake_tgt import FakeTgtd, TgtdCrash

# Captured from tgt 1.0.85 with one initiator logged in (trailing blanks stripped).
SHOW = """\
Target 1: iqn.2024-01.io.lunbridge:ig1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.1998-01.com.vmware:a alias: none
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags:
        LUN: 1
            Type: disk
            SCSI ID: 60a4c4210102030401010101010101f2
            SCSI SN: LB010203040000000001
            Size: 210 MB, Block size: 512
            Online: Yes
            Thin-provisioning: Yes
            Backing store type: rdwr
            Backing store path: /pool a/luns/x.img
            Backing store flags:
    Account information:
    ACL information:
        iqn.1998-01.com.vmware:a
        iqn.1998-01.com.vmware:b
Target 3: iqn.2024-01.example:other
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00030000
            SCSI SN: beaf30
            Backing store path: None
    Account information:
    ACL information:
"""


def test_parse_show_reads_targets_lus_and_acls_not_sessions() -> None:
    targets = parse_show(SHOW)
    assert set(targets) == {"iqn.2024-01.io.lunbridge:ig1", "iqn.2024-01.example:other"}
    ig1 = targets["iqn.2024-01.io.lunbridge:ig1"]
    assert ig1.tid == 1
    assert ig1.acl == ("iqn.1998-01.com.vmware:a", "iqn.1998-01.com.vmware:b")
    assert set(ig1.luns) == {0, 1}
    lu = ig1.luns[1]
    assert lu.scsi_id == "60a4c4210102030401010101010101f2"
    assert lu.scsi_sn == "LB010203040000000001"
    assert lu.backing_path == "/pool a/luns/x.img"
    assert lu.thin is True
    assert ig1.luns[0].type == "controller"
    other = targets["iqn.2024-01.example:other"]
    assert other.tid == 3
    assert other.acl == ()
    assert set(other.luns) == {0}


def test_parse_show_of_an_empty_tgtd() -> None:
    assert parse_show("") == {}


async def test_command_lines() -> None:
    fake = FakeTgtd(control=42)
    adm = Tgtadm(42, "127.0.0.1:3260", 5.0, fake)
    assert await adm.new_target(4, "iqn.2024-01.io.lunbridge:g")
    await adm.new_lu(4, 2, "/p/l.img", {"scsi_id": "6abc", "scsi_sn": "SN1"})
    await adm.bind(4, "iqn.1998-01.com.vmware:a")
    assert fake.commands == [
        ["tgtadm", "-C", "42", "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "4",
         "-T", "iqn.2024-01.io.lunbridge:g"],
        ["tgtadm", "-C", "42", "--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "4",
         "--lun", "2", "--backing-store", "/p/l.img"],
        ["tgtadm", "-C", "42", "--lld", "iscsi", "--op", "update", "--mode", "logicalunit", "--tid", "4",
         "--lun", "2", "--params", "scsi_id=6abc,scsi_sn=SN1"],
        ["tgtadm", "-C", "42", "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "4",
         "--initiator-name", "iqn.1998-01.com.vmware:a"],
    ]  # fmt: skip
    shown = await adm.show()
    assert shown["iqn.2024-01.io.lunbridge:g"].luns[2].scsi_id == "6abc"


async def test_idempotent_refusals_are_accepted() -> None:
    fake = FakeTgtd()
    adm = Tgtadm(7, "127.0.0.1:3260", 5.0, fake)
    assert await adm.new_target(1, "iqn.2024-01.io.lunbridge:g")
    assert not await adm.new_target(1, "iqn.2024-01.io.lunbridge:h")  # tid taken
    await adm.bind(1, "iqn.1998-01.com.vmware:a")
    await adm.bind(1, "iqn.1998-01.com.vmware:a")
    await adm.unbind(1, "iqn.1998-01.com.vmware:z")
    await adm.delete_lu(1, 9)
    await adm.delete_target(1)
    await adm.delete_target(1)


def _result(code: int, stderr: str) -> Result:
    return Result(("tgtadm", "-C", "7"), code, "", stderr)


def test_errors_say_what_failed_and_what_to_do() -> None:
    adm = Tgtadm(7, "127.0.0.1:3260", 5.0, FakeTgtd())
    down = adm.error(_result(107, "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint"))
    assert isinstance(down, Unavailable)
    assert "control socket 7" in str(down)
    assert "/var/run/tgtd/socket.7" in str(down)
    assert "tgtd -C 7 --iscsi portal=127.0.0.1:3260" in str(down)
    assert isinstance(adm.error(_result(22, "tgtadm: this logical unit is still active")), Busy)
    assert isinstance(adm.error(_result(22, "tgtadm: invalid request")), InvalidArgument)
    assert isinstance(adm.error(_result(22, "tgtadm: can't find the target")), Conflict)


async def test_lu_delete_retries_while_busy() -> None:
    fake = FakeTgtd()
    adm = Tgtadm(7, "127.0.0.1:3260", 5.0, fake)
    await adm.new_target(1, "iqn.2024-01.io.lunbridge:g")
    await adm.new_lu(1, 1, "/p/l.img", {"scsi_id": "6a"})
    fake.fail_next["delete"] = "this logical unit is still active"
    await adm.delete_lu(1, 1)
    assert fake.targets[1].luns == {}
    fake.fail_next["delete"] = "this logical unit is still active"
    with pytest.raises(Busy, match="still active"):
        await adm.delete_lu(1, 9, attempts=1)


async def test_down_tgtd_is_unavailable() -> None:
    fake = FakeTgtd()
    fake.down = True
    with pytest.raises(Unavailable, match="control socket 7"):
        await Tgtadm(7, "127.0.0.1:3260", 5.0, fake).show()


async def test_a_missing_tgtadm_names_its_package() -> None:
    async def not_installed(argv: Sequence[str], time_limit: float) -> Result:
        raise NotInstalled(argv[0])

    with pytest.raises(NotInstalled, match=r"tgtadm is not installed .*install it \(Debian package tgt\)"):
        await Tgtadm(7, "127.0.0.1:3260", 5.0, not_installed).show()


# Captured from tgt 1.0.85: an incoming account, then the outgoing one (mutual CHAP).
SHOW_CHAP = """\
Target 1: iqn.2024-01.test:chap1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            Backing store path: None
    Account information:
        carol
        bob (outgoing)
    ACL information:
        iqn.1998-01.com.test:ini
Target 2: iqn.2024-01.test:chap2
    System information:
    Account information:
        o1
        alice
    ACL information:
"""


def test_parse_show_reads_chap_accounts() -> None:
    targets = parse_show(SHOW_CHAP)
    one, two = targets["iqn.2024-01.test:chap1"], targets["iqn.2024-01.test:chap2"]
    assert (one.incoming, one.outgoing, one.acl) == (("carol",), "bob", ("iqn.1998-01.com.test:ini",))
    assert one.accounts == ("carol", "bob")
    assert (two.incoming, two.outgoing, two.acl) == (("o1", "alice"), None, ())
    assert parse_show(SHOW)["iqn.2024-01.io.lunbridge:ig1"].accounts == ()


async def test_account_command_lines_and_idempotent_refusals() -> None:
    fake = FakeTgtd(control=42)
    adm = Tgtadm(42, "127.0.0.1:3260", 5.0, fake)
    await adm.new_target(1, "iqn.2024-01.io.lunbridge:g")
    await adm.new_account("u1", "secretsecret12")
    await adm.bind_account(1, "u1")
    await adm.bind_account(1, "u1")  # "this account already exists": bound already
    await adm.new_account("t1", "targetsecret12")
    await adm.bind_account(1, "t1", outgoing=True)
    base = ["tgtadm", "-C", "42", "--lld", "iscsi", "--mode", "account"]
    assert fake.commands[1:4] == [
        [*base, "--op", "new", "--user", "u1", "--password", "secretsecret12"],
        [*base, "--op", "bind", "--tid", "1", "--user", "u1"],
        [*base, "--op", "bind", "--tid", "1", "--user", "u1"],
    ]
    assert fake.commands[-1] == [*base, "--op", "bind", "--tid", "1", "--user", "t1", "--outgoing"]
    shown = (await adm.show())["iqn.2024-01.io.lunbridge:g"]
    assert (shown.incoming, shown.outgoing) == (("u1",), "t1")
    with pytest.raises(Conflict, match="already has an outgoing account"):
        await adm.bind_account(1, "u1", outgoing=True)
    await adm.unbind_account(1, "t1", outgoing=True)
    await adm.unbind_account(1, "t1", outgoing=True)  # "can't find the account": unbound already
    await adm.delete_account("u1")  # unbinds it everywhere
    await adm.delete_account("u1")
    assert fake.targets[1].incoming == []
    assert fake.accounts == {"t1": "targetsecret12"}


async def test_the_fake_dies_where_tgtd_does_on_a_hole_in_the_incoming_accounts() -> None:
    """tgt 1.0.85 (measured): bind a1, bind b1, unbind a1, show → tgtd is gone. Unbinding
    the last one first leaves no hole."""
    fake = FakeTgtd()
    adm = Tgtadm(7, "127.0.0.1:3260", 5.0, fake)
    await adm.new_target(1, "iqn.2024-01.io.lunbridge:g")
    for user in ("a1", "b1"):
        await adm.new_account(user, "secretsecret12")
        await adm.bind_account(1, user)
    await adm.unbind_account(1, "b1")
    assert (await adm.show())["iqn.2024-01.io.lunbridge:g"].incoming == ("a1",)
    await adm.bind_account(1, "b1")
    await adm.unbind_account(1, "a1")
    with pytest.raises(TgtdCrash):
        await adm.show()


@pytest.mark.parametrize(
    "secret", ["plainsecret12", "-leadingdash12", "quote'inside12", "comma,inside12", 'dq"inside12']
)
async def test_a_failing_account_command_never_shows_the_secret(secret: str) -> None:
    """`lunbridge.redact` masks `--password X` only for some X (not one that starts with '-'
    or holds a quote or ','): the tgtadm errors mask it themselves."""
    fake = FakeTgtd()
    adm = Tgtadm(7, "127.0.0.1:3260", 5.0, fake)
    fake.fail_next["new"] = "this account already exists"
    with pytest.raises(Conflict) as failed:
        await adm.new_account("u1", secret)
    assert "--user u1 --password '***'" in str(failed.value)
    assert secret not in str(failed.value)
    assert secret not in repr(failed.value)
    for fragment in secret.replace("'", ",").replace('"', ",").split(","):
        assert len(fragment) < 4 or fragment.strip("-") not in str(failed.value)

    async def hangs(argv: Sequence[str], time_limit: float) -> Result:
        raise CommandTimedOut(argv, time_limit, 0.5, ())

    with pytest.raises(Unavailable, match="did not finish within 5s") as late:
        await Tgtadm(7, "127.0.0.1:3260", 5.0, hangs).new_account("u1", secret)
    assert secret not in str(late.value)
    assert late.value.__suppress_context__  # a traceback does not quote the original
