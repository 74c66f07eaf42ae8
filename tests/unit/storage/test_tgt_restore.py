"""The tgt backend keeps tgtd in line with its state file: restore after a tgtd restart,
cleanup after a crash, no saved state for a failed change; resize, snapshots and clones."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge.errors import AlreadyExists, Busy, Conflict, InvalidArgument, NotFound, Unavailable
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend
from tests.unit.storage.conftest import PREFIX
from tests.unit.storage.fake_tgt import FakeTgtd

A = "iqn.1998-01.com.vmware:host-a"
B = "iqn.1998-01.com.vmware:host-b"


async def _two_groups(backend: TgtBackend) -> None:
    await backend.create_lun("vol", 1 << 20)
    await backend.create_lun("other", 1 << 20)
    await backend.create_igroup("g1", Transport.ISCSI, [A])
    await backend.create_igroup("g2", Transport.ISCSI, [A, B])
    await backend.map_lun("vol", "g1")
    await backend.map_lun("vol", "g2", 5)
    await backend.map_lun("other", "g2")


def _snapshot_of(fake: FakeTgtd) -> dict[str, object]:
    return {t.name: (sorted(t.acl), {n: vars(lu) for n, lu in t.luns.items()}) for t in fake.targets.values()}


async def test_a_restarted_tgtd_gets_everything_back(backend: TgtBackend, fake: FakeTgtd) -> None:
    await _two_groups(backend)
    before = _snapshot_of(fake)
    fake.restart()
    assert await backend.get_lun("vol")  # any call restores
    assert _snapshot_of(fake) == before
    fake.commands.clear()
    await backend.list_luns()
    assert fake.mutations() == []  # an unchanged tgtd costs one show and nothing else


async def test_another_process_restores_from_the_state_file(
    backend: TgtBackend, fake: FakeTgtd, tmp_path: Path
) -> None:
    await _two_groups(backend)
    before = _snapshot_of(fake)
    fake.restart()
    other = TgtBackend(backend.config, runner=fake)
    await other.sync()
    assert _snapshot_of(fake) == before
    await other.close()


async def test_drift_is_repaired_and_foreign_targets_are_left_alone(
    backend: TgtBackend, fake: FakeTgtd
) -> None:
    await _two_groups(backend)
    before = _snapshot_of(fake)
    g1 = fake.by_name(PREFIX + "g1")
    g2 = fake.by_name(PREFIX + "g2")
    assert g1 is not None
    assert g2 is not None
    g1.acl.append("iqn.1998-01.com.vmware:intruder")
    g2.acl.remove(B)
    g2.luns[5].scsi_id = "6" + "1" * 31
    del g2.luns[1]
    g1.luns[9] = g1.luns[1]
    fake.targets[90] = type(g1)(PREFIX + "leftover")  # a crash left it after the state write
    fake.targets[91] = type(g1)("iqn.2024-01.example:not-ours")
    await backend.sync()
    assert {k: v for k, v in _snapshot_of(fake).items() if k.startswith(PREFIX)} == before
    assert fake.by_name("iqn.2024-01.example:not-ours") is not None


async def test_a_failed_change_is_not_saved_and_is_undone(backend: TgtBackend, fake: FakeTgtd) -> None:
    await backend.create_lun("vol", 1 << 20)
    await backend.create_igroup("g", Transport.ISCSI, [A])
    fake.fail_next["update"] = "this driver is busy"  # the LU is made, its ids fail
    with pytest.raises(Busy, match="busy"):
        await backend.map_lun("vol", "g")
    assert await backend.list_mappings() == []
    target = fake.by_name(PREFIX + "g")
    assert target is not None
    assert target.luns == {}  # the next call took tgtd back to the saved state
    assert (await backend.map_lun("vol", "g")).lun_id == 1


async def test_tgtd_down_is_unavailable_and_changes_nothing(backend: TgtBackend, fake: FakeTgtd) -> None:
    await backend.create_igroup("g", Transport.ISCSI, [A])
    fake.down = True
    with pytest.raises(Unavailable, match="tgtd does not answer on control socket 7"):
        await backend.create_lun("vol", 1 << 20)
    with pytest.raises(Unavailable, match="Start it with"):
        await backend.list_igroups()
    fake.down = False
    fake.restart()
    assert [g.name for g in await backend.list_igroups()] == ["g"]
    assert fake.by_name(PREFIX + "g") is not None
    with pytest.raises(NotFound):
        await backend.get_lun("vol")


async def test_resize_grows_the_file_and_re_creates_mapped_lus(
    backend: TgtBackend, fake: FakeTgtd, tmp_path: Path
) -> None:
    await _two_groups(backend)
    lun = await backend.get_lun("vol")
    fake.commands.clear()
    grown = await backend.resize_lun("vol", 4 << 20)
    assert grown.size_bytes == 4 << 20
    assert (grown.naa, grown.serial) == (lun.naa, lun.serial)
    assert (tmp_path / "pool" / "luns" / "vol.img").stat().st_size == 4 << 20
    deleted = [c for c in fake.mutations() if "delete" in c]
    assert len(deleted) == 2  # one LU per target that maps it
    assert fake.lu(PREFIX + "g2", 5).scsi_id == lun.naa.removeprefix("naa.")
    assert await backend.resize_lun("vol", 4 << 20) == grown
    with pytest.raises(InvalidArgument, match="can grow but not shrink"):
        await backend.resize_lun("vol", 1 << 20)


async def test_snapshot_and_clone(backend: TgtBackend, tmp_path: Path) -> None:
    lun = await backend.create_lun("vol", 1 << 20)
    path = tmp_path / "pool" / "luns" / "vol.img"
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"before")
    snap = await backend.create_snapshot("vol", "snap-1")
    assert (snap.lun, snap.size_bytes) == ("vol", 1 << 20)
    assert await backend.create_snapshot("vol", "snap-1") == snap
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"after!")
    clone = await backend.clone_lun("snap-1", "copy")
    assert clone.source_snapshot == "snap-1"
    assert clone.naa != lun.naa
    assert clone.serial != lun.serial
    data = (tmp_path / "pool" / "luns" / "copy.img").read_bytes()
    assert data[4096:4102] == b"before"
    assert await backend.clone_lun("snap-1", "copy") == clone
    with pytest.raises(AlreadyExists):
        await backend.clone_lun("snap-1", "vol")
    with pytest.raises(NotFound, match="snapshot 'nope'"):
        await backend.clone_lun("nope", "x")
    assert await backend.list_snapshots("vol") == [snap]
    assert await backend.list_snapshots("copy") == []
    await backend.delete_snapshot("snap-1")
    await backend.delete_snapshot("snap-1")
    assert await backend.list_snapshots() == []
    assert not (tmp_path / "pool" / "snapshots" / "snap-1.img").exists()
    assert (await backend.get_lun("copy")).size_bytes == 1 << 20  # clones are independent


async def test_snapshots_outlive_their_lun_but_not_its_name(backend: TgtBackend) -> None:
    await backend.create_lun("vol", 1 << 20)
    snap = await backend.create_snapshot("vol", "s")
    await backend.delete_lun("vol")
    assert await backend.list_snapshots("vol") == [snap]
    await backend.create_lun("vol", 1 << 20)  # a new LUN of the same name
    assert await backend.list_snapshots("vol") == []
    with pytest.raises(AlreadyExists, match="another LUN"):
        await backend.create_snapshot("vol", "s")


async def test_an_igroup_name_is_one_target_even_for_two_backends_on_one_file(
    backend: TgtBackend, fake: FakeTgtd
) -> None:
    other = TgtBackend(backend.config, runner=fake)
    await backend.create_igroup("g", Transport.ISCSI, [A])
    await other.create_lun("vol", 1 << 20)
    assert (await backend.map_lun("vol", "g")).lun_id == 1  # sees the other's LUN
    with pytest.raises(Conflict):
        await other.delete_lun("vol")
    await other.close()
