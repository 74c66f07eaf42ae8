"""Bring the whole lab up or down, and describe it to shells (`.lab/env`) and to tests.

`up` is idempotent: a lab whose peers all run is left alone; a half-running one is taken
down first. Every peer is recorded in `state.json` and by PID file, so `down` stops
exactly what `up` started.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import shutil
import ssl
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.lab import csi, kube, kubelet, paths, pool, procs, tgt, vcsim
from tests.lab import libvirt as libvirt_lab

VSPHERE_USER = "lab-admin@vsphere.local"
SERVICES = ("operator", csi.CONTROLLER)  # what LAB_SERVICES=1 runs on this machine (tests.lab.services)


@dataclass
class LabState:
    lab_dir: str
    apiserver_port: int
    etcd_port: int
    token: str
    tgt_port: int
    tgt_control: int
    vsphere_url: str
    vsphere_user: str
    vsphere_password: str
    vsphere_thumbprint: str
    # the KVM host (the lab's libvirtd) and its guest; empty when started with LAB_GUEST=0
    libvirt_uri: str = ""
    host_iqn: str = ""
    guest_node: str = ""
    guest_uuid: str = ""
    guest_csi_port: int = 0  # 127.0.0.1:<this> leads to the node service's port in the guest
    # the operator, the CSI controller service and the guest's node service run (LAB_SERVICES=1)
    services: bool = False
    # kube-scheduler runs here, containerd and a kubelet in the guest (LAB_KUBELET=1)
    kubelet: bool = False

    @property
    def kubeconfig(self) -> Path:
        return kube.kubeconfig_path(Path(self.lab_dir))

    @property
    def tgt(self) -> tgt.Tgt:
        return tgt.Tgt(port=self.tgt_port, control=self.tgt_control)

    def env(self) -> dict[str, str]:
        """What `.lab/env` exports: enough for `lunbridge-operator` to run against the lab."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "LUNBRIDGE_LAB_DIR": self.lab_dir,
            "LUNBRIDGE_VSPHERE_URL": self.vsphere_url,
            "LUNBRIDGE_VSPHERE_USER": self.vsphere_user,
            "LUNBRIDGE_VSPHERE_PASSWORD": self.vsphere_password,
            "LUNBRIDGE_TGT_PORTAL": self.tgt.portal,
            "LUNBRIDGE_TGT_NODE_PORTALS": "{}:{}".format(*tgt.GUEST_TGT_PORTAL),  # the guest's guestfwd
            "LUNBRIDGE_TGT_CONTROL_PORT": str(self.tgt_control),
            "LUNBRIDGE_TGT_POOL_DIR": str(pool.mount_point(Path(self.lab_dir))),
            "LUNBRIDGE_TGT_STATE_FILE": str(Path(self.lab_dir) / "tgt-state.json"),
            "LUNBRIDGE_VSPHERE_THUMBPRINT": self.vsphere_thumbprint,
            **self._kvm_env(),
            **self._services_env(),
        }

    def _kvm_env(self) -> dict[str, str]:
        if not self.libvirt_uri:
            return {}
        return {
            "LUNBRIDGE_LIBVIRT_URI": self.libvirt_uri,
            "LUNBRIDGE_HOST_IQN": self.host_iqn,
            "LUNBRIDGE_GUEST_NODE": self.guest_node,
        }

    def _services_env(self) -> dict[str, str]:
        if not self.services:
            return {}
        return csi.services_env(Path(self.lab_dir), self.node_endpoint)

    @property
    def node_endpoint(self) -> str:
        """The guest's node service, as seen from this machine (host:port, for any gRPC client)."""
        return f"127.0.0.1:{self.guest_csi_port}"


def _state_file(lab_dir: Path) -> Path:
    return lab_dir / "state.json"


