"""Checking a throwaway clone of a snapshot on a guest disk (backup verification).

A snapshot cut under a running writer is crash-consistent: its journal (ext4) or log (XFS)
holds changes not yet in place, and a read-only checker that skips them reports damage that a
mount would repair (`e2fsck -fn` says so and `xfs_repair -n` exits 1; measured, see
../shared/notes/snapshots.md). The clone is throwaway, so its journal is replayed first:
`e2fsck -E journal_only -p` for ext2/3/4, a mount and unmount (`-o nouuid`: the source may be
mounted on this very node) for XFS. Then the read-only check runs and decides:

- `e2fsck -fn`: exit 0 Passed; exit 4 (errors left uncorrected) Failed; anything else is an
  error of the check itself (Unavailable), not a verdict on the snapshot.
- `xfs_repair -n`: exit 0 Passed; exit 1 (corruption found) Failed; else an error.
- a configured check (`--verify-check NAME=COMMAND`, `{device}` and `{mount}` substituted;
  `{mount}` is the clone mounted read-only after the replay): exit 0 Passed, else Failed.

A disk with a partition table, with no file system (a Block-mode disk, raw data) or with a
file system lunbridge has no checker for is NotVerifiable, with the reason, unless a
configured check was asked for. A replay that fails is Failed with the replay's message: the
snapshot's journal is what is damaged.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lunbridge.command import CommandFailed, Result, Runner
from lunbridge.errors import InvalidArgument, Unavailable
from lunbridge.models import VerificationResult, VerifyOutcome
from lunbridge.models.diskverification import SUMMARY_LIMIT
from lunbridge_csi.guest import filesystem, mount
from lunbridge_csi.guest.limits import Limits

EXT = ("ext2", "ext3", "ext4")
E2FSCK_UNCORRECTED = 4
XFS_REPAIR_DAMAGE = 1
# progress lines that say nothing about the result
NOISE = ("Pass ", "Phase ", "        - ", "Cannot get host filesystem geometry", "Repair may fail if",
         "the image and the host filesystem", "e2fsck 1.", "No modify flag set")  # fmt: skip


def summary(result: Result, limit: int = SUMMARY_LIMIT) -> str:
    """The checker's own words: its output without progress lines, the last ones kept."""
    lines = [line.rstrip() for line in (result.stdout + "\n" + result.stderr).splitlines()]
    kept = [line for line in lines if line.strip() and not line.startswith(NOISE)]
    text = "\n".join(kept)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def parse_checks(specs: Sequence[str]) -> dict[str, list[str]]:
    """`NAME=COMMAND` options (repeatable) as {name: argv}; InvalidArgument naming a bad one."""
    checks: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name.strip() or not command.strip():
            raise InvalidArgument(f"--verify-check {spec!r} is not NAME=COMMAND")
        try:
            checks[name.strip()] = shlex.split(command)
        except ValueError as exc:
            raise InvalidArgument(f"--verify-check {name.strip()}: {exc}") from None
    return checks


