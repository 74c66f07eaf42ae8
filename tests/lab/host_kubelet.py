"""A second real kubelet, on this machine (`kubelet.start_host`): the Node `lab-host`, where the
chart's operator and controller pods run with hostNetwork and hostPath, because they must reach
the lab's peers that only this machine has (tgtd's control socket, libvirtd's socket, vcsim
and the API server on loopback).

This machine differs from a cluster node in two ways the lab works around, both measured
(../shared/notes/kubelet.md): its cgroups are v1 (kubelet 1.35 runs on them only with
`failCgroupV1: false`), and root here lacks CAP_SYS_RESOURCE, so runc cannot give a container
the negative oom_score_adj the kubelet asks for pod sandboxes (-998): containerd runs runc
through a wrapper that sets those to 0 in the bundle's config.json. Everything else is the
stock kubelet and containerd, with their own folders under the lab folder and a private
containerd socket; `stop` kills every container, unmounts what containerd mounted and
removes the kubelet's cgroups, so nothing of it stays on this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.lab import guest as guest_lab
from tests.lab import kube, paths, procs
from tests.lab.procs import LabError

NODE_NAME = "lab-host"
# only what tolerates it runs here (lunbridge's operator and controller): workloads go to the guest
TAINT = {"key": "lunbridge.io/lab-host", "effect": "NoSchedule"}
# what this machine's containerd holds: the pause image and the operator's and controller's
HOST_IMAGES = ("pause", "lunbridge", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter",
               "livenessprobe", "csi-external-health-monitor-controller")  # fmt: skip
CONTAINERD = "host-containerd"
KUBELET = "host-kubelet"
# what the kubelet sets on its machine at start (pkg/kubelet/cm, setupKernelTunables): kept and
# given back by `stop`, since this machine is not a node
KERNEL_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")  # fmt: skip
RUNC_WRAPPER = """#!/bin/sh
# runc, with every negative oomScoreAdj of a container set to 0 (root here lacks CAP_SYS_RESOURCE)
prev=
for arg in "$@"; do
  if [ "$prev" = --bundle ] || [ "$prev" = -b ]; then
    sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$arg/config.json" 2>/dev/null
  fi
  prev=$arg
done
exec runc "$@"
"""


def root(lab_dir: Path) -> Path:
    return lab_dir / "host-kubelet"


def pod_logs_dir(lab_dir: Path) -> Path:
    """Where this kubelet writes its pods' logs (<namespace>_<pod>_<uid>/<container>/N.log)."""
    return root(lab_dir) / "pods"


def containerd_socket(lab_dir: Path) -> Path:
    return guest_lab.socket_dir(lab_dir) / "containerd.sock"  # a short path: sockets are limited


