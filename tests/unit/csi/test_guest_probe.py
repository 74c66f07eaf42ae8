"""The blank probe on real disk images (made here with mkfs.ext4, mkfs.xfs, mkswap, and partition
tables written byte by byte): in this process through libblkid, it decides as `blkid -p` does
(blank / a filesystem / a partition table / another signature / ambivalent) and the program's
answer through any other runner agrees; a blank image is formatted and then found formatted;
a disk with anything on it, or one that cannot be read, is never formatted; a probe that hangs
ends at its limit; without libblkid the `blkid` program is run."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from lunbridge.command import CommandFailed, Result, run
from lunbridge.errors import Conflict, Unavailable
from lunbridge_csi.guest import filesystem, libblkid
from lunbridge_csi.guest.limits import Limits

LIMITS = Limits(probe=20, mkfs=120)
SECTOR = 512
MIB = 1 << 20


async def through_a_wrapper(argv: Sequence[str], time_limit: float) -> Result:
    """The real runner, but not `run` itself: the probe goes through the `blkid` program."""
    return await run(argv, time_limit)


def image(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def write_mbr(path: Path, kind: int = 0x83, start: int = 2048) -> None:
    """A DOS partition table with one partition of `kind` from sector `start` to the end."""
    sectors = path.stat().st_size // SECTOR
    entry = struct.pack("<B3sB3sII", 0, bytes(3), kind, bytes(3), start, min(sectors - start, 0xFFFFFFFF))
    with path.open("r+b") as handle:
        handle.seek(446)
        handle.write(entry)
        handle.seek(510)
        handle.write(b"\x55\xaa")


def write_gpt(path: Path) -> None:
    """A GPT (protective MBR, primary header, 128 entries, one Linux partition), CRCs right."""
    sectors = path.stat().st_size // SECTOR
    write_mbr(path, kind=0xEE, start=1)
    entries = bytearray(128 * 128)
    linux = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
    struct.pack_into("<16s16sQQQ", entries, 0, linux, uuid.uuid4().bytes_le, 2048, sectors - 34, 0)
    fields = (b"EFI PART", 0x00010000, 92, 0, 0, 1, sectors - 1, 34, sectors - 34, uuid.uuid4().bytes_le,
              2, 128, 128, zlib.crc32(entries))  # fmt: skip
    header = struct.pack("<8sIIIIQQQQ16sQIII", *fields)
    header = header[:16] + struct.pack("<I", zlib.crc32(header)) + header[20:]
    with path.open("r+b") as handle:
        handle.seek(SECTOR)  # LBA 1
        handle.write(header)
        handle.seek(2 * SECTOR)  # LBA 2: the entries, as the header says
        handle.write(entries)


def made(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def blank(folder: Path) -> Path:
    return image(folder, "blank.img", 64 * MIB)


def ext4(folder: Path) -> Path:
    path = image(folder, "ext4.img", 64 * MIB)
    made(*filesystem.mkfs_argv("ext4", str(path)))
    return path


def xfs(folder: Path) -> Path:
    path = image(folder, "xfs.img", 320 * MIB)  # xfsprogs 6 refuses less than 300 MiB
    made(*filesystem.mkfs_argv("xfs", str(path)))
    return path


def swap(folder: Path) -> Path:
    path = image(folder, "swap.img", 64 * MIB)
    made("mkswap", str(path))
    return path


def dos(folder: Path) -> Path:
    path = image(folder, "dos.img", 64 * MIB)
    write_mbr(path)
    return path


def gpt(folder: Path) -> Path:
    path = image(folder, "gpt.img", 64 * MIB)
    write_gpt(path)
    return path


def floppy(folder: Path) -> Path:
    """A whole disk of 1 MiB with a partition table: blkid -p looks for the table alone."""
    path = image(folder, "floppy.img", MIB)
    write_mbr(path, start=1)
    return path


def ambivalent(folder: Path) -> Path:
    """ext4 with an XFS superblock written over its first sector: two filesystems at once."""
    path = ext4(folder)
    with xfs(folder).open("rb") as source, path.open("r+b") as target:
        target.write(source.read(SECTOR))
    return path


# image, what the probe finds (libblkid's outcome), the values that must be among its fields
CASES: list[tuple[Callable[[Path], Path], libblkid.Outcome, dict[str, str]]] = [
    (blank, libblkid.Outcome.NOTHING, {}),
    (ext4, libblkid.Outcome.SIGNATURE, {"TYPE": "ext4", "USAGE": "filesystem"}),
    (xfs, libblkid.Outcome.SIGNATURE, {"TYPE": "xfs", "USAGE": "filesystem"}),
    (swap, libblkid.Outcome.SIGNATURE, {"TYPE": "swap", "USAGE": "other"}),
    (dos, libblkid.Outcome.SIGNATURE, {"PTTYPE": "dos"}),
    (gpt, libblkid.Outcome.SIGNATURE, {"PTTYPE": "gpt"}),
    (floppy, libblkid.Outcome.SIGNATURE, {"PTTYPE": "dos"}),
    (ambivalent, libblkid.Outcome.AMBIVALENT, {}),
]
IDS = [make.__name__ for make, _, _ in CASES]


def library() -> libblkid.Libblkid:
    loaded = libblkid.load()
    assert loaded is not None, "libblkid (util-linux) must load on this machine"
    return loaded


@pytest.mark.parametrize(("make", "outcome", "values"), CASES, ids=IDS)
def test_libblkid_finds_what_blkid_p_finds(
    tmp_path: Path, make: Callable[[Path], Path], outcome: libblkid.Outcome, values: dict[str, str]
) -> None:
    path = make(tmp_path)
    found = library().probe(str(path))
    assert found.outcome is outcome
    assert values.items() <= found.values.items()
    program = subprocess.run(["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True)
    assert program.returncode == {"nothing": 2, "signature": 0, "ambivalent": 8}[outcome.value]
    if outcome is libblkid.Outcome.SIGNATURE:  # the same values as the program, less its DEVNAME
        assert {"DEVNAME": str(path), **found.values} == filesystem.parse_export(program.stdout)


@pytest.mark.parametrize(("make", "outcome", "values"), CASES, ids=IDS)
async def test_only_a_blank_image_is_formatted_in_process_and_through_the_program(
    tmp_path: Path, make: Callable[[Path], Path], outcome: libblkid.Outcome, values: dict[str, str]
) -> None:
    path = str(make(tmp_path))
    before = fingerprint(path)
    for runner in (run, through_a_wrapper):
        found = await filesystem.probe(runner, LIMITS, path)
        assert found.blank is (outcome is libblkid.Outcome.NOTHING)
        assert ("AMBIVALENT" in found.fields) is (outcome is libblkid.Outcome.AMBIVALENT)
        assert values.items() <= found.fields.items()
        if not found.blank and found.fs_type != "ext4":
            with pytest.raises(Conflict, match="not blank"):
                await filesystem.ensure_filesystem(runner, LIMITS, path, "ext4")
    if outcome is libblkid.Outcome.NOTHING:
        assert await filesystem.ensure_filesystem(run, LIMITS, path, "ext4")  # formatted
        assert (await filesystem.probe(run, LIMITS, path)).fs_type == "ext4"
        assert not await filesystem.ensure_filesystem(run, LIMITS, path, "ext4")  # and only once
    else:
        if found.fs_type == "ext4":
            assert not await filesystem.ensure_filesystem(run, LIMITS, path, "ext4")
        assert fingerprint(path) == before  # nothing was written to it


def fingerprint(path: str) -> tuple[int, str]:
    """The image's modification time and the hash of its first MiB: any write shows."""
    with open(path, "rb") as handle:
        return os.stat(path).st_mtime_ns, hashlib.sha256(handle.read(MIB)).hexdigest()


