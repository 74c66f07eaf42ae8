"""etcd, kube-apiserver and kube-controller-manager on loopback, and the lab's kubeconfig.

The binaries come from hack/peers/build-k8s.sh (built from the Go module proxy). The API
server generates its own serving certificate; clients authenticate with a static admin
token, and the controller-manager binds PVs and collects garbage like in a real cluster.
"""

from __future__ import annotations

import base64
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.lab import procs

# where the lab's KVM guest reaches this machine's kube-apiserver: a QEMU guestfwd (one `busybox
# nc` relay per connection; ../shared/notes/kubelet.md), named `kubernetes` for TLS
GUEST_APISERVER = ("10.0.2.100", 6443)

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SERVICES = (CONTROLLER_MANAGER, APISERVER, ETCD)  # stop order


@dataclass(frozen=True)
class KubeEndpoints:
    etcd_port: int
    apiserver_port: int
    token: str

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"


def kubeconfig_path(lab_dir: Path) -> Path:
    return lab_dir / "kubeconfig"


def _pki(lab_dir: Path) -> Path:
    pki = lab_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    key = pki / "sa.key"
    if not key.exists():
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )
    return pki


def start(lab_dir: Path, bin_dir: Path, api_port: int | None = None) -> KubeEndpoints:
    """Start etcd, the API server (on `api_port`, else a free port) and the controller-manager;
    wait until /readyz is ok."""
    pki = _pki(lab_dir)
    token = secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f'{token},lab-admin,lab-admin,"system:masters"\n')
    etcd_port, peer_port = procs.free_port(), procs.free_port()
    procs.spawn(
        lab_dir,
        ETCD,
        [
            str(bin_dir / "etcd"),
            "--name=lab",
            f"--data-dir={lab_dir / 'etcd-data'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=lab=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    procs.wait_port("127.0.0.1", etcd_port, 30, ETCD, lab_dir)

    api_port = api_port or procs.free_port()
    _spawn_apiserver(lab_dir, bin_dir, etcd_port, api_port)
    endpoints = KubeEndpoints(etcd_port=etcd_port, apiserver_port=api_port, token=token)
    _wait_ready(lab_dir, endpoints, timeout=90)
    write_kubeconfig(lab_dir, endpoints)

    cm_port = procs.free_port()
    procs.spawn(
        lab_dir,
        CONTROLLER_MANAGER,
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig_path(lab_dir)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={cm_port}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'serving' / 'apiserver.crt'}",
            "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-nodelifecycle,-service,-route,-cloud-node-lifecycle",
            "--v=1",
        ],
    )
    procs.wait_port("127.0.0.1", cm_port, 60, CONTROLLER_MANAGER, lab_dir)
    return endpoints


def _spawn_apiserver(lab_dir: Path, bin_dir: Path, etcd_port: int, api_port: int) -> None:
    """kube-apiserver on 127.0.0.1:`api_port` over the etcd at `etcd_port`. Its serving
    certificate is made once in pki/serving and reused, and the tokens file is read as is,
    so a restarted API server is the same server to every client."""
    pki = _pki(lab_dir)
    procs.spawn(
        lab_dir,
        APISERVER,
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={pki / 'serving'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ],
    )


def _wait_ready(lab_dir: Path, endpoints: KubeEndpoints, timeout: float) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        f"{endpoints.server}/readyz", headers={"Authorization": f"Bearer {endpoints.token}"}
    )
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if procs.read_pid(lab_dir, APISERVER) is None:
            raise procs.LabError(
                f"kube-apiserver exited while starting:\n{procs.tail(procs.log_file(lab_dir, APISERVER))}"
            )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise procs.LabError(f"kube-apiserver not ready within {timeout}s ({last})")


def _write_kubeconfig(path: Path, cluster: dict[str, str], token: str) -> Path:
    """A kubeconfig of one cluster (its `cluster` keys) and the lab's admin token, owner-only."""
    keys = "\n".join(f"    {key}: {value}" for key, value in cluster.items())
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
{keys}
users:
- name: lab-admin
  user:
    token: {token}
contexts:
- name: lab
  context: {{cluster: lab, user: lab-admin}}
current-context: lab
"""
    )
    path.chmod(0o600)
    return path


def write_kubeconfig(lab_dir: Path, endpoints: KubeEndpoints) -> Path:
    ca = lab_dir / "pki" / "serving" / "apiserver.crt"
    cluster = {"server": endpoints.server, "certificate-authority": str(ca)}
    return _write_kubeconfig(kubeconfig_path(lab_dir), cluster, endpoints.token)


def write_guest_kubeconfig(lab_dir: Path, endpoints: KubeEndpoints, path: Path) -> Path:
    """The kubeconfig the KVM guest's node plugin uses, at `path` (in a folder the guest sees):
    the API server through the guest NIC's guestfwd (GUEST_APISERVER), its certificate
    embedded and checked for the name `kubernetes` (one of its SANs)."""
    address, port = GUEST_APISERVER
    ca = base64.b64encode((lab_dir / "pki" / "serving" / "apiserver.crt").read_bytes()).decode()
    cluster = {"server": f"https://{address}:{port}", "tls-server-name": "kubernetes",
               "certificate-authority-data": ca}  # fmt: skip
    return _write_kubeconfig(path, cluster, endpoints.token)


def running(lab_dir: Path) -> bool:
    return all(procs.read_pid(lab_dir, name) is not None for name in SERVICES)


def restart_apiserver(lab_dir: Path, bin_dir: Path, endpoints: KubeEndpoints, down_for: float = 0.0) -> None:
    """Stop kube-apiserver (SIGTERM) and start it again, after `down_for` seconds, on the same
    port over the same etcd, with the same certificate and token; wait until /readyz is ok.
    etcd and the controller-manager keep running (the latter reconnects by itself)."""
    if not procs.stop(lab_dir, APISERVER, timeout=15):
        raise procs.LabError("kube-apiserver is not running")
    time.sleep(down_for)
    _spawn_apiserver(lab_dir, bin_dir, endpoints.etcd_port, endpoints.apiserver_port)
    _wait_ready(lab_dir, endpoints, timeout=90)


def stop(lab_dir: Path) -> None:
    for name in SERVICES:
        procs.stop(lab_dir, name, timeout=15)
