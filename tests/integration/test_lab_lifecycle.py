"""`make lab-up` / `make lab-down` through the same entry point (`python -m tests.lab`):
a second `up` starts nothing new; plain `up` starts none of lunbridge's services, `up` with
LAB_SERVICES=1 starts them and exports their endpoints, and `sanity` (`make sanity`) passes
against them (some specs, chosen with SANITY_ARGS); `down` leaves no process and no tgtd target."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import csi, lab, libvirt, pool, procs, tgt
from tests.lab.paths import REPO_DIR

PEERS = ("etcd", "kube-apiserver", "kube-controller-manager", "tgtd", "vcsim", "libvirtd")


SANITY_FOCUS = "GetCapabilities|NodeGetInfo"
SERVICE_VARIABLES = ("LUNBRIDGE_CSI_CONTROLLER_ENDPOINT", "LUNBRIDGE_CSI_NODE_ENDPOINT",
                     "LUNBRIDGE_GUEST_STAGING_DIR", "LUNBRIDGE_GUEST_MOUNT_DIR")  # fmt: skip


def _lab(
    command: str, lab_dir: Path, services: bool = False, **more: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_SERVICES": "1" if services else "0", **more}
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", command, f"--lab-dir={lab_dir}"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _pids(lab_dir: Path) -> dict[str, int | None]:
    return {name: procs.read_pid(lab_dir, name) for name in PEERS}


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    """A lab folder of the test's own; whatever the test leaves running there is stopped."""
    folder = tmp_path / "lab"
    yield folder
    lab.down(folder)


def test_up_twice_then_down_leaves_nothing(lab_dir: Path) -> None:
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
    assert pool.mounted(lab_dir), "the reflink pool is not mounted"
    assert pool.image(lab_dir).exists()

    second = _lab("up", lab_dir)
    assert second.returncode == 0, second.stderr
    assert "lab already up" in second.stdout
    assert _pids(lab_dir) == pids
    assert not any(procs.read_pid(lab_dir, name) for name in lab.SERVICES)
    assert not any(key in env_text for key in SERVICE_VARIABLES)

    with_services = _lab("up", lab_dir, services=True)
    assert with_services.returncode == 0, with_services.stderr
    assert _pids(lab_dir) == pids  # the peers stay; the services come on top
    services = {name: procs.read_pid(lab_dir, name) for name in lab.SERVICES}
    assert all(services.values()), services
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in (lab_dir / "env").read_text().splitlines()
    )
    for key in SERVICE_VARIABLES:
        assert exported.get(key), f"{key} is not in .lab/env"
    csi.wait_ready(exported["LUNBRIDGE_CSI_NODE_ENDPOINT"], 10)  # reachable from this machine
    # the entry point, on a few specs (tests/integration/csi_sanity runs them all)
    sanity = _lab("sanity", lab_dir, SANITY_ARGS=f"--ginkgo.focus='{SANITY_FOCUS}'")
    assert sanity.returncode == 0, sanity.stdout[-4000:] + sanity.stderr[-2000:]
    ran = re.search(r"Ran (\d+) of (\d+) Specs", sanity.stdout)
    assert ran is not None, sanity.stdout[-4000:]
    assert 0 < int(ran[1]) < int(ran[2]), ran[0]  # SANITY_ARGS reached csi-sanity
    assert "0 Failed" in sanity.stdout

    # a target left on tgtd must be gone after down, together with every process
    state.tgt.adm(
        "--op", "new", "--mode", "target", "--tid", "42", "-T", "iqn.2024-01.io.lunbridge.lab:leftover"
    )
    assert 42 in tgt.target_ids(state.tgt)  # beside the igroups the operator made during sanity

    down = _lab("down", lab_dir)
    assert down.returncode == 0, down.stderr
    for name, pid in {**pids, **services}.items():
        assert pid is not None
        assert not _running(pid), f"{name} (pid {pid}) still runs after lab down"
    assert not _running(guest_qemu), "the libvirt guest's QEMU still runs after lab down"
    # no tgtd answers on the lab's control socket any more (a failed `show` printed "" too, so
    # the old `stdout == ""` check passed whether or not a tgtd still held the target)
    shown = state.tgt.adm("--op", "show", "--mode", "target", check=False)
    assert shown.returncode != 0, f"a tgtd still answers after lab down: {shown.stdout}"
    assert _lab("status", lab_dir).returncode == 1
    assert not pool.mounted(lab_dir), "the pool is still mounted after lab down"
    assert not pool.image(lab_dir).exists(), "the pool's image is still there after lab down"


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
