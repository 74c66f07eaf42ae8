"""Checking a snapshot's clone: the journal is replayed before the read-only check, the check's
exit decides Passed / Failed, a check that cannot run is an error (not a verdict), and disks
without a checkable file system are NotVerifiable with the reason unless a configured check is
named."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from lunbridge.command import Result
from lunbridge.errors import InvalidArgument, Unavailable
from lunbridge.models import VerificationResult
from lunbridge_csi.guest.limits import Limits
from lunbridge_csi.guest.verify import Verifier, parse_checks, summary

LIMITS = Limits(mount=1, umount=2, probe=3)
EXT4 = Result((), 0, "TYPE=ext4\nUUID=1b2c\n", "")
XFS = Result((), 0, "TYPE=xfs\nUUID=9f\n", "")
E2FSCK_DAMAGE = (
    "Pass 1: Checking inodes, blocks, and sizes\nPass 4: Checking reference counts\n"
    "Inode 12 ref count is 5, should be 1.  Fix? no\n\n"
    "/dev/sdb: ********** WARNING: Filesystem still has errors **********\n"
)


class FakeRunner:
    """blkid answers `probe`; a program in `exits` exits with that code; records every argv."""

    def __init__(self, probe: Result, exits: dict[str, tuple[int, str]] | None = None) -> None:
        self.probe = probe
        self.exits = exits or {}
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str], time_limit: float) -> Result:
        self.calls.append(list(argv))
        if argv[0] == "blkid":
            return self.probe
        code, out = self.exits.get(argv[0], (0, ""))
        return Result(tuple(argv), code, out, "")

    def programs(self) -> list[str]:
        return [call[0] for call in self.calls]


def verifier(runner: FakeRunner, tmp_path: Path, **checks: str) -> Verifier:
    return Verifier(runner, LIMITS, parse_checks([f"{k}={v}" for k, v in checks.items()]), tmp_path)


async def test_ext4_replays_the_journal_then_checks_read_only(tmp_path: Path) -> None:
    runner = FakeRunner(EXT4)
    outcome = await verifier(runner, tmp_path).verify("/dev/sdb", None, 60, "t1")
    assert runner.calls[1] == ["e2fsck", "-E", "journal_only", "-p", "/dev/sdb"]
    assert runner.calls[2] == ["e2fsck", "-fn", "/dev/sdb"]
    assert outcome.result is VerificationResult.PASSED
    assert outcome.checker == "e2fsck -fn /dev/sdb"
    assert outcome.filesystem == "ext4"


async def test_xfs_replays_its_log_by_a_mount_without_uuid_check(tmp_path: Path) -> None:
    runner = FakeRunner(XFS)
    outcome = await verifier(runner, tmp_path).verify("/dev/sdc", None, 60, "t2")
    mount = next(call for call in runner.calls if call[0] == "mount")
    assert "nouuid" in mount[mount.index("-o") + 1]
    assert runner.programs().index("mount") < runner.programs().index("xfs_repair")
    assert ["xfs_repair", "-n", "/dev/sdc"] in runner.calls
    assert outcome.result is VerificationResult.PASSED


async def test_damage_found_is_a_failed_verification_with_the_checkers_words(tmp_path: Path) -> None:
    runner_damage = FakeRunner(EXT4)

    async def damaged(argv: Sequence[str], time_limit: float) -> Result:
        if argv[:2] == ["e2fsck", "-fn"]:
            return Result(tuple(argv), 4, E2FSCK_DAMAGE, "")
        return await runner_damage(argv, time_limit)

    outcome = await Verifier(damaged, LIMITS, {}, tmp_path).verify("/dev/sdb", None, 60, "t3")
    assert outcome.result is VerificationResult.FAILED
    assert "Inode 12 ref count is 5, should be 1" in outcome.summary
    assert "Pass 1" not in outcome.summary  # progress lines are left out


async def test_a_checker_that_cannot_run_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    runner = FakeRunner(XFS, {"xfs_repair": (2, "fatal error -- couldn't open device")})
    with pytest.raises(Unavailable, match="could not check the clone"):
        await verifier(runner, tmp_path).verify("/dev/sdc", None, 60, "t4")


async def test_a_journal_that_cannot_be_replayed_fails_the_verification(tmp_path: Path) -> None:
    runner = FakeRunner(EXT4, {"e2fsck": (8, "e2fsck: Bad magic number in super-block")})
    outcome = await verifier(runner, tmp_path).verify("/dev/sdb", None, 60, "t5")
    assert outcome.result is VerificationResult.FAILED
    assert outcome.reason == "JournalReplayFailed"
    assert "Bad magic number" in outcome.summary


@pytest.mark.parametrize(
    ("probe", "words"),
    [
        (Result((), 2, "", ""), "no file system"),
        (Result((), 0, "PTUUID=ab\nPTTYPE=gpt\n", ""), "partitioned"),
        (Result((), 0, "TYPE=btrfs\n", ""), "no checker"),
    ],
)
async def test_disks_without_a_checkable_file_system_are_not_verifiable(
    tmp_path: Path, probe: Result, words: str
) -> None:
    runner = FakeRunner(probe)
    outcome = await verifier(runner, tmp_path).verify("/dev/sdd", None, 60, "t6")
    assert outcome.result is VerificationResult.NOT_VERIFIABLE
    assert words in outcome.summary
    assert runner.programs() == ["blkid"]  # nothing else ran, nothing was mounted


async def test_a_configured_check_makes_a_block_disk_verifiable(tmp_path: Path) -> None:
    runner = FakeRunner(Result((), 2, "", ""), {"cmp": (1, "differ: byte 9")})
    outcome = await verifier(runner, tmp_path, golden="cmp {device} /srv/golden").verify(
        "/dev/sde", "golden", 60, "t7"
    )
    assert runner.calls[-1] == ["cmp", "/dev/sde", "/srv/golden"]
    assert outcome.result is VerificationResult.FAILED
    assert outcome.checker == "golden: cmp /dev/sde /srv/golden"


async def test_a_check_the_node_does_not_have_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"spec\.check 'pg'.*has: golden"):
        await verifier(FakeRunner(EXT4), tmp_path, golden="true").verify("/dev/sdb", "pg", 60, "t8")


def test_check_options_must_be_name_equals_command() -> None:
    assert parse_checks(["pg=pg_checksums -D '{mount}/data'"]) == {
        "pg": ["pg_checksums", "-D", "{mount}/data"]
    }
    with pytest.raises(InvalidArgument, match="NAME=COMMAND"):
        parse_checks(["no-command="])


def test_a_long_summary_keeps_its_end() -> None:
    said = summary(Result((), 4, "\n".join(f"line {i}" for i in range(500)), ""), limit=100)
    assert len(said) == 100
    assert said.endswith("line 499")
