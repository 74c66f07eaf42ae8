"""One bad host of a cluster does not block the cluster's disks (issue 12, case 6): the disk is
Ready on its VM's host, `ClusterReady` names the host that cannot see the LUN, and deletes
proceed; with every host seeing the LUN, `ClusterReady` is True."""

from __future__ import annotations

import asyncio
from typing import Any

from lunbridge.errors import Unavailable
from lunbridge.hypervisor.base import Attachment, Host, Scope, Vm
from lunbridge.models import ConditionType, Phase
from lunbridge_operator.reconcile.recheck import HOST_LISTING_PERIODS
from tests.fakes import Lab


async def test_a_host_without_iscsi_in_the_cluster_leaves_the_disk_ready_but_not_cluster_ready() -> None:
    lab = Lab.build(default_scope=Scope.CLUSTER)
    lab.hypervisor.add_host("esx-4", "c1", iscsi=False)
    disk = await lab.create_disk("d1", node_name="node-a")
    assert disk.status.phase is Phase.READY
    assert disk.status.is_true(ConditionType.READY)
    cluster = disk.status.condition(ConditionType.CLUSTER_READY)
    assert cluster is not None
    assert cluster.status.value == "False"
    assert "esx-4" in cluster.message
    assert "no iSCSI adapter" in cluster.message
    assert "esx-2" not in cluster.message
    assert "ClusterNotReady" in lab.operator.reasons("d1")
    lun = lab.lun("d1")

    await lab.delete("d1")
    assert "d1" not in lab.kube.disks
    assert lun.name not in lab.storage.luns


async def test_every_host_seeing_the_lun_makes_the_disk_cluster_ready() -> None:
    lab = Lab.build(default_scope=Scope.CLUSTER)
    disk = await lab.create_disk("d1", node_name="node-a")
    cluster = disk.status.condition(ConditionType.CLUSTER_READY)
    assert cluster is not None
    assert cluster.true
    assert "esx-1, esx-2" in cluster.message
    disk = await lab.patch("d1", node_name=None)
    cluster = disk.status.condition(ConditionType.CLUSTER_READY)
    assert cluster is not None
    assert cluster.status.value == "Unknown"


async def test_a_rescan_that_fails_after_the_unmap_does_not_hold_up_the_delete() -> None:
    lab = Lab.build(default_scope=Scope.CLUSTER)
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    lab.hypervisor.fail_next("rescan", Unavailable("host esx-2 is disconnected"), times=5)
    await lab.delete("d1")
    assert "d1" not in lab.kube.disks
    assert lun.name not in lab.storage.luns
    assert "RescanFailed" in lab.operator.reasons("d1")


async def test_a_cluster_disk_is_ready_once_its_vms_host_sees_it_and_cluster_ready_after_the_others() -> None:
    """The other hosts of the cluster make the disk movable, not usable: they are rescanned
    beside the VM's host, the attach and the Ready write wait for none of them (here one
    that hangs), and ClusterReady follows once they are done."""
    lab = Lab.build(default_scope=Scope.CLUSTER)
    released = asyncio.Event()
    rescan = lab.hypervisor.rescan

    async def hangs_but_on_esx_1(host: Host, adapter: str | None = None) -> None:
        if host.name != "esx-1":
            await released.wait()
        await rescan(host, adapter)

    lab.hypervisor.rescan = hangs_but_on_esx_1  # type: ignore[method-assign]
    ready = asyncio.Event()
    patch_status = lab.kube.patch_status

    async def noting_ready(plural: str, name: str, status: dict[str, Any]) -> None:
        await patch_status(plural, name, status)
        if status.get("phase") == "Ready":
            ready.set()

    lab.kube.patch_status = noting_ready  # type: ignore[method-assign]
    made = asyncio.create_task(lab.create_disk("d1", node_name="node-a"))
    async with asyncio.timeout(5):
        await ready.wait()
    assert lab.hypervisor.rescans == {"esx-1": 1}
    assert [c.args[0].name for c in lab.hypervisor.calls if c.method == "attach_rdm"] == ["node-a-vm"]
    released.set()
    await made
    writes = [status for _, name, status in lab.kube.called("patch_status") if name == "d1"]
    assert [w.get("phase") for w in writes] == ["Attaching", "Ready", None]
    at_ready = {c["type"]: c for c in writes[1]["conditions"]}
    assert at_ready["Ready"]["status"] == "True"
    cluster = at_ready["ClusterReady"]
    assert (cluster["status"], cluster["reason"]) == ("Unknown", "Revealing")
    assert "esx-2" in cluster["message"]
    after = {c["type"]: c for c in writes[2]["conditions"]}
    assert after["ClusterReady"]["status"] == "True"
    assert lab.hypervisor.rescans == {"esx-1": 1, "esx-2": 1}


