"""Real kubelets in the lab (`make lab-up LAB_KUBELET=1`, or `start` on a running lab):
kube-scheduler beside the API server, and containerd + a kubelet inside the KVM guest,
registered as the guest's Node, so that pods (the chart's node DaemonSet, workloads with
PVCs) run where the SCSI bus is and the kubelet itself calls the node plugin.

Facts this rests on (../shared/notes/kubelet.md, measured): Debian's containerd 1.6 and runc,
the kubelet from hack/peers/build-k8s.sh; the guest's root is this machine's, read-only over
9p, so the guest runs those binaries unchanged and keeps every writable folder the kubelet
and containerd need on its own tmpfs (mount points made here, empty, on this machine); the
guest mounts cgroup v2 and makes / shared (Bidirectional mount propagation). The guest
reaches the API server through its NIC's guestfwd (kube.GUEST_APISERVER); the in-cluster
address every pod is given (the `kubernetes` Service, KUBERNETES_SERVICE) is led there by
one DNAT rule, the lab's whole kube-proxy. Pods get a CNI bridge with host-local addresses.
Images come from `make image` (hack/image/build.sh) as uncompressed OCI archives, unpacked
here and given to the guest as a disk (tests/lab/image_seed.py); nothing is pulled.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.lab import image_seed, kube, paths, procs
from tests.lab import libvirt as libvirt_lab
from tests.lab.guest import AgentGuest
from tests.lab.procs import LabError

SCHEDULER = "kube-scheduler"
# the guest's writable folders the kubelet and CNI need (tmpfs each), and containerd's root: a
# disk with the images already unpacked (image_seed: importing them in the guest is far too slow)
GUEST_TMPFS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/var/lib/cni")
CONTAINERD_ROOT = "/var/lib/containerd"
# what the guest's containerd holds: the pause image, the node DaemonSet's and a workload's
GUEST_IMAGES = ("pause", "lunbridge", "csi-node-driver-registrar", "livenessprobe", "lab-busybox")
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CONTAINERD_PID = "/run/lab-containerd.pid"
KUBELET_PID = "/run/lab-kubelet.pid"
CONTAINERD_LOG = "/run/lab-containerd.log"
KUBELET_LOG = "/run/lab-kubelet.log"
PAUSE_IMAGE = "localhost/lunbridge/pause:3.10.1"  # hack/image/build.sh
POD_CIDR = "10.244.0.0/24"
KUBERNETES_SERVICE = ("10.96.0.1", 443)  # the first address of kube.py's service range
NODE_READY_TIMEOUT = 180.0  # TCG: the kubelet alone takes ~12 s to start


def wanted() -> bool:
    return os.environ.get("LAB_KUBELET", "0").strip() not in ("", "0")


def images_dir() -> Path:
    """Where hack/image/build.sh leaves each image as an uncompressed OCI archive."""
    return paths.cache_dir() / "images"


def config_dir(lab_dir: Path) -> Path:
    """containerd's, the kubelet's and CNI's configuration: written here, read by the guest at
    the same path (the lab's writable share)."""
    return libvirt_lab.csi_share_dir(lab_dir) / "kubelet"


def start(state: Any, guest: AgentGuest) -> None:
    """kube-scheduler and a kubelet here (host_kubelet), containerd + a kubelet in the guest of
    `state` (a LabState; `guest`, its agent), each kept if it runs; returns when both Nodes are
    Ready."""
    from tests.lab import host_kubelet

    lab_dir = Path(state.lab_dir)
    if not state.libvirt_uri:
        raise LabError("real kubelets need the lab's KVM guest: unset LAB_GUEST=0")
    start_scheduler(lab_dir)
    for folder in (*GUEST_TMPFS, CONTAINERD_ROOT):
        Path(folder).mkdir(parents=True, exist_ok=True)  # the guest's mount points (its / is ours)
    _write_configs(lab_dir, state)
    image_seed.attach(
        guest, lab_dir, [images_dir() / f"{name}.tar" for name in GUEST_IMAGES], CONTAINERD_ROOT
    )
    _start_in_guest(guest, lab_dir)
    _start_kubelet(guest, lab_dir, state.guest_node)
    host_kubelet.start(state)  # meanwhile the guest's kubelet starts (TCG: slow)
    wait_node_ready(state, guest)


def start_scheduler(lab_dir: Path) -> None:
    if procs.read_pid(lab_dir, SCHEDULER) is not None:
        return
    port = procs.free_port()
    argv = [str(paths.bin_dir() / SCHEDULER), f"--kubeconfig={kube.kubeconfig_path(lab_dir)}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={port}", "--v=1"]  # fmt: skip
    procs.spawn(lab_dir, SCHEDULER, argv)
    procs.wait_port("127.0.0.1", port, 60, SCHEDULER, lab_dir)


def stop(lab_dir: Path) -> None:
    """Stop the kubelet here with its containers (host_kubelet.stop) and kube-scheduler; the
    guest's kubelet and containerd go with the guest (or `stop_in_guest`)."""
    from tests.lab import host_kubelet

    host_kubelet.stop(lab_dir)
    procs.stop(lab_dir, SCHEDULER, timeout=15)


def _write_configs(lab_dir: Path, state: Any) -> None:
    folder = config_dir(lab_dir)
    (folder / "net.d").mkdir(parents=True, exist_ok=True)
    (folder / "containerd.toml").write_text(
        containerd_config(root=Path(CONTAINERD_ROOT), state=Path("/run/containerd"),
                          socket=Path(CONTAINERD_SOCKET), cni_conf_dir=folder / "net.d")
    )  # fmt: skip
    network = cni_config("lab-pods", "cni0", POD_CIDR, Path("/run/cni-ipam"))
    (folder / "net.d" / "10-lab-pods.conflist").write_text(json.dumps(network, indent=2))
    config = kubelet_config(Path(CONTAINERD_SOCKET))
    config["podCIDR"] = POD_CIDR
    (folder / "kubelet.yaml").write_text(json.dumps(config, indent=2))
    endpoints = kube.KubeEndpoints(etcd_port=state.etcd_port, apiserver_port=state.apiserver_port,
                                   token=state.token)  # fmt: skip
    kube.write_guest_kubeconfig(lab_dir, endpoints, folder / "kubeconfig")


def containerd_config(
    *, root: Path, state: Path, socket: Path, cni_conf_dir: Path, runc: Path | None = None
) -> str:
    """containerd 1.6's configuration for a kubelet: its folders and socket, CRI with the
    overlayfs snapshotter, runc (or `runc`, a wrapper) with cgroupfs, the local pause image,
    Debian's CNI plugins."""
    binary = f'\n        BinaryName = "{runc}"' if runc else ""
    return f"""version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false{binary}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf_dir}"
"""


def cni_config(name: str, bridge: str, subnet: str, ipam_dir: Path) -> dict[str, Any]:
    """A CNI bridge network (gateway on the bridge, the pods' default route) with host-local
    addresses."""
    ipam = {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(ipam_dir),
            "routes": [{"dst": "0.0.0.0/0"}]}  # fmt: skip
    return {
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False, "ipam": ipam},
            {"type": "loopback"},
        ],
    }