def _ctr(lab_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", "--address", str(containerd_socket(lab_dir)), "-n", "k8s.io", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def start(state: Any) -> None:
    """containerd and the kubelet here (kept if they run), with HOST_IMAGES imported; returns
    when the Node `lab-host` is Ready."""
    from tests.lab import kubelet

    lab_dir = Path(state.lab_dir)
    base = root(lab_dir)
    (base / "net.d").mkdir(parents=True, exist_ok=True)
    saved = base / "kernel-tunables.json"
    if not saved.exists():
        saved.write_text(
            json.dumps({key: Path("/proc/sys", key).read_text().strip() for key in KERNEL_TUNABLES})
        )
    wrapper = base / "runc"
    wrapper.write_text(RUNC_WRAPPER)
    wrapper.chmod(0o755)
    (base / "containerd.toml").write_text(
        kubelet.containerd_config(
            root=base / "containerd", state=base / "containerd-state", socket=containerd_socket(lab_dir),
            cni_conf_dir=base / "net.d", runc=wrapper,
        )
    )  # fmt: skip
    # only hostNetwork pods run here: the network is never set up, but containerd wants one
    (base / "net.d" / "10-lab-host.conflist").write_text(
        json.dumps(kubelet.cni_config("lab-host-pods", "lbhost0", "10.245.0.0/24", base / "ipam"))
    )
    if procs.read_pid(lab_dir, CONTAINERD) is None:
        procs.spawn(lab_dir, CONTAINERD, ["containerd", "--config", str(base / "containerd.toml")])
        _wait_containerd(lab_dir)
    import_images(lab_dir, [kubelet.images_dir() / f"{name}.tar" for name in HOST_IMAGES])
    config = kubelet.kubelet_config(containerd_socket(lab_dir))
    _make_cgroups(lab_dir)
    config.update(
        cgroupRoot=cgroup_root(lab_dir), failCgroupV1=False, healthzPort=0, podCIDR="10.245.0.0/24",
        podLogsDir=str(pod_logs_dir(lab_dir)), registerWithTaints=[TAINT],
    )  # fmt: skip
    (base / "kubelet.yaml").write_text(json.dumps(config, indent=2))
    if procs.read_pid(lab_dir, KUBELET) is None:
        argv = [str(paths.bin_dir() / "kubelet"), f"--config={base / 'kubelet.yaml'}",
                f"--kubeconfig={kube.kubeconfig_path(lab_dir)}", f"--root-dir={base / 'root'}",
                f"--cert-dir={base / 'pki'}", f"--hostname-override={NODE_NAME}",
                "--node-ip=127.0.0.1", "--v=1"]  # fmt: skip
        procs.spawn(lab_dir, KUBELET, argv)
    kubelet.wait_ready(state, NODE_NAME, lambda: procs.tail(procs.log_file(lab_dir, KUBELET), 30))


def import_images(lab_dir: Path, archives: list[Path]) -> None:
    """Import OCI archives (hack/image/build.sh) into this machine's lab containerd."""
    for archive in archives:
        if not archive.is_file():
            raise LabError(f"{archive} is missing: run `make image` first")
        result = _ctr(lab_dir, "images", "import", str(archive))
        if result.returncode != 0:
            raise LabError(f"importing {archive.name} here failed: {result.stderr.strip()}")


def _wait_containerd(lab_dir: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _ctr(lab_dir, "version", timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    raise LabError(f"containerd here does not answer:\n{procs.tail(procs.log_file(lab_dir, CONTAINERD))}")


def stop(lab_dir: Path) -> None:
    """Stop the kubelet, every container it ran, containerd; unmount and remove what they left."""
    procs.stop(lab_dir, KUBELET, timeout=15)
    if procs.read_pid(lab_dir, CONTAINERD) is not None:
        for task in _ctr(lab_dir, "tasks", "ls", "-q", timeout=30).stdout.split():
            _ctr(lab_dir, "tasks", "kill", "-s", "SIGKILL", task, timeout=30)
        deadline = time.monotonic() + 15
        while _ctr(lab_dir, "tasks", "ls", "-q", timeout=30).stdout.strip() and time.monotonic() < deadline:
            for task in _ctr(lab_dir, "tasks", "ls", "-q", timeout=30).stdout.split():
                _ctr(lab_dir, "tasks", "delete", "-f", task, timeout=30)
            time.sleep(0.2)
        procs.stop(lab_dir, CONTAINERD, timeout=15)
    base = str(root(lab_dir).resolve())
    for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
        point = mount.split()[1]
        if point.startswith(base + "/"):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    _remove_cgroups(lab_dir)
    for link in Path("/var/log/containers").glob("*.log"):  # the kubelet's fixed folder of links
        if link.is_symlink() and str(link.readlink()).startswith(str(pod_logs_dir(lab_dir))):
            link.unlink()
    saved = root(lab_dir) / "kernel-tunables.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)
        saved.unlink()


def cgroup_root(lab_dir: Path) -> str:
    """This lab's own cgroup under which the kubelet makes `kubepods` (cgroupRoot), so that two
    labs' kubelets on one machine never share or remove each other's cgroups."""
    return "/lunbridge-lab-" + hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:10]


def _hierarchies() -> list[Path]:
    """The v1 hierarchies (and the v2 one of a hybrid layout) under /sys/fs/cgroup."""
    return [h for h in Path("/sys/fs/cgroup").iterdir() if (h / "cgroup.procs").exists()]


def _make_cgroups(lab_dir: Path) -> None:
    for hierarchy in _hierarchies():
        (hierarchy / cgroup_root(lab_dir).lstrip("/")).mkdir(exist_ok=True)


def _remove_cgroups(lab_dir: Path) -> None:
    """The lab's cgroup root with everything the kubelet made in it, in every hierarchy (deepest
    first; empty by now)."""
    for hierarchy in _hierarchies():
        top = hierarchy / cgroup_root(lab_dir).lstrip("/")
        if not top.is_dir():
            continue
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
