"""The one way the guest helpers run commands: an injected async runner.

`Runner` takes an argv and returns its `Result`; it never raises for a non-zero exit (the
callers decide what an exit code means: blkid's 2 is "no signature", not a failure).
`run` is the real one (asyncio subprocess, no shell); tests inject fakes.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from lunbridge.errors import LunbridgeError


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str]], Awaitable[Result]]


class CommandFailed(LunbridgeError):
    """A guest command (mkfs, mount, ...) exited non-zero; the message carries its stderr."""

    def __init__(self, argv: Sequence[str], result: Result) -> None:
        self.argv = list(argv)
        self.result = result
        detail = (result.stderr or result.stdout).strip().splitlines()
        super().__init__(
            f"`{shlex.join(self.argv)}` exited {result.returncode}: {' / '.join(detail[-3:]) or 'no output'}"
        )


async def run(argv: Sequence[str]) -> Result:
    """Run `argv` (no shell), wait for it, and return its exit code and decoded output."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


async def check(runner: Runner, argv: Sequence[str]) -> Result:
    """Run `argv` through `runner`; a non-zero exit raises CommandFailed."""
    result = await runner(argv)
    if result.returncode != 0:
        raise CommandFailed(argv, result)
    return result
