"""One bad host of a cluster does not block its disks (issue 12, case 6), on the vCenter
simulator: a host of the cluster is disconnected (vCenter then refuses its storage calls with
HostNotConnected); a disk masked to the cluster on another host's VM becomes Ready with
`ClusterReady=False` naming the disconnected host, and is deleted while the host stays
disconnected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.hypervisor.vcenter import WaitForTask, find, vim
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab.lab import LabState

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def disconnected(si: Any, lab_vms: list[LabVm]) -> Iterator[tuple[LabVm, str]]:
    """A VM on a clustered host, and another host of that cluster disconnected for the test."""
    vm = next(v for v in lab_vms if v.host.cluster is not None)
    other = next(v.host for v in lab_vms if v.host.cluster == vm.host.cluster and v.host.name != vm.host.name)
    host = find(si, vim.HostSystem, other.name)
    WaitForTask(host.DisconnectHost_Task())
    try:
        yield vm, other.name
    finally:
        WaitForTask(host.ReconnectHost_Task())


@pytest.mark.timeout(300)
def test_a_disconnected_host_leaves_the_clusters_disk_ready_and_deletable(
    lab: LabState, disks: Disks, disconnected: tuple[LabVm, str]
) -> None:
    vm, lost = disconnected
    name = disks.make(vm.node, scope="cluster")
    disk = observe.wait_ready(lab, name, timeout=90)
    assert disk["status"]["attachment"]["host"] == vm.host.name
    disk = observe.wait_cluster_ready(lab, name)
    cluster = observe.condition(disk, "ClusterReady")
    assert cluster["status"] == "False", cluster
    assert lost in cluster["message"]
    assert "disconnected" in cluster["message"]
    observe.wait_events(lab, disk, {"ClusterNotReady"}, timeout=20)
    lun = disk["status"]["lun"]

    disks.delete_all(timeout=90)  # while the host is still disconnected
    assert lun["name"] not in observe.backend_state(lab)["luns"]


def test_a_disk_every_host_of_the_cluster_sees_is_cluster_ready(
    lab: LabState, disks: Disks, lab_vms: list[LabVm]
) -> None:
    vm = next(v for v in lab_vms if v.host.cluster is not None)
    name = disks.make(vm.node, scope="cluster")
    observe.wait_ready(lab, name, timeout=90)
    disk = observe.wait_cluster_ready(lab, name)
    cluster = observe.condition(disk, "ClusterReady")
    assert cluster["status"] == "True", cluster
    assert vm.host.name in cluster["message"]