def kubelet_config(containerd_socket: Path) -> dict[str, Any]:
    """The lab kubelets' KubeletConfiguration: cgroupfs, no API server of its own (no logs or
    exec through it), no swap check, eviction only when really short (the guest's folders are
    tmpfs in its RAM), no image garbage collection (images are imported, never pulled), volume
    stats asked for often, with their volume conditions posted as pod Events (CSIVolumeHealth),
    pods synced often."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{containerd_socket}",
        "failSwapOn": False,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "readOnlyPort": 0,
        "enableServer": False,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": False,
        "resolvConf": "",
        "registerNode": True,
        "nodeStatusReportFrequency": "20s",
        "volumeStatsAggPeriod": "10s",  # NodeGetVolumeStats every 10 s, not every minute
        "featureGates": {"CSIVolumeHealth": True},  # an abnormal volume condition -> a pod Event
        # a running pod's volumes are looked at again (NodeExpandVolume after a PVC grew) when
        # the pod is synced: every 10 s, not every minute
        "syncFrequency": "10s",
    }


def _start_in_guest(guest: AgentGuest, lab_dir: Path) -> None:
    """cgroup v2, shared /, the tmpfs folders, the in-cluster API address, containerd."""
    folder = config_dir(lab_dir)
    api_host, api_port = kube.GUEST_APISERVER
    service_host, service_port = KUBERNETES_SERVICE
    tmpfs = " ".join(shlex.quote(d) for d in GUEST_TMPFS)
    address = libvirt_lab.GUEST_ADDRESS.split("/")[0]
    script = f"""set -e
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
echo '+cpu +memory +pids +io +cpuset' > /sys/fs/cgroup/cgroup.subtree_control
mount --make-rshared /
for d in {tmpfs}; do grep -q " $d tmpfs " /proc/mounts || mount -t tmpfs -o mode=755 tmpfs "$d"; done
sysctl -qw net.ipv4.ip_forward=1
rule() {{ iptables -t nat -C "$@" 2>/dev/null || iptables -t nat -A "$@"; }}
# the in-cluster API address: routed first, then led to the API server, from this node (OUTPUT)
# and from its pods (PREROUTING); pods' packets leave with the node's address (slirp answers
# only that one)
ip route replace {service_host}/32 dev eth0
rule OUTPUT -d {service_host} -p tcp --dport {service_port} -j DNAT --to-destination {api_host}:{api_port}
rule PREROUTING -d {service_host} -p tcp --dport {service_port} -j DNAT --to-destination {api_host}:{api_port}
rule POSTROUTING -s {POD_CIDR} -o eth0 -j SNAT --to-source {address}
if [ -s {CONTAINERD_PID} ] && kill -0 "$(cat {CONTAINERD_PID})" 2>/dev/null; then exit 0; fi
setsid containerd --config {shlex.quote(str(folder / "containerd.toml"))} </dev/null >{CONTAINERD_LOG} 2>&1 &
echo $! > {CONTAINERD_PID}
for i in $(seq 150); do ctr --address {CONTAINERD_SOCKET} version >/dev/null 2>&1 && exit 0; sleep 0.2; done
echo "containerd does not answer: $(tail -5 {CONTAINERD_LOG})" >&2; exit 1
"""
    result = guest.run(["/bin/sh", "-c", script], timeout=120)
    if result.returncode != 0:
        raise LabError(
            f"preparing the guest for its kubelet failed: {(result.stderr or result.stdout).strip()}"
        )


def import_images(guest: AgentGuest, archives: list[Path]) -> None:
    """Import OCI archives (hack/image/build.sh) into the guest's containerd, for the kubelet."""
    for archive in archives:
        if not archive.is_file():
            raise LabError(f"{archive} is missing: run `make image` first")
        argv = ["ctr", "--address", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import",
                str(archive)]  # fmt: skip
        result = guest.run(argv, timeout=300)
        if result.returncode != 0:
            raise LabError(f"importing {archive.name} into the guest failed: {result.stderr.strip()}")


