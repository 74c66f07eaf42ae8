"""The StorageClass path as a cluster runs it, on the lab: the real external-provisioner,
external-attacher and external-resizer (built by hack/peers/build-tools.sh) beside
`lunbridge-csi --mode controller` on a unix socket, all against the lab's API server, where
kube-controller-manager binds PVs and its attach/detach controller makes VolumeAttachments
for pods; the real operator attaches the LUNs to the lab's KVM guest. The objects kubelet
would make for the guest's Node (its controller-managed attach/detach annotation, its
CSINode) are made here, as kubelet would."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lunbridge.api import CSI_DRIVER_NAME
from tests.lab import csi, paths, procs, snapshotter
from tests.lab import libvirt as libvirt_lab
from tests.lab import operator as operator_lab
from tests.lab.lab import LabState, kubectl

if TYPE_CHECKING:  # flow.py uses `apply` from here
    from tests.integration.storageclass.flow import Flow

SIDECARS = ("csi-provisioner", "csi-attacher", "csi-resizer")


def apply(lab: LabState, *objects: Mapping[str, Any]) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    done = kubectl(lab, "apply", "--server-side", "--force-conflicts", "--filename=-", input_text=manifest)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="package")
def operator(lab: LabState) -> Iterator[int]:
    pid = operator_lab.start(lab)
    yield pid
    operator_lab.stop(lab)


@pytest.fixture(scope="package")
def guest_node_as_kubelet_registers_it(lab: LabState) -> Iterator[str]:
    """The guest's Node as a kubelet with lunbridge's node plugin leaves it; afterwards as it
    was (the lab is shared with the packages that run after this one: a CSIDriver left
    behind, for one, is not helm's to install)."""
    annotation = {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    done = kubectl(lab, "annotate", "--overwrite", "node", lab.guest_node,
                   *[f"{k}={v}" for k, v in annotation.items()])  # fmt: skip
    assert done.returncode == 0, done.stderr
    csi_node = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {"name": lab.guest_node},
        "spec": {"drivers": [{"name": CSI_DRIVER_NAME, "nodeID": f"libvirt://{lab.guest_uuid}"}]},
    }
    driver = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": CSI_DRIVER_NAME},
        "spec": {"attachRequired": True, "podInfoOnMount": False, "volumeLifecycleModes": ["Persistent"]},
    }
    apply(lab, csi_node, driver)
    yield lab.guest_node
    for kind, name in (("csidriver", CSI_DRIVER_NAME), ("csinode", lab.guest_node)):
        done = kubectl(lab, "delete", kind, name, "--ignore-not-found")
        assert done.returncode == 0, done.stderr
    done = kubectl(lab, "annotate", "node", lab.guest_node, *[f"{k}-" for k in annotation])
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="package")
def plugin(lab: LabState, operator: int, guest_node_as_kubelet_registers_it: str) -> Iterator[Path]:
    """The controller service and both sidecars on its socket; the socket's path."""
    lab_dir = Path(lab.lab_dir)
    csi.start_controller(lab.env(), lab_dir)
    socket = csi.controller_socket(lab_dir)
    common = [f"--csi-address={socket}", f"--kubeconfig={lab.kubeconfig}", "--leader-election=false",
              "--timeout=120s", "--v=4"]  # fmt: skip
    try:
        procs.spawn(lab_dir, "csi-provisioner", [str(paths.bin_dir() / "csi-provisioner"), *common,
                                                 "--extra-create-metadata"])  # fmt: skip
        procs.spawn(lab_dir, "csi-attacher", [str(paths.bin_dir() / "csi-attacher"), *common])
        procs.spawn(lab_dir, "csi-resizer", [str(paths.bin_dir() / "csi-resizer"), *common])
        yield socket
    finally:
        for name in SIDECARS:
            procs.stop(lab_dir, name, timeout=15)
        csi.stop_controller(lab_dir)


@pytest.fixture(scope="package")
def snapshots(lab: LabState, plugin: Path) -> Iterator[None]:
    """external-snapshotter's CRDs, snapshot-controller and csi-snapshotter on the plugin's socket."""
    snapshotter.start(lab, plugin)
    yield
    snapshotter.stop(lab)


def sidecar_logs(lab: LabState, lines: int = 25) -> str:
    lab_dir = Path(lab.lab_dir)
    return "\n".join(
        f"--- {name} ---\n{procs.tail(procs.log_file(lab_dir, name), lines)}"
        for name in (
            *SIDECARS,
            snapshotter.SIDECAR,
            snapshotter.CONTROLLER,
            csi.CONTROLLER,
            operator_lab.NAME,
        )
    )


@pytest.fixture
def flow(lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, snapshots: None) -> Iterator[Flow]:
    from tests.integration.storageclass.flow import Flow

    made = Flow(lab, kvm_guest)
    made.setup()
    yield made
    made.cleanup()
