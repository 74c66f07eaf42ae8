"""Snapshots of the tgt backend are point-in-time or refused: on a pool whose file system
cannot clone (this machine's temporary folders), a LUN that an igroup maps is not copied
(the copy could mix writes from before and after the cut), one that nothing maps is. The
reflink path itself is proven on the lab's XFS pool (tests/integration/storage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge.errors import Conflict
from lunbridge.storage.tgt import TgtBackend
from lunbridge.storage.tgt.files import NoReflink, clone_file, cut
from tests.unit.storage.mapped import mapped_lun

A = "iqn.1998-01.com.vmware:host-a"


async def test_a_mapped_lun_on_a_pool_without_reflink_is_refused_and_nothing_is_left(
    backend: TgtBackend, tmp_path: Path
) -> None:
    await mapped_lun(backend, "vol", 1 << 20, "g1", A)
    with pytest.raises(Conflict) as refused:
        await backend.create_snapshot("vol", "snap-1")
    message = str(refused.value)
    assert "pool default cannot cut a point-in-time snapshot" in message
    assert "mapped to igroup(s) g1" in message
    assert "reflink" in message
    assert await backend.list_snapshots() == []
    assert list((tmp_path / "pool" / "snapshots").glob("*")) == []


async def test_an_unmapped_lun_is_copied_on_a_pool_without_reflink(
    backend: TgtBackend, tmp_path: Path
) -> None:
    await mapped_lun(backend, "vol", 1 << 20, "g1", A)
    await backend.unmap_lun("vol", "g1")
    snap = await backend.create_snapshot("vol", "snap-1")
    assert snap.lun == "vol"
    assert (tmp_path / "pool" / "snapshots" / "snap-1.img").stat().st_size == 1 << 20


def test_clone_file_says_when_the_file_system_cannot(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.write_bytes(b"x" * 4096)
    try:
        clone_file(source, tmp_path / "b")
    except NoReflink:
        assert not (tmp_path / "b").exists()
        assert not (tmp_path / ".b.tmp").exists()
    else:  # a temporary folder on XFS/btrfs: then it is a real clone
        assert (tmp_path / "b").read_bytes() == source.read_bytes()


async def test_cut_of_a_missing_source_is_an_error_not_a_copy(tmp_path: Path) -> None:
    async def runner(argv: list[str], time_limit: float) -> object:
        raise AssertionError(f"no copy expected: {argv}")

    with pytest.raises(Exception, match=r"cannot clone|No such file"):
        await cut(runner, tmp_path / "missing", tmp_path / "t", "p", 5.0, in_use="mapped")  # type: ignore[arg-type]
