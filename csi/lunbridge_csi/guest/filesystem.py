"""Filesystems on a guest disk: probe, format only when blank, grow.

The format decision belongs to the low-level probe `blkid -p` makes (it bypasses blkid's cache
and reads the device itself): a signature of any kind (a filesystem, a partition table, RAID,
LVM...) → never format; no signature at all → the disk is blank and may be formatted; an error
→ nothing is written. The probe runs in this process through libblkid (`guest.libblkid`: no
fork and exec on NodeStage's path) when commands run on this very machine, i.e. the runner is
`lunbridge.command.run`; any other runner (a fake in tests, a wrapper into another namespace)
stands for the machine the commands reach, so the probe is its `blkid -p` too, and the device
probed is the one mkfs would write. A libblkid that cannot be loaded falls back to the program
the same way. The program's exits: 0 = some signature, 2 = nothing found, 8 = ambivalent (more
than one signature: not blank); anything else, or exit 2 with an error on stderr, is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lunbridge.command import CommandFailed, Runner, run
from lunbridge.errors import Conflict, InvalidArgument, Unavailable
from lunbridge_csi.guest import libblkid
from lunbridge_csi.guest.limits import Limits

T = TypeVar("T")

SUPPORTED = ("ext4", "xfs")
DEFAULT_FS = "ext4"
BLKID_NOTHING_FOUND = 2
BLKID_AMBIVALENT = 8
AMBIVALENT = {"AMBIVALENT": "more than one signature (wipefs -n lists them)"}


class Content(enum.Enum):
    BLANK = "blank"
    SIGNATURE = "signature"


@dataclass(frozen=True)
class Probe:
    content: Content
    fields: dict[str, str]  # the probe's values, as `blkid -p -o export`: TYPE, UUID, PTTYPE, ...

    @property
    def blank(self) -> bool:
        return self.content is Content.BLANK

    @property
    def fs_type(self) -> str | None:
        return self.fields.get("TYPE")

    def describe(self) -> str:
        if self.blank:
            return "no signature"
        return ", ".join(f"{key}={value}" for key, value in sorted(self.fields.items())) or "a signature"


def fs_type(requested: str) -> str:
    """The filesystem to use for a requested fsType ('' means the default)."""
    chosen = (requested or DEFAULT_FS).strip().lower()
    if chosen not in SUPPORTED:
        raise InvalidArgument(f"fsType {requested!r} is not supported (supported: {', '.join(SUPPORTED)})")
    return chosen


def parse_export(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


async def probe(runner: Runner, limits: Limits, device: str) -> Probe:
    """What is on `device` (a /dev path), probed on the device itself within `limits.probe`
    seconds: in this process through libblkid when `runner` is `lunbridge.command.run` and the
    library loads, else `blkid -p` through `runner` (the module's docstring says why).
    Unavailable (ProbeFailed, CommandFailed, ProbeTimedOut) when the device could not be read."""
    library = libblkid.load() if runner is run else None
    if library is None:
        return await probe_with_blkid(runner, limits, device)
    return await probe_in_process(library, device, limits.probe)


async def probe_in_process(library: libblkid.Libblkid, device: str, time_limit: float) -> Probe:
    """`library.probe(device)` in a thread of its own, for at most `time_limit` seconds."""
    try:
        found = await in_thread(lambda: library.probe(device), time_limit)
    except TimeoutError:
        raise ProbeTimedOut(device, time_limit) from None
    if found.outcome is libblkid.Outcome.NOTHING:
        return Probe(Content.BLANK, {})
    if found.outcome is libblkid.Outcome.AMBIVALENT:
        return Probe(Content.SIGNATURE, dict(AMBIVALENT))
    return Probe(Content.SIGNATURE, found.values)


async def probe_with_blkid(runner: Runner, limits: Limits, device: str) -> Probe:
    """What `blkid -p -o export DEVICE` run through `runner` reports (the module's docstring
    lists its exits). CommandFailed for an error."""
    result = await runner(["blkid", "-p", "-o", "export", device], limits.probe)
    if result.returncode == BLKID_NOTHING_FOUND and not result.stderr.strip():
        return Probe(Content.BLANK, {})
    if result.returncode == BLKID_AMBIVALENT:
        return Probe(Content.SIGNATURE, dict(AMBIVALENT))
    if result.returncode != 0:
        raise CommandFailed(result)
    return Probe(Content.SIGNATURE, parse_export(result.stdout))


class ProbeTimedOut(Unavailable):
    """The in-process probe did not finish within its limit (a read hangs on the disk)."""

    def __init__(self, device: str, time_limit: float) -> None:
        super().__init__(
            f"probing {device} with libblkid did not finish within {time_limit:g}s (does a read of the "
            "disk hang?); nothing was written to it"
        )


async def in_thread(call: Callable[[], T], time_limit: float | None, name: str = "lunbridge-probe") -> T:
    """`call()` in a daemon thread of its own, awaited for at most `time_limit` seconds (None:
    no limit; TimeoutError after that, the thread is left to finish on its own).

    Not the loop's executor: a read stuck on a dead disk (D state) cannot be interrupted, and
    stuck there it must neither hold one of the executor's few threads nor keep the process
    from exiting (asyncio.run and the interpreter wait for the executor's threads at exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def report(settle: Callable[[], None]) -> None:
        def apply() -> None:
            if not done.done():  # not timed out or cancelled meanwhile
                settle()

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(apply)

    def work() -> None:
        try:
            value = call()
        except Exception as exc:
            failure = exc  # `exc` itself is unbound once the except clause ends
            report(lambda: done.set_exception(failure))
        else:
            report(lambda: done.set_result(value))

    threading.Thread(target=work, name=name, daemon=True).start()
    return await asyncio.wait_for(done, time_limit)


def mkfs_argv(fstype: str, device: str) -> list[str]:
    if fstype == "ext4":  # nodiscard: a SAN LUN is blank by contract here, discard can take minutes
        return ["mkfs.ext4", "-F", "-q", "-E", "nodiscard", device]
    if fstype == "xfs":
        return ["mkfs.xfs", "-q", "-K", device]
    raise InvalidArgument(f"cannot make a {fstype!r} filesystem (supported: {', '.join(SUPPORTED)})")


async def ensure_filesystem(
    runner: Runner, limits: Limits, device: str, fstype: str, found: Probe | None = None
) -> bool:
    """Make `fstype` on `device` only if the probe finds no signature there; True if it
    formatted. `found`: the probe of `device` made just before, if the caller made it.

    A disk with a filesystem of another type, or with any other signature (a partition
    table, LVM, RAID, more than one), is refused with Conflict and left untouched.
    """
    if found is None:
        found = await probe(runner, limits, device)
    if found.blank:
        (await runner(mkfs_argv(fstype, device), limits.mkfs)).check()
        return True
    if found.fs_type != fstype:
        raise Conflict(
            f"{device} is not blank ({found.describe()}) and holds no {fstype} filesystem; "
            "it is left untouched (lunbridge formats only disks without any signature)"
        )
    return False


def grow_argv(fstype: str, device: str, mount_path: str) -> Sequence[str]:
    if fstype.startswith("ext"):
        return ["resize2fs", device]
    if fstype == "xfs":
        return ["xfs_growfs", mount_path]
    raise InvalidArgument(f"cannot grow a {fstype!r} filesystem")


async def grow(runner: Runner, limits: Limits, device: str, fstype: str, mount_path: str) -> None:
    """Grow the mounted filesystem on `device` to the device's size."""
    (await runner(grow_argv(fstype, device, mount_path), limits.grow)).check()
