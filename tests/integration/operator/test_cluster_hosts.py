"""Issue 19: a cluster's igroup follows its hosts. A host added to the lab's cluster while a
cluster-scope disk exists (the simulator's AddHost_Task; the new host logs in to tgtd with its
own IQN, like the others) gets its IQN into the cluster's igroup and sees the disk's LUN
(checked through its own storage system), and ClusterReady says so; a VM with an RDM then moves
onto it and the disk stays Ready; the host removed, its IQN leaves the igroup. A host moved
into another cluster while the VM with the RDM is on it takes the disk along: the LUN is masked
to that cluster's igroup under the same LUN id, the old igroup then drops the host; moved back,
the same again, and the VM can go home. Each within
half the operator's re-check period: the operator follows vCenter's inventory as it changes."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.hypervisor.vcenter import WaitForTask, find, vim
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab.lab import LabState

pytestmark = pytest.mark.usefixtures("operator")
# well inside the operator's re-check period (60 s): the join, the vMotion and the removal are
# followed because vCenter's property collector tells the operator, not because a period passed
WITHIN = 30.0


def iqn_of(si: Any, host_name: str) -> str:
    host = find(si, vim.HostSystem, host_name)
    adapters = host.config.storageDevice.hostBusAdapter
    return str(next(a.iScsiName for a in adapters if isinstance(a, vim.host.InternetScsiHba)))


def relocate(si: Any, vm_name: str, host_name: str) -> None:
    vm = find(si, vim.VirtualMachine, vm_name)
    WaitForTask(vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=find(si, vim.HostSystem, host_name))))


def igroup_initiators(lab: LabState, igroup: str) -> list[str]:
    found: list[str] = observe.backend_state(lab)["igroups"].get(igroup, {}).get("initiators", [])
    return found


@pytest.fixture
def clustered(lab_vms: list[LabVm]) -> LabVm:
    """A VM on a host of the lab's cluster (the second of its host: test_vmotion uses the third)."""
    return next(v for v in lab_vms if v.host.cluster is not None and v.name.endswith("_VM1"))


@pytest.fixture
def added_host(si: Any, clustered: LabVm) -> Iterator[list[str]]:
    """Adds a host to the VM's cluster when the test calls it (a list that gets its name); the
    VM goes back to its host and the added host is removed after the test."""
    made: list[str] = []
    yield made
    for name in made:
        if find(si, vim.VirtualMachine, clustered.name).runtime.host.name != clustered.host.name:
            relocate(si, clustered.name, clustered.host.name)
        with contextlib.suppress(StopIteration):  # gone already
            WaitForTask(find(si, vim.HostSystem, name).Destroy_Task())


@pytest.fixture
def other_cluster(si: Any, clustered: LabVm) -> Iterator[Any]:
    """A second cluster in the lab's datacenter; after the test, the VM back on its host and
    any host in the cluster removed. The empty cluster stays (the simulator cannot destroy a
    cluster); nothing lunbridge does looks at a cluster without hosts."""
    home = find(si, vim.ClusterComputeResource, str(clustered.host.cluster))
    made = home.parent.CreateClusterEx(name=f"other-{uuid.uuid4().hex[:6]}", spec=vim.cluster.ConfigSpecEx())
    yield made
    if find(si, vim.VirtualMachine, clustered.name).runtime.host.name != clustered.host.name:
        relocate(si, clustered.name, clustered.host.name)
    for host in list(made.host):
        WaitForTask(host.Destroy_Task())


def add_host(si: Any, cluster_name: str, made: list[str]) -> str:
    name = f"joined-{uuid.uuid4().hex[:6]}"
    cluster = find(si, vim.ClusterComputeResource, cluster_name)
    spec = vim.host.ConnectSpec(hostName=name, userName="root", password="lab", force=True)
    WaitForTask(cluster.AddHost_Task(spec=spec, asConnected=True))
    made.append(name)
    return name


