"""`make lab-up` / `make lab-down` through the same entry point (`python -m tests.lab`):
a second `up` starts nothing new, and `down` leaves no process and no tgtd target."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.lab import lab, libvirt, procs, tgt
from tests.lab.paths import REPO_DIR

PEERS = ("etcd", "kube-apiserver", "kube-controller-manager", "tgtd", "vcsim", "libvirtd")


def _lab(command: str, lab_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", command, f"--lab-dir={lab_dir}"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pids(lab_dir: Path) -> dict[str, int | None]:
    return {name: procs.read_pid(lab_dir, name) for name in PEERS}


def test_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    first = _lab("up", lab_dir)
    assert first.returncode == 0, first.stderr
    pids = _pids(lab_dir)
    assert all(pids.values()), pids
    state = lab.load(lab_dir)
    assert state is not None
    env_text = (lab_dir / "env").read_text()
    for key in ("KUBECONFIG", "LUNBRIDGE_VSPHERE_URL", "LUNBRIDGE_VSPHERE_USER", "LUNBRIDGE_VSPHERE_PASSWORD",
                "LUNBRIDGE_TGT_PORTAL", "LUNBRIDGE_TGT_CONTROL_PORT", "PATH",
                "LUNBRIDGE_LIBVIRT_URI", "LUNBRIDGE_HOST_IQN", "LUNBRIDGE_GUEST_NODE"):  # fmt: skip
        assert f"export {key}=" in env_text

    guest_qemu = _qemu_of(lab_dir)
    assert guest_qemu is not None, "the libvirt guest's QEMU does not run"

    second = _lab("up", lab_dir)
    assert second.returncode == 0, second.stderr
    assert "lab already up" in second.stdout
    assert _pids(lab_dir) == pids

    # a target left on tgtd must be gone after down, together with every process
    state.tgt.adm(
        "--op", "new", "--mode", "target", "--tid", "42", "-T", "iqn.2024-01.io.lunbridge.lab:leftover"
    )
    assert tgt.target_ids(state.tgt) == [42]

    down = _lab("down", lab_dir)
    assert down.returncode == 0, down.stderr
    for name, pid in pids.items():
        assert pid is not None
        assert not _running(pid), f"{name} (pid {pid}) still runs after lab down"
    assert not _running(guest_qemu), "the libvirt guest's QEMU still runs after lab down"
    assert not Path(f"/var/run/tgtd/socket.{state.tgt_control}").exists() or (
        state.tgt.adm("--op", "show", "--mode", "target", check=False).stdout == ""
    )
    assert _lab("status", lab_dir).returncode == 1


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _qemu_of(lab_dir: Path) -> int | None:
    """The PID of the QEMU the lab's libvirtd runs its guest in (found by its SMBIOS UUID)."""
    uuid = libvirt.domain_uuid(lab_dir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"qemu-system-x86_64") and uuid in argv:
            return int(proc.name)
    return None
