"""`helm install` of charts/lunbridge with the images of `make image`, on real kubelets: the node
DaemonSet becomes Ready on the guest and its registrar registers the driver with the kubelet;
a pod with a PVC on the chart's StorageClass runs on the guest and writes a file, a second pod
reads it; the PVC grows while a pod runs and the pod's filesystem shows it; the node plugin's
pod restarts under a mounted volume, which stays usable and is later cleaned up; `helm
upgrade` with changed values rolls out; the volume's filesystem forced read-only in the guest
is named in the kubelet's Event on the pod (CSIVolumeHealth), and its LUN deleted on tgtd in
the health monitor's Event on the PVC (issue 19); the PVC deleted leaves nothing on tgtd, in
libvirt or in the guest."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge.storage.tgt import TgtBackend
from tests.integration.installed.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    Phases,
    apply,
    chart_values,
    helm,
    pod_logs,
    pods_report,
    workload_image,
)
from tests.integration.kubeobjects import get, wait
from tests.integration.operator import observe
from tests.integration.operator.observe import is_ready
from tests.lab import libvirt as libvirt_lab
from tests.lab import pool
from tests.lab.demo import SAN_DISKS
from tests.lab.lab import LabState, kubectl

# a whole install, two pods and an upgrade on a TCG guest: 5-9 minutes, each step with its own limit
pytestmark = [pytest.mark.peers, pytest.mark.timeout(1200)]


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


CSI_MOUNTS = "grep -e kubernetes.io~csi -e /kubernetes.io/csi/ /proc/mounts || true"


def worker_state(lab: LabState, namespace: str) -> tuple[int, int]:
    """The worker pod's last report: its filesystem's size (KiB, df) and its log's lines
    ((0, 0) before its first)."""
    found = re.findall(r"size=(\d+) lines=(\d+)", pod_logs(lab, namespace, "worker", lines=5))
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def pvc_capacity(lab: LabState, namespace: str) -> str:
    found = get(lab, "pvc", "-n", namespace, "data")
    return str((found or {}).get("status", {}).get("capacity", {}).get("storage", ""))


def events_of(
    lab: LabState, namespace: str, kind: str, name: str, reason: str, text: str
) -> list[dict[str, Any]]:
    """The Events of `reason` about object `kind`/`name` whose message holds `text`."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name},reason={reason}"
    found = get(lab, "events", "-n", namespace, f"--field-selector={selector}") or {"items": []}
    return [e for e in found["items"] if text in e.get("message", "")]


async def names_of(backend: TgtBackend) -> list[str]:
    return [lun.name for lun in await backend.list_luns()]


def guest_run(lab: LabState, script: str) -> str:
    guest = libvirt_lab.connect_guest(Path(lab.lab_dir))
    try:
        return guest.run(["/bin/sh", "-c", script], timeout=60).stdout
    finally:
        guest.close()


