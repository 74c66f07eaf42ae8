"""The tgt backend's LUN, igroup and map operations, against a fake tgtd."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lunbridge.command import Result
from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, LimitExceeded, NotFound, Unavailable
from lunbridge.san import Transport
from lunbridge.storage.base import Mapping, StorageBackend
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.unit.storage.conftest import PREFIX, make_config
from tests.unit.storage.fake_tgt import FakeTgtd

A = "iqn.1998-01.com.vmware:host-a"
B = "iqn.1998-01.com.vmware:host-b"


async def _serve(storage: StorageBackend, host: str) -> Mapping:
    """What the operator does through the protocol alone: a LUN masked to one host's initiator."""
    await storage.create_lun("vol-p", 1 << 20)
    await storage.create_igroup("host-p", Transport.ISCSI, [host])
    return await storage.map_lun("vol-p", "host-p")


async def test_through_the_protocol_alone_a_host_is_served_a_lun(backend: TgtBackend, fake: FakeTgtd) -> None:
    mapping = await _serve(backend, A)  # mypy checks that TgtBackend is a StorageBackend
    target = fake.by_name(PREFIX + "host-p")
    assert target is not None
    assert target.acl == [A]
    lun = await backend.get_lun("vol-p")
    assert f"naa.{fake.lu(target.name, mapping.lun_id).scsi_id}" == lun.naa
    assert [p.address for p in await backend.portals()] == ["127.0.0.1:3260"]


async def test_create_lun_is_sparse_idempotent_and_checks_size(backend: TgtBackend, tmp_path: Path) -> None:
    lun = await backend.create_lun("vol-1", 1000)  # rounded up to whole blocks
    assert lun.size_bytes == 1024
    assert lun.pool == "default"
    assert lun.naa.startswith("naa.6")
    path = tmp_path / "pool" / "luns" / "vol-1.img"
    assert path.stat().st_size == 1024
    assert path.stat().st_blocks == 0
    assert await backend.create_lun("vol-1", 1024) == lun
    assert await backend.get_lun("vol-1") == lun
    with pytest.raises(AlreadyExists, match="resize it, or delete it first"):
        await backend.create_lun("vol-1", 4096)
    with pytest.raises(AlreadyExists):
        await backend.create_lun("vol-1", 1024, pool="fast")


async def test_every_lun_gets_its_own_ids(backend: TgtBackend) -> None:
    luns = [await backend.create_lun(f"vol-{i}", 1 << 20) for i in range(5)]
    assert len({lun.naa for lun in luns}) == 5
    assert len({lun.serial for lun in luns}) == 5
    assert [lun.name for lun in await backend.list_luns()] == [f"vol-{i}" for i in range(5)]


async def test_ids_are_never_reused_after_delete(backend: TgtBackend, tmp_path: Path, fake: FakeTgtd) -> None:
    first = await backend.create_lun("vol", 1 << 20)
    await backend.delete_lun("vol")
    again = await backend.create_lun("vol", 1 << 20)
    assert again.naa != first.naa
    assert again.serial != first.serial
    fresh = TgtBackend(backend.config, runner=fake)  # another process, same state file
    await fresh.delete_lun("vol")
    assert (await fresh.create_lun("vol", 1 << 20)).naa not in {first.naa, again.naa}
    await fresh.close()


async def test_bad_requests_are_invalid_arguments(backend: TgtBackend) -> None:
    for name in ["UPPER", "under_score", "-lead", "trail-", "", "x" * 64, "a/b"]:
        with pytest.raises(InvalidArgument, match="name"):
            await backend.create_lun(name, 1 << 20)
    for size in [0, -1, 1.5]:
        with pytest.raises(InvalidArgument, match="size"):
            await backend.create_lun("ok", size)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="not an iSCSI name"):
        await backend.create_igroup("g", Transport.ISCSI, ["not-an-iqn"])
    with pytest.raises(InvalidArgument, match="not a WWN"):
        await backend.create_igroup("g", Transport.FCP, [A])
    with pytest.raises(InvalidArgument, match="neither"):
        await backend.create_igroup("g", "nvme", [])  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="pool 'nope'"):
        await backend.create_lun("ok", 1 << 20, pool="nope")


