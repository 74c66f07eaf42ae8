"""lunbridge installed the way users install it, on a lab of its own with real kubelets
(tests/lab/kubelet.py): the images of `make image`, `helm install` of charts/lunbridge, the
operator and the CSI controller as pods of the kubelet on this machine (Node `lab-host`, host
network: the lab's tgtd, libvirtd and API server are here), the node DaemonSet as a pod of the
kubelet in the KVM guest (Node `lab-guest`, where the SCSI bus is), and workloads with PVCs on
the guest, whose volumes the guest's kubelet stages and publishes through the node plugin."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import STEP_TIMINGS
from tests.integration.kubeobjects import get
from tests.lab import host_kubelet, kubelet, paths, pool, procs
from tests.lab import lab as lab_module
from tests.lab import libvirt as libvirt_lab
from tests.lab.guest import socket_dir
from tests.lab.lab import LabState, kubectl

RELEASE = "lunbridge"
NAMESPACE = "lunbridge"
CHART = paths.REPO_DIR / "charts" / "lunbridge"


def workload_image() -> str:
    """The lab's busybox image (hack/image/build.sh), by the name its archive carries."""
    return (kubelet.images_dir() / "lab-busybox.tar.id").read_text().split()[0]


@pytest.fixture(scope="package")
def klab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    """A lab of its own with both kubelets (its guest's Node `lab-guest`, this machine's
    `lab-host`), so that nothing of the kubelets reaches the other tests' lab. With
    LUNBRIDGE_KUBELET_LAB_DIR, that lab (started if needed) is used and left running, to look
    into after a failure."""
    kept = os.environ.get("LUNBRIDGE_KUBELET_LAB_DIR")
    lab_dir = Path(kept) if kept else tmp_path_factory.mktemp("klab")
    state = lab_module.up(lab_dir, kubelets=True)
    yield state
    if not kept:
        lab_module.down(lab_dir)


class Phases:
    """How long each step of a scenario took (seconds), printed when the test ends: what a
    user waits for at each step, under TCG and on 2 shared cores."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.rows: list[tuple[str, float]] = []

    def mark(self, what: str) -> None:
        now = time.monotonic()
        self.rows.append((what, now - self.last))
        self.last = now

    def table(self) -> str:
        lines = [f"{seconds:7.1f} s  {what}" for what, seconds in self.rows]
        return "\n".join([*lines, f"{self.last - self.start:7.1f} s  in all"])


@pytest.fixture
def phases(request: pytest.FixtureRequest) -> Iterator[Phases]:
    """The test's step timings, printed in the run's summary (tests/conftest.py), passed or not."""
    timing = Phases()
    yield timing
    request.node.user_properties.append((STEP_TIMINGS, timing.table()))


def chart_values(lab: LabState) -> dict[str, Any]:
    """The chart's values for the lab: local images; the operator and controller on `lab-host`
    with its network (free ports, the API server on loopback); the node plugin on `lab-guest`."""
    lab_dir = Path(lab.lab_dir)
    on_host = {
        "nodeSelector": {"kubernetes.io/hostname": host_kubelet.NODE_NAME},
        "tolerations": [{**host_kubelet.TAINT, "operator": "Exists"}],
        "hostNetwork": True,
        "kubernetesService": {"host": "127.0.0.1", "port": lab.apiserver_port},
    }
    libvirt_socket = libvirt_lab.socket_path(lab_dir)
    return {
        "image": {"repository": "localhost/lunbridge/lunbridge", "pullPolicy": "Never"},
        "sidecars": {"registry": "localhost/lunbridge", "pullPolicy": "Never"},
        "vsphere": {"enabled": False},
        "libvirt": {
            "enabled": True,
            "uri": lab.libvirt_uri,
            "hostIqn": lab.host_iqn,
            "socketDir": str(libvirt_socket.parent),
        },
        "storage": {
            "tgt": {
                "portal": lab.tgt.portal,
                "controlPort": lab.tgt_control,
                "poolDir": str(pool.mount_point(lab_dir)),
            }
        },
        "operator": {
            **on_host,
            "metricsPort": procs.free_port(),
            "livenessPort": procs.free_port(),
            "extraEnv": [
                {"name": "LUNBRIDGE_RETRY_SCALE", "value": "0.2"},
                {"name": "LUNBRIDGE_RESYNC_SECONDS", "value": "5"},  # broken links found within seconds
            ],
        },
        "controller": {**on_host, "healthPort": procs.free_port()},
        "node": {"nodeSelector": {"kubernetes.io/hostname": lab.guest_node}},
        "snapshots": {"enabled": False},
        "healthMonitor": {"enabled": True, "interval": "5s"},
        "storageClass": {"create": True, "name": "lunbridge", "volumeBindingMode": "WaitForFirstConsumer"},
    }


def helm(lab: LabState, *args: str, values: Mapping[str, Any] | None = None) -> str:
    argv = [str(paths.bin_dir() / "helm"), f"--kubeconfig={lab.kubeconfig}", *args]
    if values is not None:
        argv += ["--values", "-"]
    done = subprocess.run(argv, input=yaml.safe_dump(dict(values)) if values is not None else None,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


def apply(lab: LabState, *objects: Mapping[str, Any]) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    done = kubectl(lab, "apply", "--server-side", "--force-conflicts", "--filename=-", input_text=manifest)
    assert done.returncode == 0, done.stderr


def pod_logs(lab: LabState, namespace: str, pod: str, lines: int = 40) -> str:
    """A pod's logs, read where its kubelet writes them (the lab's kubelets serve no API)."""
    found = get(lab, "pod", "-n", namespace, pod)
    if found and found["spec"].get("nodeName") == host_kubelet.NODE_NAME:
        pattern = f"{host_kubelet.pod_logs_dir(Path(lab.lab_dir))}/{namespace}_{pod}_*/*/*.log"
        done = subprocess.run(
            ["sh", "-c", f"tail -n {lines} {pattern}"], capture_output=True, text=True, check=False
        )
        return done.stdout
    pattern = f"/var/log/pods/{namespace}_{pod}_*/*/*.log"
    guest = libvirt_lab.connect_guest(Path(lab.lab_dir))
    try:
        return guest.run(["/bin/sh", "-c", f"tail -n {lines} {pattern}"], timeout=30).stdout
    finally:
        guest.close()


def pods_report(lab: LabState) -> str:
    """What a user would look at when pods do not come up: pods, events, the lunbridge pods' logs."""
    report = [kubectl(lab, "get", "pods", "-A", "-o", "wide").stdout,
              kubectl(lab, "get", "events", "-A", "--sort-by=.lastTimestamp").stdout[-4000:]]  # fmt: skip
    pods = get(lab, "pods", "-n", NAMESPACE) or {"items": []}
    for item in pods["items"]:
        name = item["metadata"]["name"]
        report.append(f"--- {name} ---\n{pod_logs(lab, NAMESPACE, name)[-3000:]}")
    return "\n".join(report)


def socket_folder(lab: LabState) -> Path:
    return socket_dir(Path(lab.lab_dir))
