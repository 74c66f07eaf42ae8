"""The operator against the lab's kube-apiserver, vcsim and tgtd.

`operator` runs `lunbridge-operator` for a whole module (modules that kill and restart it
start their own instead); `disks` makes VirtualDisks with names of their own and, after the
test, deletes them and waits until the operator has taken everything away; `nodes` makes
Kubernetes Nodes for one test. At the end of the package every host loses the lab portal
from its send targets, like after the hypervisor tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.hypervisor.vcenter import forget_portal
from tests.integration.operator import observe
from tests.integration.operator.crashing import Operator
from tests.integration.operator.guestdisk import Staged, unstage
from tests.integration.operator.snapshotting import TEST_LABEL, Snapshots
from tests.lab import csi
from tests.lab import libvirt as libvirt_lab
from tests.lab import operator as operator_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl, node_name


@pytest.fixture(scope="module")
def operator(lab: LabState) -> Iterator[int]:
    """`lunbridge-operator` started as a user would (`source .lab/env`), for one module."""
    pid = operator_lab.start(lab)
    yield pid
    operator_lab.stop(lab)


RESYNC = 5.0  # seconds between re-checks of a Ready disk, with `quick_recheck`


@pytest.fixture
def quick_recheck(lab: LabState) -> Iterator[None]:
    """The module's operator restarted to re-check Ready disks every RESYNC seconds, for one test."""
    operator_lab.stop(lab)
    operator_lab.start(lab, extra_env={"LUNBRIDGE_RESYNC_SECONDS": str(RESYNC)})
    try:
        yield
    finally:
        operator_lab.stop(lab)
        operator_lab.start(lab)


@pytest.fixture(scope="package", autouse=True)
def _hosts_left_as_found(lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    yield
    forget_portal(si, vcsim.inventory, lab.tgt.port)


def new_name(kind: str = "vd") -> str:
    return f"it-{kind}-{uuid.uuid4().hex[:8]}"


@dataclass
class Disks:
    """VirtualDisks of one test, all labelled with the test's own id."""

    lab: LabState
    test_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def manifest(self, node: str | None = None, name: str | None = None, **spec: Any) -> dict[str, Any]:
        if node is not None:
            spec["nodeName"] = node
        return observe.vdisk(name or new_name(), labels={TEST_LABEL: self.test_id}, **spec)

    def make(self, node: str | None = None, **spec: Any) -> str:
        """Apply one VirtualDisk; its name."""
        body = self.manifest(node, **spec)
        observe.apply(self.lab, body)
        name: str = body["metadata"]["name"]
        return name

    def mine(self) -> list[dict[str, Any]]:
        return observe.items(self.lab, "vdisk", "-l", f"{TEST_LABEL}={self.test_id}")

    def delete_all(self, timeout: float = 120) -> None:
        """Delete every disk of the test and wait until the operator let them go. If it does
        not, the finalizers are removed (so later tests find a clean API) and the test fails."""
        kubectl(self.lab, "delete", "vdisk", "-l", f"{TEST_LABEL}={self.test_id}", "--wait=false")
        try:
            observe.eventually(lambda: not self.mine(), timeout, f"VirtualDisks of test {self.test_id} gone")
        except AssertionError:
            for disk in self.mine():
                patch = json.dumps({"metadata": {"finalizers": None}})
                kubectl(self.lab, "patch", "vdisk", disk["metadata"]["name"], "--type=merge", "-p", patch)
            raise


@pytest.fixture
def disks(lab: LabState) -> Iterator[Disks]:
    made = Disks(lab)
    yield made
    made.delete_all()


@pytest.fixture
def nodes(lab: LabState) -> Iterator[list[str]]:
    """Names of Nodes a test made (append them); deleted after the test."""
    made: list[str] = []
    yield made
    for name in made:
        kubectl(lab, "delete", "node", name, "--ignore-not-found")


@dataclass(frozen=True)
class LabVm:
    """A lab VM as the tests address it: its name, its Node and its host."""

    name: str
    node: str
    host: vcsim_lab.Host


@pytest.fixture(scope="session")
def lab_vms(vcsim: vcsim_lab.VcsimPeer) -> list[LabVm]:
    inventory = vcsim.inventory
    return [LabVm(vm.name, node_name(vm.name), inventory.host(vm.host)) for vm in inventory.vms]


@pytest.fixture
def own_operator(lab: LabState) -> Iterator[Operator]:
    """An operator of the test's own, to kill (crashing.py); stopped after the test."""
    made = Operator(lab)
    yield made
    made.stop()


@pytest.fixture
def snapshots(lab: LabState, disks: Disks) -> Iterator[Snapshots]:
    made = Snapshots(lab, disks.test_id)
    yield made
    disks.delete_all()  # first: a restore waiting for a snapshot holds the snapshot's delete
    made.delete_all()


@pytest.fixture(scope="module")
def verifier(lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest) -> Iterator[str]:
    """The guest's node plugin with its node channel (as the chart runs it, NODE_NAME set) and
    one configured check; the verifier node's name."""
    checks = ("--verify-check", "data-readable=dd if={mount}/data of=/dev/null bs=64k")
    csi.start_node_service(kvm_guest, lab.node_endpoint, extra=checks, **csi.node_channel(lab))
    yield lab.guest_node
    csi.stop_node_service(kvm_guest)
    kubectl(lab, "delete", "lbnode", lab.guest_node, "--ignore-not-found")  # what it published


@pytest.fixture
def guest_disks(kvm_guest: libvirt_lab.LibvirtGuest) -> Iterator[list[Staged]]:
    """Disks mounted in the guest by a test; unmounted before their VirtualDisks go."""
    mounted: list[Staged] = []
    yield mounted
    for staged in mounted:
        unstage(kvm_guest, staged)