def test_config_is_checked(tmp_path: Path) -> None:
    good: dict[str, Any] = {
        "control": 1,
        "portal": "127.0.0.1:3260",
        "pools": {"p": tmp_path},
        "state_file": tmp_path / "s",
    }
    assert TgtConfig(**{**good, "pools": {"p": Path("relative")}}).pools["p"] == Path.cwd() / "relative"
    bads: list[dict[str, Any]] = [
        {"portal": "nohost"},
        {"pools": {}},
        {"pools": {"Bad": tmp_path}},
        {"iqn_prefix": "IQN.X:"},
        {"iqn_prefix": "iqn.2024-01.io.lunbridge"},
        {"timeout": 0},
        {"control": -1},
    ]
    for bad in bads:
        with pytest.raises(InvalidArgument):
            TgtConfig(**{**good, **bad})


async def test_an_iscsi_igroup_is_a_target_whose_acl_is_its_initiators(
    backend: TgtBackend, fake: FakeTgtd
) -> None:
    group = await backend.create_igroup("hosts", Transport.ISCSI, [A.upper().replace("IQN", "iqn"), A])
    assert group.initiators == (A,)  # canonical and de-duplicated
    target = fake.by_name(PREFIX + "hosts")
    assert target is not None
    assert target.acl == [A]
    assert await backend.create_igroup("hosts", Transport.ISCSI, [A]) == group
    with pytest.raises(AlreadyExists, match="add/remove"):
        await backend.create_igroup("hosts", Transport.ISCSI, [B])
    group = await backend.add_initiators("hosts", [B, A])
    assert group.initiators == (A, B)
    assert target.acl == [A, B]
    group = await backend.remove_initiators("hosts", [A, "iqn.1998-01.com.vmware:never"])
    assert group.initiators == (B,)
    assert target.acl == [B]
    assert await backend.get_igroup("hosts") == group
    assert await backend.list_igroups() == [group]
    await backend.delete_igroup("hosts")
    await backend.delete_igroup("hosts")
    assert fake.by_name(PREFIX + "hosts") is None
    with pytest.raises(NotFound):
        await backend.get_igroup("hosts")


async def test_map_makes_an_lu_with_the_luns_ids(backend: TgtBackend, fake: FakeTgtd, tmp_path: Path) -> None:
    lun = await backend.create_lun("vol", 1 << 20)
    await backend.create_igroup("g1", Transport.ISCSI, [A])
    await backend.create_igroup("g2", Transport.ISCSI, [B])
    assert await backend.map_lun("vol", "g1") == Mapping("vol", "g1", 1)
    assert await backend.map_lun("vol", "g2", 7) == Mapping("vol", "g2", 7)
    for target, lun_id in [("g1", 1), ("g2", 7)]:
        lu = fake.lu(PREFIX + target, lun_id)
        assert f"naa.{lu.scsi_id}" == lun.naa
        assert lu.scsi_sn == lun.serial
        assert lu.path == str(tmp_path / "pool" / "luns" / "vol.img")
        assert lu.thin
    assert await backend.map_lun("vol", "g1") == Mapping("vol", "g1", 1)  # existing map
    assert await backend.map_lun("vol", "g1", 1) == Mapping("vol", "g1", 1)
    with pytest.raises(AlreadyExists, match="as LUN id 1, not 2"):
        await backend.map_lun("vol", "g1", 2)
    assert await backend.list_mappings(lun="vol") == [Mapping("vol", "g1", 1), Mapping("vol", "g2", 7)]
    assert await backend.list_mappings(igroup="g2") == [Mapping("vol", "g2", 7)]


