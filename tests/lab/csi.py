"""The lab's CSI plugin, placed as in a cluster: the controller service on this machine (next
to the operator, on a unix socket in the lab folder) and the node service inside the lab's
KVM guest, reached from this machine through the guest NIC's loopback port forward.

`make lab-up LAB_SERVICES=1`, `make sanity` and the integration tests start them with the
same functions here. Inside the guest, `prepare_guest` brings the NIC up and mounts the
writable share (see tests/lab/libvirt.py), and `start_node_service` runs `lunbridge-csi
--mode node` in the background with this machine's Python and checkout (the guest's root
is this machine's, read-only); its log stays in the guest (`node_service_log`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from tests.lab import guest as guest_lab
from tests.lab import libvirt as libvirt_lab
from tests.lab import paths, procs
from tests.lab.guest import AgentGuest
from tests.lab.procs import LabError

CONTROLLER = "csi-controller"
NODE_LOG = "/run/lunbridge-csi-node.log"
NODE_PID = "/run/lunbridge-csi-node.pid"
SANITY_VOLUME_SIZE = 64 << 20
# the guest is slow (TCG, one vCPU): importing grpc and the plugin takes 20-60 s there, more on a
# busy machine; a plugin that died ends the wait at once (`wait_ready`'s `alive`)
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0  # SIGTERM's graceful stop, then SIGKILL
# what lunbridge's code needs to run in the guest with this machine's Python and checkout
GUEST_ENV = {
    "PYTHONPATH": f"{paths.REPO_DIR}:{paths.REPO_DIR / 'csi'}",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


def staging_dir(lab_dir: Path) -> Path:
    """Where a CO puts NodeStage's staging folders: the same path here and in the guest."""
    return libvirt_lab.csi_share_dir(lab_dir) / "staging"


def mount_dir(lab_dir: Path) -> Path:
    """Where a CO puts NodePublish's target paths: the same path here and in the guest."""
    return libvirt_lab.csi_share_dir(lab_dir) / "mount"


def controller_socket(lab_dir: Path) -> Path:
    return guest_lab.socket_dir(lab_dir) / "csi-controller.sock"  # a short path: sockets are limited


def prepare_guest(guest: AgentGuest, lab_dir: Path) -> None:
    """The guest's NIC up at slirp's address, and the writable share at its own path (idempotent)."""
    share = shlex.quote(str(libvirt_lab.csi_share_dir(lab_dir)))
    script = f"""set -e
ip link set lo up
ip link set eth0 up
ip -4 addr show dev eth0 | grep -q 'inet ' || ip addr add {libvirt_lab.GUEST_ADDRESS} dev eth0
mkdir -p {share}  # hidden by the guest's tmpfs when the lab is under /tmp
grep -q " {share} 9p " /proc/mounts || \
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {libvirt_lab.CSI_SHARE_TAG} {share}
"""
    result = guest.run(["/bin/sh", "-c", script], timeout=30)
    if result.returncode != 0:
        raise LabError(f"preparing the guest for the node service failed: {result.stderr.strip()}")