@pytest.mark.timeout(400)
def test_a_host_that_joins_the_cluster_gets_every_lun_and_can_take_the_vm_then_leaves_the_igroup(
    lab: LabState, si: Any, disks: Disks, clustered: LabVm, added_host: list[str]
) -> None:
    name = disks.make(clustered.node, scope="cluster")
    ready = observe.wait_cluster_ready(lab, name, timeout=120)
    assert observe.condition(ready, "ClusterReady")["status"] == "True"
    igroup, naa = ready["status"]["initiatorGroup"], ready["status"]["lun"]["naa"]

    joined = add_host(si, str(clustered.host.cluster), added_host)
    iqn = iqn_of(si, joined)  # (the operator may have it in the igroup already: it follows vCenter)

    observe.eventually(lambda: iqn in igroup_initiators(lab, igroup), WITHIN, f"{iqn} in igroup {igroup}")
    observe.eventually(lambda: naa in observe.host_luns(si, joined), WITHIN, f"host {joined} sees {naa}")

    def cluster_ready() -> dict[str, Any] | None:
        disk = observe.get(lab, "vdisk", name) or {}
        said = observe.condition(disk, "ClusterReady")
        return disk if said.get("status") == "True" and joined in said.get("message", "") else None

    disk = observe.eventually(cluster_ready, WITHIN, f"ClusterReady naming host {joined}", every=0.5)
    assert observe.condition(disk, "Healthy")["status"] == "True"  # a host that joined is no broken link
    assert not observe.warnings(lab, disk), observe.warnings(lab, disk)

    relocate(si, clustered.name, joined)  # vMotion onto the new host: it sees the LUN

    def moved() -> dict[str, Any] | None:
        disk = observe.get(lab, "vdisk", name) or {}
        return disk if disk["status"]["attachment"]["host"] == joined else None

    after = observe.eventually(moved, WITHIN, f"status naming host {joined}", every=0.5)
    assert observe.is_ready(after)
    relocate(si, clustered.name, clustered.host.name)
    observe.eventually(
        lambda: (
            observe.is_ready(observe.get(lab, "vdisk", name))
            and (observe.get(lab, "vdisk", name) or {})["status"]["attachment"]["host"] == clustered.host.name
        ),
        WITHIN,
        "moved back",
    )

    WaitForTask(find(si, vim.HostSystem, joined).Destroy_Task())
    added_host.remove(joined)
    observe.eventually(
        lambda: iqn not in igroup_initiators(lab, igroup), WITHIN, f"{iqn} out of igroup {igroup}"
    )


@pytest.mark.timeout(400)
def test_a_host_that_leaves_the_cluster_with_the_vm_takes_its_lun_along_under_the_same_id(
    lab: LabState, si: Any, disks: Disks, clustered: LabVm, added_host: list[str], other_cluster: Any
) -> None:
    name = disks.make(clustered.node, scope="cluster")
    ready = observe.wait_cluster_ready(lab, name, timeout=120)
    igroup, naa, lun_id = (
        ready["status"]["initiatorGroup"],
        ready["status"]["lun"]["naa"],
        ready["status"]["lun"]["id"],
    )
    home = find(si, vim.ClusterComputeResource, str(clustered.host.cluster))
    joined = add_host(si, home.name, added_host)
    iqn = iqn_of(si, joined)
    observe.eventually(lambda: naa in observe.host_luns(si, joined), WITHIN, f"host {joined} sees {naa}")
    relocate(si, clustered.name, joined)
    observe.eventually(lambda: disk_on(lab, name, joined), WITHIN, f"status naming host {joined}")

    host = find(si, vim.HostSystem, joined)
    WaitForTask(host.EnterMaintenanceMode_Task(timeout=0))
    WaitForTask(other_cluster.MoveInto_Task(host=[host]))  # out of the disk's cluster, VM and all

    def remasked() -> dict[str, Any] | None:
        disk = disk_on(lab, name, joined)
        return disk if disk is not None and disk["status"]["initiatorGroup"] != igroup else None

    disk = observe.eventually(
        remasked, WITHIN, f"{name} masked to the igroup of {other_cluster.name}", every=0.5
    )
    assert disk["status"]["lun"]["id"] == lun_id  # an RDM names its LUN by the id too
    assert iqn in igroup_initiators(lab, disk["status"]["initiatorGroup"])
    assert naa in observe.host_luns(si, joined)
    observe.eventually(
        lambda: iqn not in igroup_initiators(lab, igroup),
        WITHIN,
        f"{iqn} out of igroup {igroup}: no LUN of it there",
    )
    assert not observe.warnings(lab, disk), observe.warnings(lab, disk)

    WaitForTask(home.MoveInto_Task(host=[host]))  # and back, VM and all

    def home_again() -> dict[str, Any] | None:
        disk = disk_on(lab, name, joined)
        return disk if disk is not None and disk["status"]["initiatorGroup"] == igroup else None

    disk = observe.eventually(home_again, WITHIN, f"{name} masked to igroup {igroup} again", every=0.5)
    assert disk["status"]["lun"]["id"] == lun_id
    observe.eventually(
        lambda: naa in observe.host_luns(si, clustered.host.name),
        WITHIN,
        f"host {clustered.host.name} sees {naa}",
    )
    relocate(si, clustered.name, clustered.host.name)
    observe.eventually(
        lambda: disk_on(lab, name, clustered.host.name), WITHIN, "the disk Ready on its VM's host"
    )


def disk_on(lab: LabState, name: str, host: str) -> dict[str, Any] | None:
    """VirtualDisk `name` when it is Ready with its VM on `host`."""
    disk = observe.get(lab, "vdisk", name)
    if disk is None or not observe.is_ready(disk):
        return None
    return disk if (disk["status"].get("attachment") or {}).get("host") == host else None
