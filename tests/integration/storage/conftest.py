"""A tgt backend on the lab's real tgtd, each test under its own IQN prefix and pool folder so
tests cannot see each other's targets; and a private tgtd for the tests that kill it.

The pool folder (`<tmp_path>/pool`) is a link to a folder of its own on the lab's XFS pool,
where snapshots are reflink clones (tests/lab/pool.py)."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.lab import pool, procs
from tests.lab import tgt as tgt_module
from tests.lab.lab import LabState
from tests.lab.tgt import Tgt

OWN_TGTD = "tgtd-storage"


def config_for(tgt: Tgt, folder: Path, prefix: str) -> TgtConfig:
    return TgtConfig(
        control=tgt.control,
        portal=tgt.portal,
        pools={"default": folder / "pool"},
        state_file=folder / "state" / "tgt.json",
        iqn_prefix=prefix,
        timeout=15.0,
    )


def remove_targets(tgt: Tgt, prefix: str) -> None:
    """Delete every target under `prefix` (what a test made), straight with tgtadm."""
    shown = tgt.adm("--op", "show", "--mode", "target", check=False).stdout
    for line in shown.splitlines():
        if line.startswith("Target ") and line.split(": ", 1)[1].startswith(prefix):
            tid = line.split()[1].rstrip(":")
            tgt.adm("--op", "delete", "--force", "--mode", "target", "--tid", tid, check=False)


@pytest.fixture
def prefix() -> str:
    return f"iqn.2024-01.io.lunbridge.it{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def reflink_pool(lab: LabState, tmp_path: Path) -> Iterator[Path]:
    """`<tmp_path>/pool`, a folder on the lab's reflink pool; removed after the test."""
    folder = pool.mount_point(Path(lab.lab_dir)) / f"it-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    (tmp_path / "pool").symlink_to(folder)
    yield tmp_path / "pool"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def backend(tgt: Tgt, tmp_path: Path, prefix: str, reflink_pool: Path) -> AsyncIterator[TgtBackend]:
    """A backend on the lab's tgtd, its pool on the lab's reflink pool; its targets are
    removed after the test."""
    made = TgtBackend(config_for(tgt, tmp_path, prefix))
    yield made
    await made.close()
    remove_targets(tgt, prefix)


@pytest.fixture
def own_tgt(tmp_path: Path) -> Iterator[Tgt]:
    """A tgtd of this test's own (the session's must not be killed)."""
    folder = tmp_path / "own-tgtd"
    started = tgt_module.start(folder, name=OWN_TGTD)
    yield started
    tgt_module.stop(folder, started, name=OWN_TGTD)
    procs.stop(folder, OWN_TGTD)


def kill_tgtd(folder: Path) -> None:
    """`kill -9` the test's own tgtd and wait until it is gone (its state is lost)."""
    pid = procs.read_pid(folder, OWN_TGTD)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.read_pid(folder, OWN_TGTD) is not None:
        assert time.monotonic() < deadline, "tgtd survived SIGKILL"
        time.sleep(0.05)


def restart_tgtd(folder: Path, tgt: Tgt) -> float:
    """Start tgtd again on the same control number and portal; seconds until it serves.

    Measured: with an initiator logged in at the kill, the portal is left in TIME-WAIT, yet
    the new tgtd binds it at once (tgtd sets SO_REUSEADDR), in about 0.1 s; the stale control
    socket file is replaced too. So no waiting for the port.
    """
    started = time.monotonic()
    argv = ["tgtd", "-f", "-C", str(tgt.control), "--iscsi", f"portal={tgt.portal}"]
    procs.spawn(folder, OWN_TGTD, argv)
    procs.wait_port("127.0.0.1", tgt.port, 15, OWN_TGTD, folder)
    while tgt.adm("--op", "show", "--mode", "target", check=False).returncode != 0:
        assert time.monotonic() - started < 15, "restarted tgtd does not answer on its control socket"
        time.sleep(0.05)
    return time.monotonic() - started


def tgtd_targets(tgt: Tgt) -> list[str]:
    return [
        line.split(": ", 1)[1]
        for line in tgt.adm("--op", "show", "--mode", "target").stdout.splitlines()
        if line.startswith("Target ")
    ]


def write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