def start_node_service(
    guest: AgentGuest, address: str, *, node_name: str | None = None, kubeconfig: Path | None = None,
    extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """`lunbridge-csi --mode node` in the guest (restarted if it runs); waits until `address`
    (this machine's end of the port forward) answers CSI calls. The lab prepared the guest
    (`prepare_guest`) when it booted. With `node_name` and `kubeconfig` (the lab's
    `kube.guest_kubeconfig_path`), its node channel watches the API for the node's work; `env`
    adds to its environment (`iscsi.guest_env()` for a node that logs in itself)."""
    stop_node_service(guest)
    argv = [sys.executable, "-m", "lunbridge_csi", "--mode", "node",
            "--endpoint", f"tcp://0.0.0.0:{libvirt_lab.GUEST_CSI_PORT}", *extra]  # fmt: skip
    env = {**GUEST_ENV, **(env or {})}
    if node_name is not None:
        argv += ["--node-name", node_name]
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    script = f"setsid {shlex.join(argv)} </dev/null >{NODE_LOG} 2>&1 & echo $! >{NODE_PID}"
    result = guest.run(["/bin/sh", "-c", script], timeout=30, env=env)
    if result.returncode != 0:
        raise LabError(f"starting the node service in the guest failed: {result.stderr.strip()}")
    try:
        wait_ready(address, READY_TIMEOUT, alive=lambda: node_service_running(guest))
    except LabError as exc:
        raise LabError(f"{exc}\n--- {NODE_LOG} in the guest ---\n{node_service_log(guest)}") from None


def guest_kubeconfig_path(lab_dir: Path) -> Path:
    """The guest node plugin's kubeconfig (`kube.write_guest_kubeconfig`), in the writable share."""
    return libvirt_lab.csi_share_dir(lab_dir) / "kubeconfig"


def node_channel(state: Any) -> dict[str, Any]:
    """`start_node_service`'s arguments for the node channel of the lab's guest (a LabState)."""
    return {"node_name": state.guest_node, "kubeconfig": guest_kubeconfig_path(Path(state.lab_dir))}


def start_initiator_node_service(guest: AgentGuest, state: Any) -> None:
    """The guest's node plugin as a node that logs in itself (`--attach-mode initiator`, its
    node channel publishing its LunbridgeNode, open-iscsi on its PATH); iscsid must run
    (`iscsi.start_iscsid`)."""
    from tests.lab import iscsi

    start_node_service(guest, state.node_endpoint, extra=("--attach-mode", "initiator"),
                       env=iscsi.guest_env(), **node_channel(state))  # fmt: skip


def node_service_running(guest: AgentGuest) -> bool:
    script = f"[ -s {NODE_PID} ] && kill -0 $(cat {NODE_PID}) 2>/dev/null"
    return guest.run(["/bin/sh", "-c", script], timeout=30).returncode == 0


def stop_node_service(guest: AgentGuest) -> None:
    """The node service stopped and gone: a graceful stop (SIGTERM), SIGKILL after STOP_TIMEOUT.
    A plugin still exiting would hold the guest's one vCPU, and its port, while the next starts."""
    script = f"""[ -s {NODE_PID} ] || exit 0
pid=$(cat {NODE_PID})
kill $pid 2>/dev/null
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt {int(STOP_TIMEOUT)} ]; do sleep 1; i=$((i+1)); done
if kill -0 $pid 2>/dev/null; then
  echo "still running after {int(STOP_TIMEOUT)}s: SIGKILL" >&2; kill -9 $pid; sleep 1
fi
rm -f {NODE_PID}
! kill -0 $pid 2>/dev/null
"""
    result = guest.run(["/bin/sh", "-c", script], timeout=STOP_TIMEOUT + 30)
    if result.returncode != 0:
        raise LabError(f"stopping the node service in the guest failed: {result.stderr.strip()}")


def node_service_log(guest: AgentGuest, lines: int = 40) -> str:
    return guest.run(["tail", "-n", str(lines), NODE_LOG], timeout=30).stdout


def start_plugin(
    env: dict[str, str], lab_dir: Path, endpoint: str, *args: str, name: str = CONTROLLER
) -> None:
    """`lunbridge-csi --endpoint ENDPOINT ARGS` on this machine (lab process `name`), as a user
    would start it with `env`; returns once it answers CSI calls."""
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    argv = [sys.executable, "-m", "lunbridge_csi", "--endpoint", endpoint, "--timeout", "120", *args]
    procs.spawn(lab_dir, name, argv, env=env)
    try:
        wait_ready(endpoint.removeprefix("tcp://"), 30)
    except LabError as exc:
        procs.stop(lab_dir, name)
        raise LabError(f"{exc}\n{procs.tail(procs.log_file(lab_dir, name))}") from None


def start_controller(env: dict[str, str], lab_dir: Path) -> str:
    """`lunbridge-csi --mode controller` on a unix socket in the lab folder; its endpoint."""
    endpoint = f"unix://{controller_socket(lab_dir)}"
    start_plugin(env, lab_dir, endpoint, "--mode", "controller")
    return endpoint


def stop_controller(lab_dir: Path) -> None:
    procs.stop(lab_dir, CONTROLLER, timeout=15)


def wait_ready(address: str, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    """Until a CSI Probe through `address` answers (a forwarded port accepts connections even
    when nothing listens behind it, so only a real answer counts); LabError after `timeout`
    seconds, or as soon as `alive()` (asked every few seconds) says the plugin exited."""
    from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc

    deadline = time.monotonic() + timeout
    last = ""
    next_check = time.monotonic() + 5
    while time.monotonic() < deadline:
        if alive is not None and time.monotonic() >= next_check:
            if not alive():
                raise LabError(f"the CSI plugin behind {address} exited before it answered ({last})")
            next_check = time.monotonic() + 5
        with grpc.insecure_channel(address) as channel:
            stub = csi_pb2_grpc.IdentityStub(channel)  # type: ignore[no-untyped-call]
            try:
                stub.Probe(csi_pb2.ProbeRequest(), timeout=5)
                return
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
        time.sleep(0.5)
    raise LabError(f"the CSI plugin at {address} did not answer within {timeout:.0f}s ({last})")


def services_env(lab_dir: Path, node_endpoint: str) -> dict[str, str]:
    """What a lab with services exports about them (.lab/env), and what `sanity_argv` reads."""
    return {
        "LUNBRIDGE_CSI_CONTROLLER_ENDPOINT": f"unix://{controller_socket(lab_dir)}",
        "LUNBRIDGE_CSI_NODE_ENDPOINT": node_endpoint,
        "LUNBRIDGE_GUEST_STAGING_DIR": str(staging_dir(lab_dir)),
        "LUNBRIDGE_GUEST_MOUNT_DIR": str(mount_dir(lab_dir)),
    }


def sanity_argv(env: Mapping[str, str], *extra: str) -> list[str]:
    """csi-sanity against the endpoints of `services_env`, with staging and target folders of
    its own inside the lab's (`csi-sanity` in each, whose parents this makes): csi-sanity
    makes and removes them for every spec and refuses to start when one exists, and the lab's
    folders are shared with whatever else stages volumes there (tests, `make demo`)."""
    keys = ("LUNBRIDGE_GUEST_STAGING_DIR", "LUNBRIDGE_GUEST_MOUNT_DIR")
    folders = [Path(env[key]) / "csi-sanity" for key in keys]
    for folder in folders:
        folder.parent.mkdir(parents=True, exist_ok=True)
    return [
        str(paths.bin_dir() / "csi-sanity"),
        f"--csi.endpoint={env['LUNBRIDGE_CSI_NODE_ENDPOINT']}",
        f"--csi.controllerendpoint={env['LUNBRIDGE_CSI_CONTROLLER_ENDPOINT']}",
        f"--csi.stagingdir={folders[0]}",
        f"--csi.mountdir={folders[1]}",
        f"--csi.testvolumesize={SANITY_VOLUME_SIZE}",
        "--ginkgo.no-color",
        *extra,
    ]
