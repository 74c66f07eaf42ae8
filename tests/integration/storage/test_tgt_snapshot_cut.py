"""Snapshots of a mapped LUN are point-in-time on the lab's reflink pool: a writer keeps
writing numbered records, first at the start of the LUN and then 200 MiB further, while
snapshots are cut; in every snapshot the later record is the earlier one or one behind it
(a copy that read the two places at different times would show the far one ahead or far
behind). Measured on a plain copy before the pool moved to XFS: 30 of 30 broke this."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from pathlib import Path

import pytest

from lunbridge.errors import Conflict
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend
from tests.integration.storage.conftest import config_for, remove_targets
from tests.lab.tgt import Tgt
from tests.unit.storage.mapped import mapped_lun

A = "iqn.1998-01.com.vmware:storage-host-cut"
FAR = 200 << 20
SNAPSHOTS = 12


def _record(path: Path, offset: int) -> int:
    with path.open("rb") as handle:
        handle.seek(offset)
        return int(struct.unpack("<Q", handle.read(8))[0])


async def test_snapshots_of_a_lun_being_written_hold_a_single_instant(
    backend: TgtBackend, tmp_path: Path
) -> None:
    await mapped_lun(backend, "busy", 256 << 20, "g", A)
    path = tmp_path / "pool" / "luns" / "busy.img"
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            n = 0
            while not stop.is_set():
                n += 1
                record = struct.pack("<Q", n).ljust(4096, b"\0")
                os.pwrite(fd, record, 0)
                os.pwrite(fd, record, FAR)
                written[0] = n
        finally:
            os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while written[0] == 0:  # the cuts must start with the writer writing (a cut takes milliseconds)
        assert time.monotonic() < deadline, "the writer never wrote"
        await asyncio.sleep(0.001)
    try:
        seen = []
        started = time.monotonic()
        for i in range(SNAPSHOTS):
            snap = await backend.create_snapshot("busy", f"cut-{i}")
            image = tmp_path / "pool" / "snapshots" / f"{snap.name}.img"
            near, far = _record(image, 0), _record(image, FAR)
            seen.append((near, far))
            assert far <= near <= far + 1, (
                f"snapshot {i} mixes instants: record {near} at 0, {far} at 200 MiB"
            )
        took = (time.monotonic() - started) / SNAPSHOTS
    finally:
        stop.set()
        thread.join(10)
    assert written[0] > seen[0][0] > 0, "the writer did not run during the cuts"
    assert len({near for near, _ in seen}) > 1, (
        "every snapshot saw the same record: nothing was written between cuts"
    )
    print(f"{SNAPSHOTS} cuts of a 256 MiB LUN under writes, {took * 1000:.1f} ms each, records {seen}")


async def test_a_pool_without_reflink_refuses_to_snapshot_a_mapped_lun(
    tgt: Tgt, tmp_path: Path, prefix: str
) -> None:
    """This machine's own file system (ext4) as the pool: the LUN is served, a cut is refused
    with the way out, and once unmapped it is copied."""
    plain = tmp_path / "plain"
    backend = TgtBackend(config_for(tgt, plain, prefix))
    try:
        await mapped_lun(backend, "busy", 8 << 20, "g", A)
        with pytest.raises(Conflict, match="cannot cut a point-in-time snapshot") as refused:
            await backend.create_snapshot("busy", "cut")
        assert "unmap it first" in str(refused.value)
        assert await backend.list_snapshots() == []
        await backend.unmap_lun("busy", "g")
        assert (await backend.create_snapshot("busy", "cut")).lun == "busy"
    finally:
        await backend.close()
        remove_targets(tgt, prefix)


async def test_a_group_cut_fences_tgtd_and_lets_it_go(backend: TgtBackend, tgt: Tgt, tmp_path: Path) -> None:
    """Two mapped LUNs cut as a group: tgtd is stopped for the clones and running again after
    (it answers tgtadm), both snapshots exist and hold their LUN's data."""
    for name, byte in (("one", b"1"), ("two", b"2")):
        await backend.create_lun(name, 8 << 20)
        with (tmp_path / "pool" / "luns" / f"{name}.img").open("r+b") as handle:
            handle.write(byte * 4096)
    await backend.create_igroup("g", Transport.ISCSI, [A])
    await backend.map_lun("one", "g")
    await backend.map_lun("two", "g")
    made = await backend.create_group_snapshot({"one": "g-one", "two": "g-two"})
    assert sorted(s.name for s in made) == ["g-one", "g-two"]
    assert tgt.adm("--op", "show", "--mode", "target", check=False).returncode == 0, "tgtd was left stopped"
    for name, byte in (("g-one", b"1"), ("g-two", b"2")):
        assert (tmp_path / "pool" / "snapshots" / f"{name}.img").read_bytes()[:4096] == byte * 4096
    assert await backend.create_group_snapshot({"one": "g-one", "two": "g-two"}) == made  # idempotent


async def test_a_group_cut_on_a_pool_without_reflink_is_refused_and_keeps_nothing(
    tgt: Tgt, tmp_path: Path, prefix: str
) -> None:
    backend = TgtBackend(config_for(tgt, tmp_path / "plain", prefix))
    try:
        await backend.create_lun("one", 8 << 20)
        await backend.create_lun("two", 8 << 20)
        await backend.create_igroup("g", Transport.ISCSI, [A])
        await backend.map_lun("one", "g")
        with pytest.raises(Conflict, match="a group snapshot needs a pool with reflink"):
            await backend.create_group_snapshot({"one": "g-one", "two": "g-two"})
        assert await backend.list_snapshots() == []
        assert list((tmp_path / "plain" / "pool" / "snapshots").glob("*")) == []
        assert tgt.adm("--op", "show", "--mode", "target", check=False).returncode == 0
    finally:
        await backend.close()
        remove_targets(tgt, prefix)
