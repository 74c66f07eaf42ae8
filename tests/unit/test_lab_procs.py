"""The lab's process bookkeeping: PID files, stop by PID, and ownership of a listening port."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.lab import procs
from tests.lab.lab import node_name

LISTENER = (
    "import socket,sys,time; s=socket.socket(); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)"
)


def test_spawned_process_is_found_and_stopped(tmp_path: Path) -> None:
    pid = procs.spawn(tmp_path, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert procs.read_pid(tmp_path, "sleeper") == pid
    assert procs.stop(tmp_path, "sleeper") is True
    assert procs.read_pid(tmp_path, "sleeper") is None
    assert not procs.pid_file(tmp_path, "sleeper").exists()
    assert procs.stop(tmp_path, "sleeper") is False


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    procs.pid_file(tmp_path, "ghost").write_text("999999999")
    assert procs.read_pid(tmp_path, "ghost") is None


def test_wait_port_accepts_own_listener(tmp_path: Path) -> None:
    port = procs.free_port()
    procs.spawn(tmp_path, "mine", [sys.executable, "-c", LISTENER, str(port)])
    try:
        procs.wait_port("127.0.0.1", port, 10, "mine", tmp_path)
    finally:
        procs.stop(tmp_path, "mine")


def test_wait_port_refuses_a_port_held_by_another_process(tmp_path: Path) -> None:
    port = procs.free_port()
    procs.spawn(tmp_path, "squatter", [sys.executable, "-c", LISTENER, str(port)])
    procs.spawn(tmp_path, "late", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        procs.wait_port("127.0.0.1", port, 10, "squatter", tmp_path)
        with pytest.raises(procs.LabError, match="is the port taken by another process"):
            procs.wait_port("127.0.0.1", port, 1, "late", tmp_path)
    finally:
        procs.stop(tmp_path, "squatter")
        procs.stop(tmp_path, "late")


def test_wait_port_reports_a_peer_that_died(tmp_path: Path) -> None:
    procs.spawn(tmp_path, "dies", [sys.executable, "-c", "print('boom')"])
    with pytest.raises(procs.LabError, match="exited while starting"):
        procs.wait_port("127.0.0.1", procs.free_port(), 10, "dies", tmp_path)


@pytest.mark.parametrize(
    ("vm", "node"), [("DC0_C0_RP0_VM0", "dc0-c0-rp0-vm0"), ("DC0_H0_VM1", "dc0-h0-vm1"), ("_x_", "x")]
)
def test_node_names_are_dns_labels(vm: str, node: str) -> None:
    assert node_name(vm) == node
