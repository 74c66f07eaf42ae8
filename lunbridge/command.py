"""The one way lunbridge runs a command: `run(argv, time_limit)`, always with a time limit.

It exists because a command that never ends must not hold its caller forever: a `mount` or
`mkfs` stuck on a dead SAN path would hold a CSI NodeStageVolume (and its volume's in-flight
guard) for good, and a hung `tgtadm` or `iscsi-ls` would stall the operator. The guest
helpers, the tgt backend and the libvirt layer's libiscsi discovery all take a `Runner` (this
`run`, or a fake in tests), so the same bound and the same errors apply everywhere.

- `Result` is what a command did; a non-zero exit is a Result, never an exception (blkid's
  exit 2 means "no signature"): callers that want one call `result.check()` (CommandFailed).
- A program that is not installed is `NotInstalled` (Unavailable) naming it.
- The command runs without a shell in its own session, so it and everything it starts form
  one process group. At the bound the group gets SIGTERM, `grace` seconds later SIGKILL, and
  the call raises `CommandTimedOut` at once: it does not wait for the process to be reaped or
  for its pipes to close (a process stuck in the kernel in D state cannot be reaped; asyncio's
  child watcher reaps it later if it ever exits). The error names the pids still there.
- When the command itself has exited (within the bound), its output is complete once its
  pipes close, or `grace` seconds after the exit at the most: a process it left behind that
  keeps stdout or stderr open (a daemon that did not detach) does not hold the call; it is
  left running, and what it writes later is dropped.
- A cancelled call kills the command's process group.
- Command lines are never logged (only the program's name); errors quote them and the last
  lines of stderr, masked by the one redaction rule (`lunbridge.redact`, applied by
  `LunbridgeError`): a `--password X`, a `-n …auth.password -v X`, a URL's `user:pw@` or a
  registered credential shows as `***`. The raw argv stays on the error (`result`, `argv`)
  for code, never in its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lunbridge.errors import Unavailable

log = logging.getLogger(__name__)

GRACE = 0.5  # seconds between SIGTERM and SIGKILL; also how long output may lag the exit
SETTLE = 0.2  # seconds a killed group is given to vanish before its survivors are named


@dataclass(frozen=True)
class Result:
    """What a command did; its output decoded as UTF-8 (undecodable bytes replaced)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    raw_stdout: bytes = field(default=b"", repr=False)  # stdout as written, for binary output

    def check(self) -> Result:
        """This result, or CommandFailed if the command exited non-zero."""
        if self.returncode != 0:
            raise CommandFailed(self)
        return self


Runner = Callable[[Sequence[str], float], Awaitable[Result]]


class CommandFailed(Unavailable):
    """A command exited non-zero; the message carries the last lines of its stderr.

    Unavailable: the request was fine and the failure comes from the machine's state now
    (a device error, a busy mount point), which a later retry may find changed."""

    def __init__(self, result: Result) -> None:
        self.result = result
        detail = (result.stderr or result.stdout).strip().splitlines()
        super().__init__(
            f"`{shlex.join(result.argv)}` exited {result.returncode}: "
            f"{' / '.join(detail[-3:]) or 'no output'}"
        )


class NotInstalled(Unavailable):
    """The program of a command line is not installed here."""

    def __init__(self, program: str, package: str = "") -> None:
        self.program = program
        hint = f"install it (Debian package {package})" if package else "it is not on PATH"
        super().__init__(f"{program} is not installed on this machine: {hint}")


class CommandTimedOut(Unavailable):
    """A command overran its time limit and was ended (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: Sequence[str], time_limit: float, grace: float, stuck: Sequence[int]) -> None:
        self.argv = tuple(argv)
        self.time_limit = time_limit
        self.stuck = tuple(stuck)
        message = (
            f"`{shlex.join(self.argv)}` did not finish within {time_limit:g}s and was ended "
            f"(SIGTERM, then SIGKILL after {grace:g}s)"
        )
        message += "".join(
            f"; pid {pid} did not exit after SIGKILL: it may be stuck in the kernel (D state)"
            for pid in self.stuck
        )
        super().__init__(f"{message}; check what it waits for (a device, a server), or raise the limit")


class _Collect(asyncio.SubprocessProtocol):
    """Gathers a command's output; `exited` and `closed` (both pipes at EOF) are futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.output[fd] += data

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


async def _within(future: asyncio.Future[None], seconds: float) -> bool:
    """True once `future` is done, False if `seconds` pass first (the future runs on)."""
    if not future.done() and seconds > 0:
        await asyncio.wait({future}, timeout=seconds)
    return future.done()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, signum)


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (comm)"
        except OSError:
            continue  # exited meanwhile
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return sorted(members)


async def _survivors(pgid: int, within: float = SETTLE, interval: float = 0.02) -> list[int]:
    """The members of a SIGKILLed group still there after `within` seconds (at the most)."""
    for _ in range(round(within / interval)):
        if not _group_members(pgid):
            return []
        await asyncio.sleep(interval)
    return _group_members(pgid)


async def run(argv: Sequence[str], time_limit: float, *, grace: float = GRACE) -> Result:
    """Run `argv` (no shell) for at most `time_limit` seconds; see the module's docstring."""
    command = tuple(argv)
    program = os.path.basename(command[0])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    try:
        transport, collect = await loop.subprocess_exec(
            lambda: _Collect(loop),
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: ended as one at the bound
        )
    except FileNotFoundError:
        raise NotInstalled(command[0]) from None
    except OSError as exc:  # not executable, too many processes, ...
        raise Unavailable(f"cannot run {command[0]}: {exc}") from exc
    pid = transport.get_pid()
    try:
        if await _within(collect.exited, deadline - loop.time()):
            if not await _within(collect.closed, grace):
                log.warning("%s (pid %d) exited; a process it left keeps its output open", program, pid)
            returncode = transport.get_returncode()
            assert returncode is not None
            out, err = (bytes(collect.output[fd]) for fd in (1, 2))
            return Result(
                command, returncode, out.decode(errors="replace"), err.decode(errors="replace"), out
            )
        _signal_group(pid, signal.SIGTERM)
        if not await _within(collect.exited, grace):
            log.warning("%s (pid %d) outlived SIGTERM by %gs: SIGKILL", program, pid, grace)
        _signal_group(pid, signal.SIGKILL)
        stuck = await _survivors(pid)
        log.warning("%s (pid %d) overran %gs; still there: %s", program, pid, time_limit, stuck or "none")
        raise CommandTimedOut(command, time_limit, grace, stuck)
    except asyncio.CancelledError:
        _signal_group(pid, signal.SIGKILL)
        raise
    finally:
        transport.close()  # the pipes; the child watcher reaps the process if it ever exits
