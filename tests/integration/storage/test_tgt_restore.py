"""Snapshots and clones with data written through iSCSI, and a tgtd that is killed (-9) and
restarted: the backend gives it back every target, LU, ACL, serial and NAA id."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lunbridge.errors import Unavailable
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend
from tests.integration.storage import iscsi
from tests.integration.storage.conftest import (
    OWN_TGTD,
    config_for,
    kill_tgtd,
    restart_tgtd,
    tgtd_targets,
    write_at,
)
from tests.lab import procs
from tests.lab import tgt as tgt_module
from tests.lab.tgt import Tgt

A = "iqn.1998-01.com.vmware:storage-host-a"
B = "iqn.1998-01.com.vmware:storage-host-b"


async def test_a_clone_has_the_snapshots_data_and_its_own_ids(backend: TgtBackend, tgt: Tgt) -> None:
    source = await backend.create_lun("source", 16 << 20)
    await backend.create_igroup("g", Transport.ISCSI, [A])
    await backend.map_lun("source", "g")
    target = backend.target_name("g")
    iscsi.write_pattern(tgt.portal, A, target, 1, 0xA5, 1 << 20, 64 << 10)  # through iSCSI
    snapshot = await backend.create_snapshot("source", "snap")
    iscsi.write_pattern(tgt.portal, A, target, 1, 0x3C, 1 << 20, 64 << 10)  # after the snapshot

    clone = await backend.clone_lun("snap", "clone")
    assert clone.source_snapshot == snapshot.name
    assert clone.size_bytes == source.size_bytes
    await backend.map_lun("clone", "g")
    assert iscsi.has_pattern(tgt.portal, A, target, 2, 0xA5, 1 << 20, 64 << 10)
    assert not iscsi.has_pattern(tgt.portal, A, target, 2, 0x3C, 1 << 20, 64 << 10)
    assert iscsi.has_pattern(tgt.portal, A, target, 1, 0x3C, 1 << 20, 64 << 10)
    seen = iscsi.identity(tgt.portal, A, target, 2)
    assert seen.naa == clone.naa != source.naa
    assert seen.serial == clone.serial != source.serial
    assert [s.name for s in await backend.list_snapshots("source")] == ["snap"]


async def test_a_snapshot_of_a_file_written_directly(backend: TgtBackend, tmp_path: Path) -> None:
    await backend.create_lun("vol", 4 << 20)
    write_at(tmp_path / "pool" / "luns" / "vol.img", 8192, b"lunbridge")
    await backend.create_snapshot("vol", "s1")
    write_at(tmp_path / "pool" / "luns" / "vol.img", 8192, b"XXXXXXXXX")
    await backend.clone_lun("s1", "vol-copy")
    data = (tmp_path / "pool" / "luns" / "vol-copy.img").read_bytes()
    assert data[8192:8201] == b"lunbridge"
    assert len(data) == 4 << 20


async def test_a_killed_tgtd_gets_everything_back(own_tgt: Tgt, tmp_path: Path, prefix: str) -> None:
    backend = TgtBackend(config_for(own_tgt, tmp_path, prefix))
    luns = [await backend.create_lun(name, 8 << 20) for name in ["l1", "l2", "l3"]]
    await backend.create_igroup("ga", Transport.ISCSI, [A])
    await backend.create_igroup("gab", Transport.ISCSI, [A, B])
    await backend.create_igroup("empty", Transport.ISCSI, [])
    await backend.map_lun("l1", "ga")
    await backend.map_lun("l2", "ga", 7)
    await backend.map_lun("l1", "gab", 3)
    await backend.map_lun("l3", "gab")
    expected = {
        (a, t): iscsi.visible_luns(own_tgt.portal, a).get(t) for a in (A, B) for t in _targets(backend)
    }
    ids = {
        (a, t, n): iscsi.identity(own_tgt.portal, a, t, n)
        for (a, t), numbers in expected.items()
        for n in numbers or []
    }
    assert expected[(A, backend.target_name("ga"))] == [1, 7]
    assert expected[(B, backend.target_name("ga"))] is None
    assert expected[(B, backend.target_name("gab"))] == [1, 3]
    assert {i.naa for i in ids.values()} == {lun.naa for lun in luns}

    folder = tmp_path / "own-tgtd"
    with iscsi.session(own_tgt.portal, A, backend.target_name("ga"), 1):
        kill_tgtd(folder)  # while host A is logged in: its connection is left in TIME-WAIT
    with pytest.raises(Unavailable, match=f"control socket {own_tgt.control}") as down:
        await backend.list_luns()
    assert "Start it with" in str(down.value)

    restart_seconds = restart_tgtd(folder, own_tgt)
    assert tgtd_targets(own_tgt) == []  # tgtd came back empty
    started = time.monotonic()
    assert [lun.name for lun in await backend.list_luns()] == ["l1", "l2", "l3"]
    restore_seconds = time.monotonic() - started
    assert restore_seconds < 5
    assert sorted(tgtd_targets(own_tgt)) == sorted(_targets(backend))
    after = {(a, t): iscsi.visible_luns(own_tgt.portal, a).get(t) for a in (A, B) for t in _targets(backend)}
    assert after == expected
    assert {key: iscsi.identity(own_tgt.portal, *key) for key in ids} == ids
    print(f"tgtd restart {restart_seconds:.2f}s, restore {restore_seconds:.2f}s")
    await backend.close()
    assert procs.read_pid(folder, OWN_TGTD) is not None


def _targets(backend: TgtBackend) -> list[str]:
    return [backend.target_name(g) for g in ("ga", "gab", "empty")]


async def test_a_stopped_tgtd_is_unavailable(own_tgt: Tgt, tmp_path: Path, prefix: str) -> None:
    backend = TgtBackend(config_for(own_tgt, tmp_path, prefix))
    await backend.create_igroup("g", Transport.ISCSI, [A])
    tgt_module.stop(tmp_path / "own-tgtd", own_tgt, name=OWN_TGTD)
    socket = f"/var/run/tgtd/socket.{own_tgt.control}"
    with pytest.raises(
        Unavailable, match=f"tgtd does not answer on control socket {own_tgt.control}"
    ) as down:
        await backend.create_lun("vol", 1 << 20)
    message = str(down.value)
    assert socket in message
    assert f"tgtd -C {own_tgt.control} --iscsi portal={own_tgt.portal}" in message
    with pytest.raises(Unavailable, match="Start it with"):
        await backend.list_igroups()  # reads too: the server is down, say so
    await backend.close()