def load(lab_dir: Path) -> LabState | None:
    try:
        data: dict[str, Any] = json.loads(_state_file(lab_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return LabState(**data)


def running(lab_dir: Path) -> bool:
    state = load(lab_dir)
    return (
        state is not None
        and kube.running(lab_dir)
        and procs.read_pid(lab_dir, tgt.NAME) is not None
        and procs.read_pid(lab_dir, vcsim.NAME) is not None
        and (not state.libvirt_uri or libvirt_lab.running(lab_dir))
        and (not state.services or all(procs.read_pid(lab_dir, name) is not None for name in SERVICES))
        and (not state.kubelet or procs.read_pid(lab_dir, kubelet.SCHEDULER) is not None)
    )


def guest_wanted() -> bool:
    """The KVM host and its guest are part of the lab unless LAB_GUEST=0."""
    return os.environ.get("LAB_GUEST", "1").strip() != "0"


def up(lab_dir: Path, kubelets: bool | None = None) -> LabState:
    """Start every peer (or find them running) and write kubeconfig, env and state; with
    `kubelets` (default: LAB_KUBELET=1), real kubelets too (tests.lab.kubelet)."""
    kubelets = kubelet.wanted() if kubelets is None else kubelets
    existing = load(lab_dir)
    if (
        existing is not None
        and running(lab_dir)
        and bool(existing.libvirt_uri) == guest_wanted()
        and (existing.kubelet or not kubelets)
    ):
        return existing
    down(lab_dir)
    _forget(lab_dir)
    lab_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = paths.bin_dir()
    try:
        # the KVM host first: its guest boots (TCG, seconds) while the other peers start
        node_port, api_port, tgt_port = procs.free_port(), procs.free_port(), procs.free_port()
        kvm_guest = _start_kvm_host(lab_dir, node_port, api_port, tgt_port) if guest_wanted() else None
        endpoints = kube.start(lab_dir, bin_dir, api_port)
        if kvm_guest is not None:
            libvirt_lab.csi_share_dir(lab_dir).mkdir(parents=True, exist_ok=True)
            kube.write_guest_kubeconfig(lab_dir, endpoints, csi.guest_kubeconfig_path(lab_dir))
        pool.start(lab_dir)
        storage = tgt.start(lab_dir, port=tgt_port)
        password = secrets.token_urlsafe(12)
        inventory = vcsim.start(lab_dir, bin_dir, procs.free_port(), VSPHERE_USER, password)
        state = LabState(
            lab_dir=str(lab_dir),
            apiserver_port=endpoints.apiserver_port,
            etcd_port=endpoints.etcd_port,
            token=endpoints.token,
            tgt_port=storage.port,
            tgt_control=storage.control,
            vsphere_url=inventory.url,
            vsphere_user=VSPHERE_USER,
            vsphere_password=password,
            vsphere_thumbprint=_thumbprint(inventory.url),
        )
        if kvm_guest is not None:
            state.libvirt_uri = libvirt_lab.uri(lab_dir)
            state.host_iqn = libvirt_lab.HOST_IQN
            state.guest_node = libvirt_lab.NODE_NAME
            state.guest_uuid = kvm_guest.uuid
            state.guest_csi_port = node_port
        save(state)
        apply_crds(state)
        create_nodes(state, inventory)
        if kvm_guest is not None:
            _finish_kvm_host(lab_dir, state)
        if kubelets:
            guest = libvirt_lab.connect_guest(lab_dir)
            try:
                kubelet.start(state, guest)
            finally:
                guest.close()
            state.kubelet = True
            save(state)
    except BaseException:
        down(lab_dir)
        raise
    return state


def _forget(lab_dir: Path) -> None:
    """A new lab starts empty: no objects in etcd, no LUNs, no storage backend state."""
    pool.stop(lab_dir)
    for name in ("etcd-data", "pool", "libvirt", libvirt_lab.csi_share_dir(lab_dir).name):
        shutil.rmtree(lab_dir / name, ignore_errors=True)
    for state_file in lab_dir.glob("tgt-state.json*"):
        state_file.unlink()


def down(lab_dir: Path) -> None:
    """Stop every peer the lab started; leaves no process and no tgtd target behind."""
    state = load(lab_dir)
    for name in SERVICES:  # first: they would log every peer below going away
        procs.stop(lab_dir, name, timeout=15)
    kubelet.stop(lab_dir)  # and the kubelet here; the guest's goes with the guest
    libvirt_lab.stop(lab_dir)  # first: its guest's iSCSI sessions end before tgtd's targets go
    vcsim.stop(lab_dir)
    tgt.stop(lab_dir, state.tgt if state else None)
    pool.stop(lab_dir)
    kube.stop(lab_dir)
    _state_file(lab_dir).unlink(missing_ok=True)
    (lab_dir / "env").unlink(missing_ok=True)


# --- restarting one peer of a running lab (same port, same identity) ---------------------------


def restart_tgtd(state: LabState, down_for: float = 0.0) -> tgt.Tgt:
    """tgtd killed (SIGKILL) and started again on the same portal and control socket, empty."""
    return tgt.restart(Path(state.lab_dir), state.tgt, down_for=down_for)


def restart_vcsim(state: LabState) -> vcsim.Inventory:
    """The vCenter simulator stopped (SIGTERM) and started again on the same URL with the same
    credentials, inventory and saved devices; fails if its thumbprint changed (the operator
    pins it: LUNBRIDGE_VSPHERE_THUMBPRINT)."""
    inventory = vcsim.restart(
        Path(state.lab_dir), paths.bin_dir(), state.vsphere_url, state.vsphere_user, state.vsphere_password
    )
    if (now := _thumbprint(inventory.url)) != state.vsphere_thumbprint:
        raise procs.LabError(f"vcsim's thumbprint changed across the restart: {now}")
    return inventory


def restart_apiserver(state: LabState, down_for: float = 0.0) -> None:
    """kube-apiserver stopped (SIGTERM) and started again on the same port over the same etcd."""
    endpoints = kube.KubeEndpoints(
        etcd_port=state.etcd_port, apiserver_port=state.apiserver_port, token=state.token
    )
    kube.restart_apiserver(Path(state.lab_dir), paths.bin_dir(), endpoints, down_for=down_for)


def _thumbprint(url: str) -> str:
    """SHA-256 of the server certificate at `url`, as colon-separated hex (what an admin pins)."""
    parts = urlsplit(url)
    pem = ssl.get_server_certificate((parts.hostname or "127.0.0.1", parts.port or 443))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def save(state: LabState) -> None:
    """Record `state` (state.json) and describe it to shells (.lab/env)."""
    lab_dir = Path(state.lab_dir)
    _state_file(lab_dir).write_text(json.dumps(asdict(state), indent=2))
    _write_env(lab_dir, state)


def _write_env(lab_dir: Path, state: LabState) -> None:
    lines = [f"export {key}={shlex.quote(value)}" for key, value in state.env().items()]
    lines.append(f'export PATH={shlex.quote(str(paths.bin_dir()))}:"$PATH"')
    env_file = lab_dir / "env"
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)


def kubectl(state: LabState, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the lab's own kubectl against the lab's API server."""
    return subprocess.run(
        [str(paths.bin_dir() / "kubectl"), f"--kubeconfig={state.kubeconfig}", *args],
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )


def apply_crds(state: LabState) -> None:
    crds = sorted((paths.REPO_DIR / "crds").glob("*.yaml"))
    if not crds:
        return
    result = kubectl(state, "apply", "--server-side", *[f"--filename={path}" for path in crds])
    if result.returncode != 0:
        raise procs.LabError(f"applying crds/ failed: {result.stderr}")
    kubectl(state, "wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
    # the operator's replicas meet in this peering object (see crds/clusterkopfpeerings.kopf.dev.yaml)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "lunbridge"}}
    result = kubectl(state, "apply", "--server-side", "--filename=-", input_text=json.dumps(peering))
    if result.returncode != 0:
        raise procs.LabError(f"creating the operator's peering object failed: {result.stderr}")


def node_name(vm_name: str) -> str:
    """A DNS-1123 Node name for a VM name ("DC0_C0_RP0_VM0" -> "dc0-c0-rp0-vm0")."""
    return "".join(ch if ch.isalnum() else "-" for ch in vm_name.lower()).strip("-")


def create_nodes(state: LabState, inventory: vcsim.Inventory) -> None:
    """One Kubernetes Node per simulated VM, with `spec.providerID: vsphere://<BIOS UUID>`."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node_name(vm.name),
                "labels": {"lunbridge.io/lab-vm": node_name(vm.name)},
            },
            "spec": {"providerID": f"vsphere://{vm.bios_uuid}"},
        }
        for vm in inventory.vms
    ]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    result = kubectl(state, "apply", "--server-side", "--filename=-", input_text=manifest)
    if result.returncode != 0:
        raise procs.LabError(f"creating the lab's Nodes failed: {result.stderr}")


