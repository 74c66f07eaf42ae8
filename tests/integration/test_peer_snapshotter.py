"""external-snapshotter is real: the snapshot CRDs of the pinned release (hack/peers/build-tools.sh
copies them beside the binaries) are served by the lab's kube-apiserver, snapshot-controller runs
against it out of cluster (as the lab runs the other sidecars) and takes a VolumeSnapshot in
hand, and csi-snapshotter is the pinned build. The snapshot tests and the chart's
VolumeSnapshotClass stand on these peers. The CRDs stay applied (apply is idempotent): other
tests of the session use them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lunbridge.api import CSI_DRIVER_NAME
from tests.lab import paths, procs, snapshotter
from tests.lab.lab import LabState, kubectl
from tests.lab.snapshotter import CONTROLLER, SNAPSHOT_CRDS

T = TypeVar("T")
NAMESPACE = "lunbridge-snapshot-peer"
LEASE = "snapshot-controller-leader"  # the snapshot-controller's leader election lock


def apply_snapshot_crds(lab: LabState) -> None:
    snapshotter.apply_crds(lab)


def get_json(lab: LabState, *args: str) -> dict[str, Any]:
    done = kubectl(lab, "get", "--output=json", *args)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def eventually(what: str, probe: Callable[[], T | None], timeout: float, logs: Callable[[], str]) -> T:
    """`probe()`'s first answer that is not None, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (answer := probe()) is not None:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f}s\n{logs()}")


@pytest.fixture(scope="module")
def snapshot_crds(lab: LabState) -> None:
    apply_snapshot_crds(lab)


@pytest.fixture(scope="module")
def namespace(lab: LabState, snapshot_crds: None) -> Iterator[str]:
    kubectl(lab, "create", "namespace", NAMESPACE)
    yield NAMESPACE
    kubectl(lab, "delete", "namespace", NAMESPACE, "--wait=false")


def test_the_snapshot_crds_are_served_and_enforce_their_schema(lab: LabState, snapshot_crds: None) -> None:
    apply_snapshot_crds(lab)  # a second apply is harmless: other tests apply them again
    for name, stored in SNAPSHOT_CRDS.items():
        crd = get_json(lab, f"crd/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True", name
        served = {v["name"] for v in crd["spec"]["versions"] if v["served"]}
        assert {"v1", stored} <= served, name
        assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == [stored], name
    bad = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": "bad-policy"},
        "driver": CSI_DRIVER_NAME,
        "deletionPolicy": "Keep",
    }
    done = kubectl(lab, "apply", "--dry-run=server", "--filename=-", input_text=json.dumps(bad))
    assert done.returncode != 0
    assert "deletionPolicy" in done.stderr, done.stderr


def test_snapshot_controller_leads_and_takes_a_volume_snapshot_in_hand(lab: LabState, namespace: str) -> None:
    lab_dir = Path(lab.lab_dir)
    log = procs.log_file(lab_dir, CONTROLLER)
    argv = [str(paths.bin_dir() / CONTROLLER), f"--kubeconfig={lab.kubeconfig}", "--leader-election",
            f"--leader-election-namespace={namespace}", "--retry-interval-start=500ms", "--v=4"]  # fmt: skip
    procs.spawn(lab_dir, CONTROLLER, argv)
    try:

        def logs() -> str:
            return f"--- {CONTROLLER} ---\n{procs.tail(log, 30)}"

        def holder() -> str | None:
            assert procs.read_pid(lab_dir, CONTROLLER) is not None, f"{CONTROLLER} exited\n{logs()}"
            done = kubectl(lab, "get", "lease", LEASE, f"--namespace={namespace}", "--output=json")
            return json.loads(done.stdout)["spec"].get("holderIdentity") if done.returncode == 0 else None

        assert eventually(f"{CONTROLLER} took the lease {namespace}/{LEASE}", holder, 30, logs)
        # a dynamic snapshot of a PVC that does not exist: the controller says so on the object
        snapshot = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                    "metadata": {"name": "of-nothing", "namespace": namespace},
                    "spec": {"source": {"persistentVolumeClaimName": "no-such-claim"}}}  # fmt: skip
        done = kubectl(lab, "apply", "--server-side", "--filename=-", input_text=json.dumps(snapshot))
        assert done.returncode == 0, done.stderr

        def error() -> str | None:
            status = get_json(lab, "volumesnapshot", "of-nothing", f"--namespace={namespace}").get(
                "status", {}
            )
            message: str | None = status.get("error", {}).get("message")
            return message

        message = eventually("the VolumeSnapshot's status.error", error, 30, logs)
        assert "no-such-claim" in message, message
        done = kubectl(
            lab, "delete", "volumesnapshot", "of-nothing", f"--namespace={namespace}", "--timeout=30s"
        )
        assert done.returncode == 0, done.stderr + logs()
    finally:
        procs.stop(lab_dir, CONTROLLER, timeout=15)


def test_csi_snapshotter_is_the_pinned_release() -> None:
    binary = str(paths.bin_dir() / "csi-snapshotter")
    version = paths.versions()["EXTERNAL_SNAPSHOTTER_VERSION"]
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [binary, version]
    done = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    for flag in ("-csi-address", "-timeout", "-extra-create-metadata", "-leader-election"):
        assert f"  {flag} " in done.stderr or f"  {flag}\n" in done.stderr, flag