async def test_a_device_that_cannot_be_opened_is_an_error_never_blank(tmp_path: Path) -> None:
    """`blkid -p` exits 2 ("nothing found") for a path it cannot open: in process it is an error."""
    missing = str(tmp_path / "sdz")
    program = await run(["blkid", "-p", missing], 10)
    assert program.returncode == 2  # the program's answer cannot tell this from a blank disk
    for path in (missing, str(tmp_path)):  # nothing there; a folder
        with pytest.raises(Unavailable, match=f"cannot open {path}"):  # raised before any mkfs
            await filesystem.ensure_filesystem(run, LIMITS, path, "ext4")


async def test_a_probe_that_hangs_ends_at_its_limit(tmp_path: Path) -> None:
    release = threading.Event()

    class Stuck(libblkid.Libblkid):
        def __init__(self) -> None:
            pass

        def probe(self, path: str) -> libblkid.Found:
            release.wait(30)  # a read on a dead disk
            return libblkid.Found(libblkid.Outcome.NOTHING, {})

    started = time.monotonic()
    with pytest.raises(filesystem.ProbeTimedOut, match=r"/dev/sdb .* within 0.2s"):
        await filesystem.probe_in_process(Stuck(), "/dev/sdb", 0.2)
    assert time.monotonic() - started < 2
    stuck = [thread for thread in threading.enumerate() if thread.name == "lunbridge-probe"]
    assert stuck
    assert all(thread.daemon for thread in stuck)  # it cannot keep the process alive
    release.set()
    await asyncio.sleep(0.05)  # the late answer lands on a future nobody waits for: no error