# --- the KVM host (libvirtd) and its guest -------------------------------------------------


def _start_kvm_host(lab_dir: Path, node_port: int, api_port: int, tgt_port: int) -> libvirt_lab.GuestInfo:
    """Start the lab's libvirtd and its guest; the guest boots while the caller goes on."""
    libvirt_lab.start(lab_dir, paths.cache_dir())
    return libvirt_lab.create_guest(lab_dir, paths.cache_dir(), node_port, api_port, tgt_port)


def _finish_kvm_host(lab_dir: Path, state: LabState) -> None:
    """Wait until the guest's agent answers, then give the guest its Node."""
    guest = libvirt_lab.connect_guest(lab_dir)
    try:
        csi.prepare_guest(guest, lab_dir)
    finally:
        guest.close()
    create_guest_node(state)


def create_guest_node(state: LabState) -> None:
    """The libvirt guest's Node, with `spec.providerID: libvirt://<domain uuid>`."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": state.guest_node, "labels": {"lunbridge.io/lab-vm": state.guest_node}},
        "spec": {"providerID": f"libvirt://{state.guest_uuid}"},
    }
    result = kubectl(state, "apply", "--server-side", "--filename=-", input_text=json.dumps(node))
    if result.returncode != 0:
        raise procs.LabError(f"creating the guest's Node failed: {result.stderr}")
