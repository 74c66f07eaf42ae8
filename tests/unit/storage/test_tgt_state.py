"""The tgt backend's state file: ids that are never reused, atomic replacement, the lock."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lunbridge.errors import Busy, Unavailable
from lunbridge.san import Transport, naa
from lunbridge.storage.base import Chap
from lunbridge.storage.tgt import state as tgt_state
from lunbridge.storage.tgt.state import (
    IgroupRecord,
    LunRecord,
    MapRecord,
    SnapshotRecord,
    State,
    StateFile,
    naa_for,
    serial_for,
)


def test_naa_ids_are_type_6_without_zero_bytes_and_ordered() -> None:
    installation = tgt_state.new_installation()
    ids = [naa_for(installation, n) for n in (0, 1, 2, 254, 255, 256, 65_025, 10**12, 255**8 - 1)]
    for value in ids:
        assert len(value) == 32
        assert value[0] == "6"
        assert naa(value) == f"naa.{value}"
        assert 0 not in bytes.fromhex(value), value
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    with pytest.raises(ValueError, match="does not fit"):
        naa_for(installation, 255**8)


def test_installation_ids_have_no_zero_byte() -> None:
    for _ in range(200):
        assert 0 not in bytes.fromhex(tgt_state.new_installation())


def test_serials_are_unique_and_short() -> None:
    serials = {serial_for("0a0b0c0d", n) for n in range(1000)}
    assert len(serials) == 1000
    assert all(len(s) == 20 and s.isalnum() for s in serials)


def _full_state() -> State:
    state = State(installation="01020304")
    naa_id, serial = state.allocate_ids()
    state.luns["l1"] = LunRecord("default", 1 << 20, serial, naa_id, None)
    state.igroups["g1"] = IgroupRecord(Transport.ISCSI, ("iqn.1998-01.com.vmware:a",))
    state.igroups["g2"] = IgroupRecord(Transport.FCP, ("20:00:00:25:b5:00:00:01",), "linux")
    chap = Chap("node-user", "initiator-secret-1", "array-user", "target-secret-01")
    state.igroups["g3"] = IgroupRecord(Transport.ISCSI, ("iqn.1998-01.com.example:n",), "linux", chap)
    state.reset_accounts = frozenset({"node-user"})
    state.maps.append(MapRecord("l1", "g1", 3))
    state.snapshots["s1"] = SnapshotRecord("l1", "default", 1 << 20, datetime(2024, 5, 1, tzinfo=UTC), naa_id)
    return state


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    state = _full_state()
    again = State.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert again.igroups["g2"].transport is Transport.FCP


def test_a_state_file_from_before_chap_loads_without_chap(tmp_path: Path) -> None:
    data = _full_state().to_json()
    for group in data["igroups"].values():
        del group["chap"]
    del data["reset_accounts"]
    old = State.from_json(json.loads(json.dumps(data)))
    assert all(group.chap is None for group in old.igroups.values())
    assert old.reset_accounts == frozenset()
    assert old.igroups["g1"] == _full_state().igroups["g1"]


def test_the_state_file_is_private_and_its_repr_shows_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    path.chmod(0o644)  # a file of an older version, readable by all
    (tmp_path / f".state.json.{os.getpid()}.tmp").write_text("")  # a stale temp file, umask's mode
    old_umask = os.umask(0o000)
    try:
        StateFile(path, 1.0).save(_full_state())
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "initiator-secret-1" in path.read_text()  # the file is the truth, secrets too
    assert "secret-" not in repr(_full_state())


def test_save_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    file = StateFile(tmp_path / "state.json", 1.0)
    file.save(_full_state())
    file.save(State(installation="0a0b0c0d"))
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert json.loads((tmp_path / "state.json").read_text())["installation"] == "0a0b0c0d"


def test_a_crash_before_the_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = StateFile(tmp_path / "state.json", 1.0)
    file.save(_full_state())

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Unavailable, match="cannot write the tgt state file"):
        file.save(State(installation="0a0b0c0d"))
    assert StateFile(tmp_path / "state.json", 1.0).load() == _full_state()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_counter_survives_deletes_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = StateFile(path, 1.0).load()  # a missing file: fresh state, saved at once
    assert path.exists()
    seen = set()
    for _ in range(3):
        state = StateFile(path, 1.0).load()
        naa_id, serial = state.allocate_ids()
        state.luns["x"] = LunRecord("default", 512, serial, naa_id)
        StateFile(path, 1.0).save(state)
        del state.luns["x"]  # the LUN is deleted; its id must not come back
        StateFile(path, 1.0).save(state)
        seen.add(naa_id)
    assert len(seen) == 3
    assert StateFile(path, 1.0).load().next_id == 4
    assert StateFile(path, 1.0).load().installation == first.installation


def test_malformed_state_is_unavailable_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(Unavailable, match=r"malformed.*never delete it"):
        StateFile(path, 1.0).load()
    assert path.read_text() == "{not json"


def test_changed_notices_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    mine, other = StateFile(path, 1.0), StateFile(path, 1.0)
    mine.load()
    assert not mine.changed()
    state = other.load()
    state.allocate_ids()
    other.save(state)
    assert mine.changed()


async def test_the_file_lock_serializes_two_holders(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first, second = StateFile(path, 0.2), StateFile(path, 0.2)
    async with first.locked():
        with pytest.raises(Busy, match="locked by another process"):
            async with second.locked():
                pass
    async with second.locked():
        pass
    first.close()
    second.close()