async def test_a_recheck_rescans_only_the_hosts_that_no_longer_list_the_lun() -> None:
    """A periodic re-check of a Ready disk costs no rescan while every host lists the LUN
    (the listings it asks for are shared, a few re-check periods old); a host that lost it is
    rescanned, and one that still does not list it makes ClusterReady False."""
    lost: set[str] = set()
    lab = Lab.build(default_scope=Scope.CLUSTER)
    masked = lab.hypervisor.sees
    assert masked is not None
    lab.hypervisor.sees = lambda addresses, naa: masked(addresses, naa) and not set(addresses) & lost
    await lab.create_disk("d1", node_name="node-a")
    rescans = dict(lab.hypervisor.rescans)
    await lab.operator.recheck("d1")
    assert lab.hypervisor.rescans == rescans
    # the pass's shared listings, a few re-check periods old
    within = HOST_LISTING_PERIODS * lab.services.resync_seconds
    assert [args[2] for args in lab.hypervisor.called("sees_lun")][-2:] == [within, within]

    lost.add("iqn.1998-01.com.vmware:esx-2")
    await lab.operator.recheck("d1")
    assert lab.hypervisor.rescans["esx-2"] == rescans["esx-2"] + 1
    assert lab.hypervisor.rescans["esx-1"] == rescans["esx-1"]
    cluster = lab.disk("d1").status.condition(ConditionType.CLUSTER_READY)
    assert cluster is not None
    assert cluster.status.value == "False"
    assert "esx-2" in cluster.message


def note_rescan_of(lab: Lab, host_name: str) -> asyncio.Event:
    """An event set once the fake hypervisor has rescanned host `host_name`."""
    rescanned = asyncio.Event()
    rescan = lab.hypervisor.rescan

    async def noting(host: Host, adapter: str | None = None) -> None:
        await rescan(host, adapter)
        if host.name == host_name:
            rescanned.set()

    lab.hypervisor.rescan = noting  # type: ignore[method-assign]
    return rescanned


async def test_the_other_hosts_are_rescanned_while_the_attach_runs() -> None:
    """ClusterReady does not wait for the attach either: the other hosts' rescans start beside
    the VM's host's (an attach that hangs here), so the disk is movable as soon as it can be."""
    lab = Lab.build(default_scope=Scope.CLUSTER)
    released = asyncio.Event()
    attach = lab.hypervisor.attach_rdm

    async def hangs(vm: Vm, naa: str) -> Attachment:
        await released.wait()
        return await attach(vm, naa)

    rescanned = note_rescan_of(lab, "esx-2")
    lab.hypervisor.attach_rdm = hangs  # type: ignore[method-assign]
    made = asyncio.create_task(lab.create_disk("d1", node_name="node-a"))
    async with asyncio.timeout(5):
        await rescanned.wait()
    assert not lab.disk("d1").status.is_true(ConditionType.READY)
    released.set()
    disk = await made
    cluster = disk.status.condition(ConditionType.CLUSTER_READY)
    assert cluster is not None
    assert cluster.true


async def test_other_hosts_done_before_the_attach_are_told_in_the_ready_write() -> None:
    """The other hosts were quicker than the attach: one write says Ready and ClusterReady."""
    lab = Lab.build(default_scope=Scope.CLUSTER)
    rescanned = note_rescan_of(lab, "esx-2")
    attach = lab.hypervisor.attach_rdm

    async def after_esx_2(vm: Vm, naa: str) -> Attachment:
        await rescanned.wait()
        for _ in range(20):  # and its check that esx-2 lists the LUN
            await asyncio.sleep(0)
        return await attach(vm, naa)

    lab.hypervisor.attach_rdm = after_esx_2  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await lab.create_disk("d1", node_name="node-a")
    writes = [status for _, name, status in lab.kube.called("patch_status") if name == "d1"]
    assert [w.get("phase") for w in writes] == ["Attaching", "Ready"]
    at_ready = {c["type"]: c for c in writes[1]["conditions"]}
    assert at_ready["Ready"]["status"] == "True"
    assert at_ready["ClusterReady"]["status"] == "True"


async def test_a_host_scope_disk_is_movable_only_on_a_standalone_host() -> None:
    """Host scope on a host of a cluster: ClusterReady False (NotMovable), no Warning, Ready;
    on a standalone host there is nowhere to move, and ClusterReady is True."""
    lab = Lab.build(default_scope=Scope.HOST)
    clustered = await lab.create_disk("d1", node_name="node-a")  # esx-1, cluster c1
    standalone = await lab.create_disk("d2", node_name="node-c")  # esx-3
    pinned = clustered.status.condition(ConditionType.CLUSTER_READY)
    assert pinned is not None
    assert (pinned.true, pinned.reason) == (False, "NotMovable")
    assert "scope cluster lets it" in pinned.message
    assert clustered.status.is_true(ConditionType.READY)
    assert not [e for e in lab.operator.events_of("d1") if e.type == "Warning"]
    assert standalone.status.is_true(ConditionType.CLUSTER_READY)
