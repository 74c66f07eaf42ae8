"""The one command runner: exit codes and output, a non-zero exit as a result, `check`, a
missing program, and the time limit: a command that ignores SIGTERM is ended and reported
within the bound plus the grace, and a leftover child holding the output open does not
hold the call."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from lunbridge.command import CommandFailed, CommandTimedOut, NotInstalled, Result, run
from lunbridge.errors import Unavailable

IGNORES_TERM = ["sh", "-c", 'trap "" TERM; sleep 30']
SLACK = 3.0  # seconds of a slow, busy machine, on top of the bound and the grace


async def test_exit_code_and_output() -> None:
    result = await run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], 10)
    assert result == Result((sys.executable, "-c", result.argv[2]), 0, "out\n", "err\n", b"out\n")
    assert result.check() is result


async def test_a_non_zero_exit_is_a_result_and_check_raises_with_stderr() -> None:
    result = await run(["sh", "-c", "echo first >&2; echo 'no such device' >&2; exit 3"], 10)
    assert (result.returncode, result.stdout) == (3, "")
    with pytest.raises(CommandFailed, match=r"^`sh -c .*` exited 3: first / no such device$") as failed:
        result.check()
    assert isinstance(failed.value, Unavailable)


async def test_a_missing_program_is_unavailable_and_named() -> None:
    with pytest.raises(NotInstalled, match="lunbridge-no-such-tool is not installed") as missing:
        await run(["lunbridge-no-such-tool", "--help"], 10)
    assert isinstance(missing.value, Unavailable)
    assert missing.value.program == "lunbridge-no-such-tool"


async def test_a_command_that_ignores_sigterm_is_killed_at_the_bound() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimedOut, match=r"^`sh -c .*sleep 30'?` did not finish within 0\.5s") as late:
        await run(IGNORES_TERM, 0.5, grace=0.3)
    elapsed = time.monotonic() - started
    assert 0.5 + 0.3 <= elapsed < 0.5 + 0.3 + SLACK
    assert late.value.stuck == ()  # SIGKILL ended it: no pid is named as stuck
    assert "did not exit after SIGKILL" not in str(late.value)


async def test_the_whole_process_group_is_ended(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    with pytest.raises(CommandTimedOut):
        await run(["sh", "-c", f'trap "" TERM; sleep 30 & echo $! > {pid_file}; wait'], 0.3, grace=0.2)
    child = int(pid_file.read_text())
    for _ in range(100):  # the orphaned, killed child is reaped by init a moment later
        if not _alive(child):
            break
        await asyncio.sleep(0.01)
    assert not _alive(child)


async def test_a_child_holding_the_output_open_does_not_hold_the_call() -> None:
    started = time.monotonic()
    result = await run(["sh", "-c", "sleep 30 & echo $!"], 10, grace=0.3)
    elapsed = time.monotonic() - started
    os.kill(int(result.stdout), signal.SIGKILL)  # the leftover child is not the runner's to end
    assert result.returncode == 0
    assert elapsed < 0.3 + SLACK  # the exit plus the grace, far from the 10 s bound


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_process_that_survives_sigkill_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # a process in D state cannot be made here: the group's survivors are what /proc would show
    monkeypatch.setattr("lunbridge.command._group_members", lambda pgid: [pgid])
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as late:
        await run(IGNORES_TERM, 0.2, grace=0.1)
    assert time.monotonic() - started < 0.2 + 0.1 + SLACK  # the call does not wait for it
    (pid,) = late.value.stuck
    assert f"pid {pid} did not exit after SIGKILL: it may be stuck in the kernel (D state)" in str(late.value)