class Verifier:
    """Checks one clone device; every command within `time_limit` seconds (the task's bound)."""

    def __init__(
        self, runner: Runner, limits: Limits, checks: Mapping[str, Sequence[str]], work_dir: Path,
        root: Path = Path("/"),
    ) -> None:  # fmt: skip
        self.root = root
        self.runner = runner
        self.limits = limits
        self.checks = checks
        self.work_dir = work_dir

    async def verify(self, device: str, check: str | None, time_limit: float, task_id: str) -> VerifyOutcome:
        """The outcome for the clone at `device` (a /dev path); Unavailable when a command
        could not run or overran, InvalidArgument for a check this node does not know."""
        started = time.monotonic()
        if check and check not in self.checks:
            known = ", ".join(sorted(self.checks)) or "none"
            raise InvalidArgument(f"spec.check {check!r} is not configured on this node (it has: {known})")
        probe = await filesystem.probe(self.runner, self.limits, device)
        fs_type = probe.fs_type
        reason = self._not_verifiable(probe)
        if reason and not check:
            return VerifyOutcome(result=VerificationResult.NOT_VERIFIABLE, reason="NotVerifiable",
                                 summary=reason, filesystem=fs_type,
                                 duration_seconds=round(time.monotonic() - started, 3))  # fmt: skip
        mount_dir = self.work_dir / task_id
        await mount.unmount(self.runner, self.limits, self.root, str(mount_dir))  # a run killed midway
        try:
            if fs_type in EXT or fs_type == "xfs":
                replay = await self._replay(device, fs_type, mount_dir, time_limit)
                if replay is not None:
                    return VerifyOutcome(result=VerificationResult.FAILED, reason="JournalReplayFailed",
                                         summary=replay, filesystem=fs_type,
                                         duration_seconds=round(time.monotonic() - started, 3))  # fmt: skip
            if check:
                outcome = await self._configured(check, device, fs_type, mount_dir, time_limit)
            else:
                outcome = await self._filesystem(device, fs_type or "", time_limit)
        finally:
            await mount.unmount(self.runner, self.limits, self.root, str(mount_dir))
            await asyncio.to_thread(_remove_dir, mount_dir)
        outcome.filesystem = fs_type
        outcome.duration_seconds = round(time.monotonic() - started, 3)
        return outcome

    @staticmethod
    def _not_verifiable(probe: filesystem.Probe) -> str | None:
        if probe.blank:
            return "the disk holds no file system (a Block-mode disk, or raw data): give a configured check"
        if "PTTYPE" in probe.fields:
            return (f"the disk is partitioned ({probe.fields['PTTYPE']} partition table): lunbridge checks "
                    "whole-disk file systems only; give a configured check")  # fmt: skip
        if probe.fs_type not in (*EXT, "xfs"):
            return (f"no checker for what the disk holds ({probe.describe()}); lunbridge checks ext2/3/4 "
                    "and xfs; give a configured check")  # fmt: skip
        return None

    async def _replay(self, device: str, fs_type: str, mount_dir: Path, time_limit: float) -> str | None:
        """Replay the clone's journal; None, or the message of a replay that failed."""
        if fs_type in EXT:
            result = await self.runner(["e2fsck", "-E", "journal_only", "-p", device], time_limit)
            return None if result.returncode in (0, 1) else f"e2fsck -E journal_only: {summary(result)}"
        await asyncio.to_thread(mount_dir.mkdir, parents=True, exist_ok=True)
        try:
            await mount.mount(self.runner, self.limits, device, str(mount_dir), "xfs", ["nouuid"])
        except CommandFailed as exc:
            return f"mount to replay the XFS log failed: {exc}"
        await mount.unmount(self.runner, self.limits, self.root, str(mount_dir))
        return None

    async def _filesystem(self, device: str, fs_type: str, time_limit: float) -> VerifyOutcome:
        if fs_type in EXT:
            argv, damaged = ["e2fsck", "-fn", device], E2FSCK_UNCORRECTED
        else:
            argv, damaged = ["xfs_repair", "-n", device], XFS_REPAIR_DAMAGE
        result = await self.runner(argv, time_limit)
        checker = shlex.join(argv)
        if result.returncode == 0:
            return VerifyOutcome(result=VerificationResult.PASSED, reason="Passed", summary=summary(result),
                                 checker=checker)  # fmt: skip
        if result.returncode == damaged:
            failed = VerificationResult.FAILED
            said = summary(result)
            return VerifyOutcome(result=failed, reason="CheckFailed", summary=said, checker=checker)
        raise Unavailable(
            f"{checker} could not check the clone (exit {result.returncode}): {summary(result, 400)}"
        )

    async def _configured(
        self, check: str, device: str, fs_type: str | None, mount_dir: Path, time_limit: float
    ) -> VerifyOutcome:
        argv = list(self.checks[check])
        if any("{mount}" in arg for arg in argv):
            if not fs_type:
                return VerifyOutcome(
                    result=VerificationResult.NOT_VERIFIABLE,
                    reason="NotVerifiable",
                    summary=f"check {check} needs {{mount}}, the disk holds no file system",
                )
            await asyncio.to_thread(mount_dir.mkdir, parents=True, exist_ok=True)
            options = ["ro", "nouuid"] if fs_type == "xfs" else ["ro"]
            await mount.mount(self.runner, self.limits, device, str(mount_dir), fs_type, options)
        argv = [arg.replace("{device}", device).replace("{mount}", str(mount_dir)) for arg in argv]
        result = await self.runner(argv, time_limit)
        passed = result.returncode == 0
        return VerifyOutcome(
            result=VerificationResult.PASSED if passed else VerificationResult.FAILED,
            reason="Passed" if passed else "CheckFailed",
            summary=summary(result) or f"exit {result.returncode}",
            checker=f"{check}: {shlex.join(argv)}",
        )


def _remove_dir(path: Path) -> None:
    if path.is_dir() and not os.path.ismount(path):
        path.rmdir()