async def test_lowest_free_lun_id_and_taken_ids(backend: TgtBackend) -> None:
    await backend.create_igroup("g", Transport.ISCSI, [A])
    for name in ["a", "b", "c", "d"]:
        await backend.create_lun(name, 1 << 20)
    assert (await backend.map_lun("a", "g")).lun_id == 1
    assert (await backend.map_lun("b", "g")).lun_id == 2
    assert (await backend.map_lun("c", "g")).lun_id == 3
    await backend.unmap_lun("b", "g")
    await backend.unmap_lun("b", "g")
    assert (await backend.map_lun("d", "g")).lun_id == 2
    with pytest.raises(Conflict, match="LUN id 3 of igroup g is taken by LUN c"):
        await backend.map_lun("b", "g", 3)
    for bad in [0, 256, -1]:
        with pytest.raises(InvalidArgument, match=r"1\.\.255"):
            await backend.map_lun("b", "g", bad)


async def test_lun_ids_run_out_at_255(backend: TgtBackend) -> None:
    await backend.create_igroup("g", Transport.ISCSI, [A])
    state_file = backend.config.state_file
    await backend.create_lun("last", 1 << 20)
    data = json.loads(state_file.read_text())
    data["luns"].update({f"l{i}": {**data["luns"]["last"]} for i in range(255)})
    data["maps"] = [{"lun": f"l{i}", "igroup": "g", "lun_id": i + 1} for i in range(255)]
    state_file.write_text(json.dumps(data))  # another process filled the igroup
    with pytest.raises(LimitExceeded, match="all 255 LUN ids"):
        await backend.map_lun("last", "g")


async def test_mapped_things_cannot_be_deleted(backend: TgtBackend, fake: FakeTgtd, tmp_path: Path) -> None:
    await backend.create_lun("vol", 1 << 20)
    await backend.create_igroup("g", Transport.ISCSI, [A])
    await backend.map_lun("vol", "g")
    with pytest.raises(Conflict, match="mapped to igroup\\(s\\) g: unmap it first"):
        await backend.delete_lun("vol")
    with pytest.raises(Conflict, match="LUN\\(s\\) vol mapped"):
        await backend.delete_igroup("g")
    await backend.unmap_lun("vol", "g")
    assert fake.by_name(PREFIX + "g") is not None
    assert set(fake.by_name(PREFIX + "g").luns) == set()  # type: ignore[union-attr]
    await backend.delete_lun("vol")
    await backend.delete_lun("vol")
    assert not (tmp_path / "pool" / "luns" / "vol.img").exists()
    await backend.delete_igroup("g")


async def test_fcp_igroups_are_data_only(backend: TgtBackend, fake: FakeTgtd) -> None:
    group = await backend.create_igroup("fc", Transport.FCP, ["2000002590000001", "20:00:00:25:90:00:00:02"])
    assert group.initiators == ("20:00:00:25:90:00:00:01", "20:00:00:25:90:00:00:02")
    assert fake.targets == {}
    await backend.create_lun("vol", 1 << 20)
    with pytest.raises(InvalidArgument, match="tgtd serves iSCSI only"):
        await backend.map_lun("vol", "fc")
    with pytest.raises(InvalidArgument, match="not a WWN"):
        await backend.add_initiators("fc", [A])
    await backend.delete_igroup("fc")


async def test_missing_objects(backend: TgtBackend) -> None:
    with pytest.raises(NotFound, match="LUN 'x' does not exist"):
        await backend.get_lun("x")
    with pytest.raises(NotFound):
        await backend.resize_lun("x", 1 << 20)
    await backend.create_lun("vol", 1 << 20)
    with pytest.raises(NotFound, match="igroup 'g'"):
        await backend.map_lun("vol", "g")
    await backend.unmap_lun("vol", "g")


