"""external-snapshotter in the lab: its CRDs (the pinned release's client module, copied by
hack/peers/build-tools.sh) applied to the lab's API server, and its two programs run out of
cluster as the lab runs the other sidecars: snapshot-controller (one per cluster: binds
VolumeSnapshots to contents) and csi-snapshotter (beside the CSI controller: calls its
snapshot RPCs)."""

from __future__ import annotations

from pathlib import Path

from tests.lab import paths, procs
from tests.lab.lab import LabState, kubectl

CONTROLLER = "snapshot-controller"
SIDECAR = "csi-snapshotter"
# CRD name → the version its objects are stored in (v8.7.0 still stores group snapshots in v1beta2)
SNAPSHOT_CRDS = {
    "volumesnapshotclasses.snapshot.storage.k8s.io": "v1",
    "volumesnapshots.snapshot.storage.k8s.io": "v1",
    "volumesnapshotcontents.snapshot.storage.k8s.io": "v1",
    "volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io": "v1beta2",
    "volumegroupsnapshots.groupsnapshot.storage.k8s.io": "v1beta2",
    "volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io": "v1beta2",
}


def apply_crds(lab: LabState) -> None:
    """The snapshot CRDs applied (server-side, so a second apply changes nothing) and Established."""
    files = sorted(paths.snapshot_crds_dir().glob("*.yaml"))
    if not files:
        raise procs.LabError(f"no CRDs in {paths.snapshot_crds_dir()}: run hack/peers/build-tools.sh")
    done = kubectl(lab, "apply", "--server-side", *[f"--filename={path}" for path in files])
    if done.returncode != 0:
        raise procs.LabError(f"applying the snapshot CRDs failed: {done.stderr}")
    done = kubectl(lab, "wait", "--for=condition=Established", "--timeout=30s",
                   *[f"crd/{name}" for name in SNAPSHOT_CRDS])  # fmt: skip
    if done.returncode != 0:
        raise procs.LabError(f"the snapshot CRDs are not Established: {done.stderr}")


def start(lab: LabState, csi_socket: Path, timeout: str = "120s") -> None:
    """snapshot-controller and csi-snapshotter (on the CSI controller's `csi_socket`), without
    leader election; the CRDs first."""
    apply_crds(lab)
    lab_dir = Path(lab.lab_dir)
    common = [f"--kubeconfig={lab.kubeconfig}", "--leader-election=false", "--retry-interval-start=500ms",
              "--retry-interval-max=5s", "--v=4"]  # fmt: skip
    procs.spawn(lab_dir, CONTROLLER, [str(paths.bin_dir() / CONTROLLER), *common])
    procs.spawn(lab_dir, SIDECAR, [str(paths.bin_dir() / SIDECAR), *common, f"--csi-address={csi_socket}",
                                   f"--timeout={timeout}", "--extra-create-metadata"])  # fmt: skip


def stop(lab: LabState) -> None:
    for name in (SIDECAR, CONTROLLER):
        procs.stop(Path(lab.lab_dir), name, timeout=15)