async def test_without_libblkid_the_program_is_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `blkid` on PATH that notes each run and runs the real one: used only when libblkid is
    not there (or the runner is not `run`)."""
    notes, shims = tmp_path / "runs", tmp_path / "bin"
    shims.mkdir()
    real = shutil.which("blkid")
    assert real is not None
    shim = shims / "blkid"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {notes}\nexec {real} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    path = str(ext4(tmp_path))
    assert (await filesystem.probe(run, LIMITS, path)).fs_type == "ext4"
    assert not notes.exists()  # in process
    monkeypatch.setattr(libblkid, "load", lambda: None)
    assert (await filesystem.probe(run, LIMITS, path)).fs_type == "ext4"
    assert notes.read_text().split() == ["-p", "-o", "export", path]


def test_load_gives_none_when_the_library_or_a_function_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, **options: object) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert libblkid.load.__wrapped__() is None

    class Old:  # a libblkid without the functions the probe needs
        pass

    with pytest.raises(AttributeError):
        libblkid.Libblkid(Old())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "blank"),
    [
        (Result((), 2, "", ""), True),
        (Result((), 0, "TYPE=ext4\n", ""), False),
        (Result((), 8, "", "blkid: /dev/sdb: ambivalent result"), False),
    ],
)
async def test_the_programs_exits(result: Result, blank: bool) -> None:
    async def blkid(argv: Sequence[str], time_limit: float) -> Result:
        return result

    found = await filesystem.probe(blkid, LIMITS, "/dev/sdb")
    assert found.blank is blank
    if result.returncode == 8:
        with pytest.raises(Conflict, match="AMBIVALENT"):
            await filesystem.ensure_filesystem(blkid, LIMITS, "/dev/sdb", "ext4", found)


async def test_exit_2_with_an_error_on_stderr_is_an_error() -> None:
    async def blkid(argv: Sequence[str], time_limit: float) -> Result:
        return Result(tuple(argv), 2, "", "blkid: error: /dev/sdb: Permission denied")

    with pytest.raises(CommandFailed, match="Permission denied"):
        await filesystem.ensure_filesystem(blkid, LIMITS, "/dev/sdb", "ext4")