def test_helm_install_on_real_kubelets_serves_pvcs_on_the_guest_end_to_end(
    klab: LabState, phases: Phases
) -> None:
    lab = klab
    helm(
        lab,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        values=chart_values(lab),
    )

    # the node DaemonSet Ready on the guest, the driver registered with its attach limit
    wait(
        "the node plugin's pod Ready on the guest",
        lambda: ready_pods(lab, component("node")),
        timeout=300,
        explain=lambda: pods_report(lab),
    )
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
    phases.mark("helm install: node plugin Ready on the guest, driver registered")
    for name in ("operator", "controller"):
        selector = component(name)
        wait(
            f"the {name}'s pod Ready on this machine's node",
            lambda: ready_pods(lab, selector),  # noqa: B023
            timeout=180,
            explain=lambda: pods_report(lab),
        )

    phases.mark("operator and controller Ready on lab-host")

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
    wait(
        "the writer pod ran to completion",
        lambda: phase(lab, namespace, "writer") == "Succeeded",
        timeout=300,
        explain=lambda: pods_report(lab) + pod_logs(lab, namespace, "writer"),
    )
    pv_name = get(lab, "pvc", "-n", namespace, "data")["spec"]["volumeName"]  # type: ignore[index]
    assert kubectl(lab, "delete", "pod", "-n", namespace, "writer", "--wait=true").returncode == 0
    phases.mark("writer pod: PVC provisioned, attached, staged, written, pod deleted")

    # a second pod finds the file, then keeps writing while the PVC grows and the node plugin rolls
    loop = (
        f"trap 'exit 0' TERM; grep -qx {token} /data/token || exit 1;"
        " while true; do date >> /data/log; sync;"
        " echo size=$(df -k /data | tail -1 | awk '{print $2}') lines=$(wc -l < /data/log);"
        " sleep 2 & wait; done"
    )
    apply(lab, workload("worker", namespace, "data", loop))
    before = wait(
        "the second pod found the file and writes",
        lambda: (state := worker_state(lab, namespace))[1] > 0 and state,
        timeout=300,
        explain=lambda: pods_report(lab) + pod_logs(lab, namespace, "worker"),
    )
    phases.mark("second pod: attached again, read the first pod's file")
    patch = {"spec": {"resources": {"requests": {"storage": "160Mi"}}}}
    assert kubectl(lab, "patch", "pvc", "-n", namespace, "data", "-p", json.dumps(patch)).returncode == 0
    wait(
        "the PVC's capacity grown",
        lambda: pvc_capacity(lab, namespace) == "160Mi",
        explain=lambda: pods_report(lab),
    )
    grown = wait(
        "df in the pod shows the new size",
        lambda: (state := worker_state(lab, namespace))[0] > before[0] + 64 * 1024 and state,
        explain=lambda: pod_logs(lab, namespace, "worker"),
    )
    assert grown[0] > 140 * 1024, grown  # KiB: 160 MiB less the filesystem's own

    phases.mark("PVC grown online, df in the pod shows it")

    # helm upgrade with changed values: every component rolls, the node plugin's pod restarts
    # under the mounted volume, which stays usable
    old_node_pod = ready_pods(lab, component("node"))[0]["metadata"]["name"]
    values = chart_values(lab)
    values["node"]["logLevel"] = "DEBUG"
    values["controller"]["timeoutSeconds"] = 200
    helm(lab, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    wait(
        "the node plugin restarted with the new values",
        lambda: any(
            "--log-level=DEBUG" in pod["spec"]["containers"][0].get("args", [])
            and pod["metadata"]["name"] != old_node_pod
            for pod in ready_pods(lab, component("node"))
        ),
        timeout=300,
        explain=lambda: pods_report(lab),
    )
    wait(
        "the controller rolled out with the new values",
        lambda: any(
            "--timeout=200" in pod["spec"]["containers"][0].get("args", [])
            for pod in ready_pods(lab, component("controller"))
        ),
        timeout=180,
        explain=lambda: pods_report(lab),
    )
    lines = worker_state(lab, namespace)[1]
    wait(
        "the pod still writing after the node plugin's restart",
        lambda: worker_state(lab, namespace)[1] > lines + 2,
        explain=lambda: pod_logs(lab, namespace, "worker"),
    )
    node_pod = ready_pods(lab, component("node"))[0]["metadata"]["name"]
    wait("the kubelet asks the node plugin for the volume's stats (logged at DEBUG)",
         lambda: "NodeGetVolumeStats: OK" in pod_logs(lab, NAMESPACE, node_pod, lines=400),
         explain=lambda: pod_logs(lab, NAMESPACE, node_pod))  # fmt: skip
    phases.mark("helm upgrade rolled out, the node plugin restarted under the mounted volume")

    # the guest's filesystem forced read-only under the pod: the node plugin's volume condition
    # names it, and the kubelet (CSIVolumeHealth) posts it on the pod; writable again, it writes
    staging = guest_run(lab, "awk '$2 ~ /kubernetes.io.csi.*globalmount$/ {print $2}' /proc/mounts").split()
    assert len(staging) == 1, guest_run(lab, CSI_MOUNTS)

    def remount(mode: str) -> str:
        tries = f"mount -o remount,{mode} {staging[0]} && echo done && break; sleep 0.5"
        return guest_run(lab, f"for i in 1 2 3 4 5 6; do {tries}; done")

    assert "done" in remount("ro")
    try:
        said = wait(
            "the kubelet's VolumeConditionAbnormal Event on the pod names FilesystemReadOnly",
            lambda: events_of(
                lab, namespace, "Pod", "worker", "VolumeConditionAbnormal", "FilesystemReadOnly"
            ),
            timeout=120,
            explain=lambda: pods_report(lab),
        )
    finally:
        assert "done" in remount("rw")
    assert "Warning" in {e["type"] for e in said}
    lines = worker_state(lab, namespace)[1]
    wait("the pod writes again once the filesystem is writable",
         lambda: worker_state(lab, namespace)[1] > lines + 2,
         explain=lambda: pod_logs(lab, namespace, "worker"))  # fmt: skip
    phases.mark("filesystem forced read-only: the pod's Event named it; writable again")

    assert kubectl(lab, "delete", "pod", "-n", namespace, "worker", "--wait=true").returncode == 0
    phases.mark("pod deleted")
    wait(
        "the volume unstaged in the guest",
        lambda: not guest_run(lab, CSI_MOUNTS).strip(),
        explain=lambda: guest_run(lab, CSI_MOUNTS) + pods_report(lab),
    )

    # the LUN deleted on the storage server behind lunbridge's back: the VirtualDisk says
    # LunMissing (no empty LUN in its place), the health monitor posts it on the PVC, and the
    # PVC still goes away below
    def detached() -> dict[str, Any] | None:
        disk = get(lab, "vdisk", pv_name) or {}
        status = disk.get("status") or {}
        return disk if status.get("lun") and not status.get("attachment") and is_ready(disk) else None

    lun_name = wait("the volume detached and unmapped", detached, timeout=300,
                    explain=lambda: pods_report(lab))["status"]["lun"]["name"]  # fmt: skip
    observe.on_backend(
        lab, lambda backend: backend.delete_lun(lun_name), pool_dir=pool.mount_point(Path(lab.lab_dir))
    )
    said = wait(
        "the health monitor's VolumeConditionAbnormal Event on the PVC names LunMissing",
        lambda: events_of(
            lab, namespace, "PersistentVolumeClaim", "data", "VolumeConditionAbnormal", "LunMissing"
        ),
        timeout=120,
        explain=lambda: pods_report(lab),
    )
    healthy = observe.condition(get(lab, "vdisk", pv_name) or {}, "Healthy")
    assert (healthy.get("status"), healthy.get("reason")) == ("False", "LunMissing"), healthy
    assert lun_name not in observe.on_backend(
        lab, lambda backend: names_of(backend), pool_dir=pool.mount_point(Path(lab.lab_dir))
    )
    phases.mark("LUN deleted on tgtd: the PVC's Event named it, no LUN made in its place")

    # the PVC gone: nothing left on tgtd, in libvirt, in the guest
    assert kubectl(lab, "delete", "namespace", namespace, "--wait=true", "--timeout=240s").returncode == 0
    wait("the PV gone", lambda: get(lab, "pv", pv_name) is None, explain=lambda: pods_report(lab))
    phases.mark("volume unstaged and detached, PVC deleted, PV gone")
    wait(
        "no LUN left on tgtd", lambda: "LUN: 1" not in lab.tgt.adm("--mode", "target", "--op", "show").stdout
    )
    xml = libvirt_lab.virsh(Path(lab.lab_dir), "dumpxml", libvirt_lab.DOMAIN).stdout
    assert not re.search(r"<disk[^>]*device=.lun.", xml), xml
    assert guest_run(lab, CSI_MOUNTS).strip() == ""
    assert guest_run(lab, SAN_DISKS).strip() == "", "the guest still has a SCSI disk of a LUN"
    assert json.loads(kubectl(lab, "get", "virtualdisks", "-A", "-o", "json").stdout)["items"] == []