async def test_pools_and_portals(backend: TgtBackend) -> None:
    pools = await backend.pools()
    assert [p.name for p in pools] == ["default", "fast"]
    assert all(0 < p.free_bytes <= p.size_bytes for p in pools)
    assert [p.address for p in await backend.portals()] == ["127.0.0.1:3260"]
    assert backend.target_name("g") == PREFIX + "g"


async def test_concurrent_calls_are_serialized(backend: TgtBackend, fake: FakeTgtd) -> None:
    other = TgtBackend(backend.config, runner=fake)  # e.g. a second process on the same state file
    await backend.create_igroup("g", Transport.ISCSI, [A])
    names = [f"v{i}" for i in range(8)]
    luns = await asyncio.gather(
        *(b.create_lun(n, 1 << 20) for b, n in zip([backend, other] * 4, names, strict=True))
    )
    assert len({lun.naa for lun in luns}) == 8
    maps = await asyncio.gather(
        *(b.map_lun(n, "g") for b, n in zip([other, backend] * 4, names, strict=True))
    )
    assert sorted(m.lun_id for m in maps) == list(range(1, 9))
    assert len(await backend.list_mappings(igroup="g")) == 8
    await other.close()


def shows(fake: FakeTgtd) -> int:
    return sum(1 for c in fake.commands if "show" in c)


class RunningTgtd:
    """What tells the backend a tgtd runs: a process that holds the lock on the control socket's
    lock file, as tgtd does; `restart` makes it another process, as a new tgtd is."""

    HOLD = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.lockf(f, fcntl.LOCK_EX); "
        "print(1, flush=True); time.sleep(600)"
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self._holder = self._hold()

    def _hold(self) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [sys.executable, "-c", self.HOLD, str(self.path)], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None
        holder.stdout.readline()  # locked
        return holder

    def restart(self) -> None:
        self.stop()
        self._holder = self._hold()

    def stop(self) -> None:
        self._holder.kill()
        self._holder.wait()


@pytest.fixture
def socket_file(backend: TgtBackend, tmp_path: Path) -> Iterator[RunningTgtd]:
    running = RunningTgtd(tmp_path / "socket.7.lock")
    backend.control_lock = running.path
    yield running
    running.stop()


async def test_reads_between_syncs_run_no_tgtadm(
    backend: TgtBackend, fake: FakeTgtd, socket_file: RunningTgtd
) -> None:
    await _serve(backend, A)
    before = len(fake.commands)
    for _ in range(5):
        assert (await backend.get_lun("vol-p")).name == "vol-p"
        assert (await backend.get_igroup("host-p")).initiators == (A,)
        assert [m.lun_id for m in await backend.list_mappings(lun="vol-p")] == [1]
    assert [" ".join(c) for c in fake.commands[before:]] == []


async def test_changes_between_syncs_send_only_their_own_commands(
    backend: TgtBackend, fake: FakeTgtd, socket_file: RunningTgtd
) -> None:
    """A map, an unmap, a new igroup and a changed ACL while tgtd is in line: no `show` (its
    cost grows with every LU tgtd serves), and tgtd ends up as a full sync would leave it."""
    await _serve(backend, A)
    for i in range(3):
        await backend.create_lun(f"vol-{i}", 1 << 20)
    before = len(fake.commands)
    await backend.map_lun("vol-0", "host-p")
    await backend.map_lun("vol-1", "host-p")
    await backend.unmap_lun("vol-0", "host-p")
    await backend.create_igroup("host-q", Transport.ISCSI, [B])
    await backend.map_lun("vol-2", "host-q")
    await backend.add_initiators("host-p", [B])
    sent = fake.commands[before:]
    assert not [c for c in sent if "show" in c]
    target_p, target_q = fake.by_name(PREFIX + "host-p"), fake.by_name(PREFIX + "host-q")
    assert target_p is not None
    assert target_q is not None
    assert sorted(target_p.luns) == [1, 3]  # vol-p as 1, vol-1 as 3 (vol-0 had 2)
    assert sorted(target_p.acl) == [A, B]
    assert (target_q.acl, sorted(target_q.luns)) == ([B], [1])
    backend.sync_seconds = 0.0
    settled = len(fake.mutations())
    await backend.get_lun("vol-p")  # a full sync: tgtd already holds what it wants
    assert len(fake.mutations()) == settled


