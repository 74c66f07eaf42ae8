"""Keeping the operator's memory to what it uses, on glibc.

glibc gives each thread that allocates an arena of its own (up to 8 per core), and memory freed
after a burst of work (1,000 disks created at once: SOAP answers, API bodies) stays mapped in
those arenas. Measured on the lab with 1,000 disks at rest: 234 MiB of RSS, 180 MiB after one
`malloc_trim(0)`. So the operator uses two arenas (its threads mostly wait on the network) and
gives free memory back after each re-check pass. Elsewhere than glibc (musl) both do nothing.

The chart also runs the operator with `PYTHONMALLOC=malloc`. CPython's own allocator for small
objects (pymalloc) carves them from 1 MiB arenas that it frees only when empty, and a burst
leaves every arena it grew with a few survivors: 59 arenas before 1,000 disks, 98 after, with
5 MiB more of live objects. With glibc's malloc underneath, `malloc_trim` hands back the free
pages between survivors too. Measured on the lab, RSS at rest: 120 → 112 MiB with no disk,
174 → 164 MiB with 1,000 disks, with no difference in CPU for 200 disks at once.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)
M_ARENA_MAX = -8  # glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018  (glibc has it; musl does not)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def two_arenas() -> None:
    """At most two malloc arenas (call before any thread starts)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, 2)


def give_back() -> None:
    """Return the free memory of the malloc arenas to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
