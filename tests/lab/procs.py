"""Start, find and stop the lab's background processes by PID file.

Every peer is one process whose PID is kept in `<lab_dir>/<name>.pid` and whose output goes
to `<lab_dir>/<name>.log`, so `lab down` can stop exactly what `lab up` started, even from
another shell, and a second `lab up` can see that a peer already runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class LabError(RuntimeError):
    """A peer could not be started, reached or stopped."""


def pid_file(lab_dir: Path, name: str) -> Path:
    return lab_dir / f"{name}.pid"


def log_file(lab_dir: Path, name: str) -> Path:
    return lab_dir / f"{name}.log"


def read_pid(lab_dir: Path, name: str) -> int | None:
    """The PID of a running peer `name`, or None (a stale PID file is removed)."""
    path = pid_file(lab_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _not_zombie(pid)
    return done == 0


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def spawn(
    lab_dir: Path,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached in its own session, record its PID and return it."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    log = log_file(lab_dir, name).open("ab")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise LabError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    finally:
        log.close()
    pid_file(lab_dir, name).write_text(str(proc.pid))
    return proc.pid


def stop(lab_dir: Path, name: str, timeout: float = 10.0) -> bool:
    """Stop peer `name` (TERM, then KILL after `timeout`); True if it was running."""
    pid = read_pid(lab_dir, name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        _signal_group(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.05)
    pid_file(lab_dir, name).unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, timeout: float, name: str, lab_dir: Path) -> None:
    """Wait until peer `name` itself listens on host:port.

    Connecting is not enough: another process may hold the port (tgtd, for one, keeps
    running when its portal is taken), so the listener must belong to the peer's session.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(lab_dir, name)
        if pid is None:
            raise LabError(f"{name} exited while starting; see {log_file(lab_dir, name)}")
        if pid in listener_sessions(port):
            return
        time.sleep(0.1)
    raise LabError(
        f"{name} did not listen on {host}:{port} within {timeout}s "
        f"(is the port taken by another process?); see {log_file(lab_dir, name)}"
    )


def listener_sessions(port: int) -> set[int]:
    """Session ids of the processes that listen on TCP `port` (our peers lead their session)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A":  # 0A = LISTEN
                inodes.add(fields[9])
    sessions: set[int] = set()
    if not inodes:
        return sessions
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc_dir / "fd").iterdir()}
            if any(f"socket:[{inode}]" in links for inode in inodes):
                stat = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
                sessions.add(int(stat[3]))  # field 6 of stat: session id
        except OSError:
            continue
    return sessions


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
