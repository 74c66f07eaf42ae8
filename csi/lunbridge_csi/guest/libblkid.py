"""libblkid, loaded through ctypes: the low-level probe `blkid -p` makes, without its process.

Why: whether a disk is blank is decided on NodeStageVolume's path for every new volume, and
running `blkid -p` for it cost a fork, an exec and the dynamic linking of a program on top of
the few reads the probe itself makes (perf.md cause 7: in the lab's TCG guest the largest part
of NodeStage's gap over a plain mkfs + mount). `blkid` is a thin front to libblkid, so calling
the library here gives the same answer with none of that.

`Libblkid.probe` follows util-linux's `blkid -p` (misc-utils/blkid.c: `lowprobe_device`,
`lowprobe_superblocks`) step for step:

- a probe of the path (libblkid opens it read-only; nothing here ever writes);
- superblock values LABEL, UUID, TYPE, SEC_TYPE, USAGE, VERSION; the partitions chain on,
  with the partition entry details;
- a whole disk of 1440 KiB or less (a floppy) not a character device is first probed for a
  partition table alone, and one found there ends the probe;
- `blkid_do_safeprobe`: 0 = a signature (a filesystem, a partition table, RAID, LVM, crypto,
  ...: the values it found), 1 = nothing at all, -2 = ambivalent (more than one superblock:
  certainly not blank), -1 = an error.

It is stricter than the program in one place: `blkid -p` exits 2, "nothing found", also when
the device cannot be opened or read (it jumps past the values on -1, and skips a path it cannot
stat without a word). Here both are `ProbeFailed`, so a disk that could not be read is never
taken for a blank one.

`load()` gives None when the library or one of its functions cannot be loaded; the caller
(`guest.filesystem.probe`) then runs the `blkid` program instead.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import logging
import os
import stat
from dataclasses import dataclass

from lunbridge.errors import Unavailable

log = logging.getLogger(__name__)

SONAME = "libblkid.so.1"

# blkid.h
SUBLKS_LABEL = 1 << 1
SUBLKS_UUID = 1 << 3
SUBLKS_TYPE = 1 << 5
SUBLKS_SECTYPE = 1 << 6
SUBLKS_USAGE = 1 << 7
SUBLKS_VERSION = 1 << 8
PARTS_ENTRY_DETAILS = 1 << 2
# what `blkid -p` asks of the superblocks chain
SUPERBLOCK_VALUES = SUBLKS_LABEL | SUBLKS_UUID | SUBLKS_TYPE | SUBLKS_SECTYPE | SUBLKS_USAGE | SUBLKS_VERSION
FLOPPY_BYTES = 1024 * 1440  # blkid -p: a whole disk this small is probed for a partition table first

# blkid_do_safeprobe / blkid_do_fullprobe
FOUND, NOTHING, AMBIVALENT = 0, 1, -2


class Outcome(enum.Enum):
    NOTHING = "nothing"  # no signature of any kind
    SIGNATURE = "signature"  # a filesystem, a partition table, RAID, LVM, ... (its values)
    AMBIVALENT = "ambivalent"  # more than one superblock: `blkid -p` exits 8


@dataclass(frozen=True)
class Found:
    """What one probe found: the outcome, and the values `blkid -p -o export` would print
    (TYPE, UUID, PTTYPE, USAGE, ...; empty unless the outcome is SIGNATURE)."""

    outcome: Outcome
    values: dict[str, str]


class ProbeFailed(Unavailable):
    """The device could not be opened or read to the end of the probe: nothing is known of it."""


_Probe = ctypes.c_void_p
_CharP = ctypes.POINTER(ctypes.c_char)

# name: (result type, argument types); the subset of libblkid the probe uses
_PROTOTYPES: dict[str, tuple[object, tuple[object, ...]]] = {
    "blkid_new_probe_from_filename": (_Probe, (ctypes.c_char_p,)),
    "blkid_free_probe": (None, (_Probe,)),
    "blkid_probe_get_fd": (ctypes.c_int, (_Probe,)),
    "blkid_probe_get_size": (ctypes.c_int64, (_Probe,)),
    "blkid_probe_is_wholedisk": (ctypes.c_int, (_Probe,)),
    "blkid_probe_enable_superblocks": (ctypes.c_int, (_Probe, ctypes.c_int)),
    "blkid_probe_set_superblocks_flags": (ctypes.c_int, (_Probe, ctypes.c_int)),
    "blkid_probe_enable_partitions": (ctypes.c_int, (_Probe, ctypes.c_int)),
    "blkid_probe_set_partitions_flags": (ctypes.c_int, (_Probe, ctypes.c_int)),
    "blkid_do_fullprobe": (ctypes.c_int, (_Probe,)),
    "blkid_do_safeprobe": (ctypes.c_int, (_Probe,)),
    "blkid_probe_has_value": (ctypes.c_int, (_Probe, ctypes.c_char_p)),
    "blkid_probe_numof_values": (ctypes.c_int, (_Probe,)),
    "blkid_probe_get_value": (
        ctypes.c_int,
        (
            _Probe,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(_CharP),
            ctypes.POINTER(ctypes.c_size_t),
        ),
    ),
}


class Libblkid:
    """The library's probe, ready to call (`load()` makes the one this process uses).

    `probe` blocks on the device's reads: call it off the event loop, within a time limit."""

    def __init__(self, library: ctypes.CDLL) -> None:
        """`library`: libblkid, opened with `use_errno=True`. AttributeError when a function
        the probe needs is missing (a libblkid older than util-linux 2.18)."""
        self._lib = library
        for name, (result, arguments) in _PROTOTYPES.items():
            function = getattr(library, name)
            function.restype = result
            function.argtypes = arguments

    def probe(self, path: str) -> Found:
        """What `blkid -p PATH` finds at `path` (a block device or a file; see the module's
        docstring). ProbeFailed when it cannot be opened or read."""
        lib = self._lib
        ctypes.set_errno(0)
        handle = lib.blkid_new_probe_from_filename(os.fsencode(path))
        if not handle:
            raise ProbeFailed(f"libblkid cannot open {path} to probe it: {_errno_text()}")
        try:
            lib.blkid_probe_set_superblocks_flags(handle, SUPERBLOCK_VALUES)
            lib.blkid_probe_enable_partitions(handle, 1)
            if self._small_whole_disk(handle):  # a partition table alone first, as blkid -p
                lib.blkid_probe_enable_superblocks(handle, 0)
                self._checked(lib.blkid_do_fullprobe(handle), path)
                if lib.blkid_probe_has_value(handle, b"PTTYPE"):
                    return Found(Outcome.SIGNATURE, self._values(handle))
            lib.blkid_probe_set_partitions_flags(handle, PARTS_ENTRY_DETAILS)
            lib.blkid_probe_enable_superblocks(handle, 1)
            rc = self._checked(lib.blkid_do_safeprobe(handle), path)
            if rc == AMBIVALENT:
                return Found(Outcome.AMBIVALENT, {})
            if rc == NOTHING:
                return Found(Outcome.NOTHING, {})
            return Found(Outcome.SIGNATURE, self._values(handle))
        finally:
            lib.blkid_free_probe(handle)

    def _small_whole_disk(self, handle: int) -> bool:
        fd = self._lib.blkid_probe_get_fd(handle)
        mode = os.fstat(fd).st_mode
        small = 0 <= self._lib.blkid_probe_get_size(handle) <= FLOPPY_BYTES
        return not stat.S_ISCHR(mode) and small and bool(self._lib.blkid_probe_is_wholedisk(handle))

    @staticmethod
    def _checked(rc: int, path: str) -> int:
        if rc in (FOUND, NOTHING, AMBIVALENT):
            return rc
        raise ProbeFailed(
            f"libblkid could not read {path} to the end of its probe (rc {rc}): {_errno_text()}"
        )

    def _values(self, handle: int) -> dict[str, str]:
        values: dict[str, str] = {}
        name = ctypes.c_char_p()
        data = _CharP()
        size = ctypes.c_size_t()
        for index in range(self._lib.blkid_probe_numof_values(handle)):
            if self._lib.blkid_probe_get_value(
                handle, index, ctypes.byref(name), ctypes.byref(data), ctypes.byref(size)
            ):
                continue
            if name.value is None or not data:
                continue
            raw = ctypes.string_at(data, size.value).split(b"\0", 1)[0]  # `size` counts the NUL
            values[name.value.decode(errors="replace")] = raw.decode(errors="replace")
        return values


def _errno_text() -> str:
    number = ctypes.get_errno()
    return os.strerror(number) if number else "no reason given"


@functools.cache
def load() -> Libblkid | None:
    """This process's libblkid, loaded once; None when it cannot be (logged once)."""
    try:
        return Libblkid(ctypes.CDLL(SONAME, use_errno=True))
    except (OSError, AttributeError) as exc:
        log.warning("libblkid cannot be loaded (%s): disks are probed with the blkid program", exc)
        return None