def _start_kubelet(guest: AgentGuest, lab_dir: Path, node_name: str) -> None:
    folder = config_dir(lab_dir)
    address = libvirt_lab.GUEST_ADDRESS.split("/")[0]
    argv = ["kubelet", f"--config={folder / 'kubelet.yaml'}", f"--kubeconfig={folder / 'kubeconfig'}",
            f"--hostname-override={node_name}", f"--node-ip={address}", "--v=1"]  # fmt: skip
    kubelet = shlex.join([str(paths.bin_dir() / argv[0]), *argv[1:]])
    script = f"""if [ -s {KUBELET_PID} ] && kill -0 "$(cat {KUBELET_PID})" 2>/dev/null; then exit 0; fi
setsid {kubelet} </dev/null >{KUBELET_LOG} 2>&1 & echo $! > {KUBELET_PID}"""
    result = guest.run(["/bin/sh", "-c", script], timeout=30)
    if result.returncode != 0:
        raise LabError(f"starting the guest's kubelet failed: {result.stderr.strip()}")


def stop_in_guest(guest: AgentGuest) -> None:
    """Stop the guest's kubelet and containerd (pods' containers stay until the guest goes)."""
    script = f"""for p in {KUBELET_PID} {CONTAINERD_PID}; do
  [ -s $p ] && kill "$(cat $p)" 2>/dev/null; rm -f $p
done; true"""
    guest.run(["/bin/sh", "-c", script], timeout=30)


def guest_log(guest: AgentGuest, which: str = KUBELET_LOG, lines: int = 30) -> str:
    return guest.run(["tail", "-n", str(lines), which], timeout=30).stdout


def wait_node_ready(state: Any, guest: AgentGuest, timeout: float = NODE_READY_TIMEOUT) -> None:
    """Until the guest's Node reports Ready True (see `wait_ready`)."""
    wait_ready(state, state.guest_node, lambda: guest_log(guest), timeout)


def wait_ready(
    state: Any, node: str, kubelet_log: Callable[[], str], timeout: float = NODE_READY_TIMEOUT
) -> None:
    """Until `node` reports Ready True (its kubelet registered, its runtime and network are
    ready), then without the not-ready taint it registered with; `kubelet_log` tells why not."""
    from tests.lab import lab

    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        result = lab.kubectl(state, "get", "node", node, "-o", "json")
        if result.returncode == 0:
            conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
            ready = [c for c in conditions if c.get("type") == "Ready"]
            if ready and ready[0].get("status") == "True":
                _untaint_ready(state, node)
                return
            said = ready[0].get("message", "") if ready else "no Ready condition yet"
        time.sleep(1)
    raise LabError(f"Node {node} not Ready within {timeout:.0f}s ({said})\n--- kubelet ---\n{kubelet_log()}")


def _untaint_ready(state: Any, node: str) -> None:
    """Drop the not-ready taint the kubelet registers with: the node lifecycle controller would,
    but the lab runs without it (its Nodes of simulated VMs have no kubelet and would be
    tainted unreachable)."""
    from tests.lab import lab

    result = lab.kubectl(state, "taint", "node", node, "node.kubernetes.io/not-ready:NoSchedule-")
    if result.returncode != 0 and "not found" not in result.stderr:
        raise LabError(f"removing the not-ready taint of {node} failed: {result.stderr.strip()}")