async def test_a_read_does_not_wait_behind_a_change(tmp_path: Path, fake: FakeTgtd) -> None:
    """While a change waits on tgtd, a read answers from the last committed state."""
    held, release = asyncio.Event(), asyncio.Event()
    release.set()

    async def slow_new_lu(argv: Sequence[str], time_limit: float) -> Result:
        if "logicalunit" in argv and "new" in argv:
            held.set()
            await release.wait()
        return await fake(argv, time_limit)

    backend = TgtBackend(make_config(tmp_path), runner=slow_new_lu)
    await _serve(backend, A)
    await backend.create_lun("vol-q", 1 << 20)
    held.clear()
    release.clear()
    mapping = asyncio.create_task(backend.map_lun("vol-q", "host-p"))
    await asyncio.wait_for(held.wait(), 5)
    queued = asyncio.create_task(backend.create_lun("vol-r", 1 << 20))  # waits behind the map
    read = await asyncio.wait_for(backend.list_mappings(igroup="host-p"), 1)
    assert [m.lun for m in read] == ["vol-p"]  # before the change
    release.set()
    assert (await mapping).lun_id == 2
    await queued
    assert [m.lun for m in await backend.list_mappings(igroup="host-p")] == ["vol-p", "vol-q"]
    await backend.close()


async def test_a_restarted_tgtd_is_brought_back_at_the_next_call(
    backend: TgtBackend, fake: FakeTgtd, socket_file: RunningTgtd
) -> None:
    await _serve(backend, A)
    fake.restart()
    socket_file.restart()
    await backend.get_lun("vol-p")
    target = fake.by_name(PREFIX + "host-p")
    assert target is not None
    assert target.acl == [A]


async def test_a_change_behind_the_backends_back_is_undone_within_the_sync_interval(
    backend: TgtBackend, fake: FakeTgtd, socket_file: RunningTgtd
) -> None:
    await _serve(backend, A)
    tid = next(tid for tid, t in fake.targets.items() if t.name == PREFIX + "host-p")
    target = fake.targets[tid]
    await fake.tgtadm("--mode", "logicalunit", "--op", "delete", "--tid", str(tid), "--lun", "1")
    await backend.get_lun("vol-p")
    assert 1 not in target.luns  # within the interval: the state answers
    backend.sync_seconds = 0.0
    await backend.get_lun("vol-p")
    assert 1 in target.luns


async def test_a_failed_change_makes_the_next_call_look_at_tgtd(
    backend: TgtBackend, fake: FakeTgtd, socket_file: RunningTgtd
) -> None:
    await _serve(backend, A)
    await backend.create_lun("vol-q", 1 << 20)
    fake.fail_next["new"] = "out of memory"
    with pytest.raises(Exception, match="out of memory"):
        await backend.map_lun("vol-q", "host-p")
    before = shows(fake)
    await backend.get_lun("vol-p")
    assert shows(fake) == before + 1
    await backend.get_lun("vol-p")
    assert shows(fake) == before + 1


async def test_a_stopped_tgtd_is_found_at_the_next_call_without_touching_its_socket(
    backend: TgtBackend, fake: FakeTgtd, socket_file: RunningTgtd
) -> None:
    """No tgtd holds the lock any more: the next call looks at tgtd (and says it is down); the
    backend never connects to the control socket itself (tgt 1.0.85 leaks such connections)."""
    await _serve(backend, A)
    socket_file.stop()
    fake.down = True
    with pytest.raises(Unavailable, match="tgtd does not answer"):
        await backend.get_lun("vol-p")
