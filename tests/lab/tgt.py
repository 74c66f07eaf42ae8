"""tgtd, the lab's storage server (Debian `tgt`), on a loopback portal.

tgtd keeps its configuration in memory and ignores SIGTERM while it has targets, so stopping
it means asking it over its own control socket (`-C N`) to delete the whole system. Each lab
gets its own control number, so tests and the lab can run several side by side.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.lab import procs

NAME = "tgtd"

# where the lab's KVM guest reaches tgtd as an `initiator` node: a QEMU guestfwd (one `busybox
# nc` relay per connection) to tgtd's 127.0.0.1 portal; the portal a publish context names
GUEST_TGT_PORTAL = ("10.0.2.101", 3260)


@dataclass(frozen=True)
class Tgt:
    port: int
    control: int

    @property
    def portal(self) -> str:
        return f"127.0.0.1:{self.port}"

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `tgtadm -C <control> --lld iscsi ARGS` against this tgtd."""
        return subprocess.run(
            ["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args],
            check=check,
            capture_output=True,
            text=True,
        )


def _free_control(lab_dir: Path) -> int:
    """A tgtd control number (`-C N`, socket /var/run/tgtd/socket.N) that no live tgtd uses.

    tgtd leaves its socket file behind when it exits, so a file alone does not mean taken:
    only a socket that accepts a connection does. The search starts at a number drawn from
    the process id, so that labs started at the same moment (the test workers') do not both
    take the first free number.
    """
    first = os.getpid() % 900
    for control in (100 + (first + step) % 900 for step in range(900)):
        path = Path(f"/var/run/tgtd/socket.{control}")
        if not path.exists():
            return control
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                return control
    raise procs.LabError("no free tgtd control socket number in 100..999")


def start(lab_dir: Path, name: str = NAME, port: int | None = None, control: int | None = None) -> Tgt:
    """Start tgtd on a free portal and control number (or the given ones, for a restart)."""
    control = _free_control(lab_dir) if control is None else control
    port = procs.free_port() if port is None else port
    procs.spawn(lab_dir, name, ["tgtd", "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{port}"])
    procs.wait_port("127.0.0.1", port, 15, name, lab_dir)
    tgt = Tgt(port=port, control=control)
    deadline = time.monotonic() + 10
    while tgt.adm("--op", "show", "--mode", "target", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise procs.LabError(f"tgtd control socket {control} does not answer")
        time.sleep(0.05)
    return tgt


def target_ids(tgt: Tgt) -> list[int]:
    shown = tgt.adm("--op", "show", "--mode", "target", check=False).stdout
    return [int(line.split()[1].rstrip(":")) for line in shown.splitlines() if line.startswith("Target ")]


def stop(lab_dir: Path, tgt: Tgt | None, name: str = NAME) -> None:
    """Delete every target, then the tgtd system; leaves no target and no process behind.

    tgtd refuses `delete system` and ignores SIGTERM while it has targets, so the targets go
    first (forced, which also ends their sessions).
    """
    if procs.read_pid(lab_dir, name) is None:
        return
    if tgt is not None:
        for tid in target_ids(tgt):
            tgt.adm("--op", "delete", "--force", "--mode", "target", "--tid", str(tid), check=False)
        subprocess.run(
            ["tgtadm", "-C", str(tgt.control), "--op", "delete", "--mode", "system"],
            capture_output=True,
            check=False,
        )
    procs.stop(lab_dir, name, timeout=10)


def kill(lab_dir: Path, name: str = NAME) -> None:
    """SIGKILL tgtd, as a crash would: every target, LU and ACL is gone with it, and its
    initiators lose their sessions. Its control socket file stays behind (a new tgtd of the
    same number replaces it)."""
    pid = procs.read_pid(lab_dir, name)
    if pid is None:
        raise procs.LabError(f"{name} is not running")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.read_pid(lab_dir, name) is not None:
        if time.monotonic() > deadline:
            raise procs.LabError(f"{name} (pid {pid}) survived SIGKILL")
        time.sleep(0.05)


def restart(lab_dir: Path, tgt: Tgt, name: str = NAME, down_for: float = 0.0) -> Tgt:
    """Kill tgtd (SIGKILL) and start it again, after `down_for` seconds, on the same portal and
    control socket: an empty tgtd, as after a crash or a reboot of the storage server (the
    lunbridge backend puts its targets back on its next call)."""
    kill(lab_dir, name)
    time.sleep(down_for)
    return start(lab_dir, name, port=tgt.port, control=tgt.control)


@dataclass(frozen=True)
class LabLun:
    """A LUN made directly with tgtadm (no lunbridge code) for the peers' own smoke tests."""

    target: str
    tid: int
    lun: int
    naa: str
    serial: str


def make_lun(
    tgt: Tgt, backing_dir: Path, initiators: list[str], size: int = 64 << 20, naa: str | None = None
) -> LabLun:
    """A sparse LUN 1 with a fresh (or the given) NAA on a new target whose ACL holds exactly
    `initiators`. tgt reads scsi_id as hex and serves it as the NAA designator."""
    tid = max(target_ids(tgt), default=0) + 1
    target = f"iqn.2024-01.io.lunbridge.lab:probe-{uuid.uuid4().hex[:8]}"
    naa = naa or "6001405" + uuid.uuid4().hex[:25]
    serial = f"LBLAB{tid:05d}"
    backing = backing_dir / f"{target.rsplit(':', 1)[1]}.img"
    with backing.open("wb") as handle:
        handle.truncate(size)
    tgt.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", target)
    tgt.adm("--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1", "-b", str(backing))
    tgt.adm(
        "--op", "update", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1",
        "--params", f"scsi_sn={serial},scsi_id={naa}",
    )  # fmt: skip
    for initiator in initiators:
        tgt.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-name", initiator)
    return LabLun(target=target, tid=tid, lun=1, naa=naa, serial=serial)


def delete_target(tgt: Tgt, tid: int) -> None:
    tgt.adm("--op", "delete", "--force", "--mode", "target", "--tid", str(tid), check=False)
