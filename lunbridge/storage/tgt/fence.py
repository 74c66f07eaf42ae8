"""An I/O fence for group snapshots on tgtd: the tgtd process is stopped (SIGSTOP) while the
LUNs' files are cloned, and continued (SIGCONT) right after, within a time limit.

Why this gives one instant across several LUNs: tgtd acknowledges a write to an initiator only
after its backing store wrote it to the file. While tgtd is stopped, no write reaches any file
and none is acknowledged; a write whose pwrite was in the kernel completes before its thread
stops. So the files hold exactly the writes tgtd had done, and every write an initiator saw
acknowledged is among them: if an application wrote to LUN 1, waited, then wrote to LUN 2, a
group cut holds LUN 2's write only with LUN 1's. FICLONE of several files is not atomic by
itself (SnapDrive fences every storage volume for the same reason). tgtd has no per-LUN pause,
so every target of that tgtd waits for the few milliseconds the clones take; initiators see a
slow command, not an error. The operator must be allowed to signal tgtd (it runs beside it
already: the pools are its folders).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from lunbridge.errors import Unavailable


def tgtd_pid(control: int, proc: Path = Path("/proc")) -> int:
    """The PID of the tgtd serving control port `control` (its `-C`, default 0)."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or Path(argv[0].decode(errors="replace")).name != "tgtd":
            continue
        args = [a.decode(errors="replace") for a in argv[1:] if a]
        port = 0
        for i, arg in enumerate(args):
            if arg in ("-C", "--control-port") and i + 1 < len(args) and args[i + 1].isdigit():
                port = int(args[i + 1])
        if port == control:
            return int(entry.name)
    raise Unavailable(
        f"no tgtd with control port {control} runs here: a group snapshot needs to fence its I/O"
    )


@contextlib.asynccontextmanager
async def io_fenced(control: int, limit: float) -> AsyncIterator[float]:
    """Stop tgtd for the block; continue it however the block ends. Yields the time limit's
    deadline (time.monotonic); the caller refuses to go on past it."""
    pid = tgtd_pid(control)
    try:
        os.kill(pid, signal.SIGSTOP)
    except OSError as exc:
        raise Unavailable(f"cannot fence tgtd (pid {pid}) for a group snapshot: {exc.strerror}") from exc
    try:
        yield time.monotonic() + limit
    finally:
        os.kill(pid, signal.SIGCONT)
