"""A VirtualDisk's Healthy condition (reconcile.health): a Ready disk says every link is in
place; a link broken behind lunbridge's back turns it False with the link as reason and a
Warning Event; the repair turns it True again (Repaired, an Event); a LUN that is gone is not
replaced by an empty one, and stays said until it is back; another LUN under the disk's LUN
name is never attached in its place."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import kopf
import pytest

from lunbridge.hypervisor.base import Scope
from lunbridge.models import ConditionType, Phase
from lunbridge.models.conditions import Condition
from lunbridge_operator.handlers import recheck
from lunbridge_operator.handlers.virtualdisk import Seen, seen_of
from lunbridge_operator.reconcile import health
from tests.fakes import Lab


def index(lab: Lab, *names: str) -> dict[str, list[Seen]]:
    return {n: [replace(seen_of(kopf.Body(cast(kopf.RawBody, lab.kube.read("virtualdisks", n)))), at=0.0)]
            for n in names}  # fmt: skip


def healthy(lab: Lab, name: str) -> Condition:
    found = lab.disk(name).status.condition(ConditionType.HEALTHY)
    assert found is not None, f"{name} has no Healthy condition"
    return found


async def one_pass(lab: Lab, *names: str) -> dict[str, health.Drift]:
    with lab.operator.posting():
        return await recheck.once(lab.operator.memo, index(lab, *names), full=True)


async def test_a_ready_disk_says_which_links_are_in_place() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    await lab.create_disk("d2")
    attached, unattached = healthy(lab, "d1"), healthy(lab, "d2")
    assert (attached.true, attached.reason) == (True, health.VERIFIED)
    assert lab.lun("d1").naa in attached.message
    assert "attached to VM" in attached.message
    assert (unattached.true, unattached.reason) == (True, health.VERIFIED)
    assert "not attached" in unattached.message


def _unmap(lab: Lab, name: str) -> None:
    lab.storage.maps = [m for m in lab.storage.maps if m.lun != lab.lun(name).name]


def _remove_rdm(lab: Lab, name: str) -> None:
    del lab.hypervisor.vms[lab.vms["node-a"].id].rdms[lab.lun(name).naa]


@pytest.mark.parametrize(
    ("break_link", "reason"),
    [(_unmap, health.MAP_MISSING), (_remove_rdm, health.RDM_MISSING)],
    ids=["map removed on the storage server", "RDM removed in vCenter"],
)
async def test_a_broken_link_is_named_then_repaired(break_link: Any, reason: str) -> None:
    lab = Lab.build(default_scope=Scope.HOST)
    await lab.create_disk("d1", node_name="node-a")
    break_link(lab, "d1")

    work = await one_pass(lab, "d1")

    assert work["d1"].reason == reason
    events = [(e.reason, e.type == "Warning") for e in lab.operator.events_of("d1")]
    assert (reason, True) in events  # what broke, as it was found
    assert events[-1] == (health.REPAIRED, False)
    after = healthy(lab, "d1")
    assert (after.true, after.reason) == (True, health.REPAIRED)
    assert work["d1"].message in after.message
    assert lab.disk("d1").status.phase is Phase.READY
    assert lab.storage.mappings_of(lab.lun("d1").name)  # repaired for real
    assert lab.lun("d1").naa in [r.naa for r in lab.rdms("node-a")]


async def test_a_lun_that_is_gone_is_not_replaced_and_stays_said_until_it_is_back() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    maps = lab.storage.mappings_of(lun.name)
    _unmap(lab, "d1")
    del lab.storage.luns[lun.name]  # deleted on the storage server by hand

    work = await one_pass(lab, "d1")
    await one_pass(lab, "d1")  # again: still broken, told once

    assert work["d1"].reason == health.LUN_MISSING
    assert lun.name not in lab.storage.luns  # no empty LUN in its place
    said = healthy(lab, "d1")
    assert (said.true, said.reason) == (False, health.LUN_MISSING)
    ready = lab.disk("d1").status.condition(ConditionType.READY)
    assert ready is not None
    assert not ready.true
    assert "does not put an empty LUN in its place" in ready.message
    assert [e.reason for e in lab.operator.events_of("d1")].count(health.LUN_MISSING) == 1

    lab.storage.luns[lun.name] = lun  # brought back on the backend
    lab.storage.maps.extend(maps)
    await one_pass(lab, "d1")
    back = healthy(lab, "d1")
    assert (back.true, back.reason) == (True, health.REPAIRED)
    assert lab.disk("d1").status.is_true(ConditionType.READY)


async def test_a_vm_that_moved_is_no_broken_link() -> None:
    lab = Lab.build(default_scope=Scope.CLUSTER)
    await lab.create_disk("d1", node_name="node-a")
    vm = lab.vms["node-a"]
    other = next(
        h for h in lab.hypervisor.hosts.values() if h.cluster == vm.host.cluster and h.id != vm.host.id
    )
    lab.hypervisor.move_vm(vm, other.name)  # vMotion

    work = await one_pass(lab, "d1")

    assert work["d1"].reason == health.VM_MOVED
    assert not work["d1"].broken
    assert healthy(lab, "d1").reason == health.VERIFIED
    assert not [e for e in lab.operator.events_of("d1") if e.type == "Warning"]


async def test_a_vms_host_that_moved_into_another_cluster_takes_the_lun_along_under_its_id() -> None:
    lab = Lab.build(default_scope=Scope.CLUSTER)
    await lab.create_disk("d0", node_name="node-b")  # LUN id 0 in cluster-c1
    await lab.create_disk("d1", node_name="node-a")  # LUN id 1
    lab.hypervisor.add_host("esx-4", "c2")
    lab.hypervisor.move_host("esx-1", "c2")  # node-a's host, in maintenance mode, VM and all

    work = await one_pass(lab, "d0", "d1")

    assert work["d1"].reason == health.HOST_MOVED
    assert not work["d1"].broken
    assert "d0" not in work
    lun = lab.lun("d1")
    assert [(m.igroup, m.lun_id) for m in lab.storage.maps if m.lun == lun.name] == [("cluster-c2", 1)]
    disk = lab.disk("d1")
    assert disk.status.initiator_group == "cluster-c2"
    assert healthy(lab, "d1").reason == health.VERIFIED
    assert not [e for e in lab.operator.events_of("d1") if e.type == "Warning"]


async def test_another_lun_under_the_disks_lun_name_is_named_and_never_attached() -> None:
    lab = Lab.build(default_scope=Scope.HOST)
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    other = replace(lun, naa="naa.6a51146d3000000000000000000000ff")
    lab.storage.luns[lun.name] = other  # deleted and made again by hand: same name, other data
    del lab.hypervisor.vms[lab.vms["node-a"].id].rdms[lun.naa]

    work = await one_pass(lab, "d1")

    assert work["d1"].reason == health.LUN_CHANGED
    said = healthy(lab, "d1")
    assert (said.true, said.reason) == (False, health.LUN_CHANGED)
    ready = lab.disk("d1").status.condition(ConditionType.READY)
    assert ready is not None
    assert not ready.true
    assert "another LUN took its name" in ready.message
    assert other.naa not in [r.naa for r in lab.rdms("node-a")]  # the node is never handed it
    status_lun = lab.disk("d1").status.lun
    assert status_lun is not None
    assert status_lun.naa == lun.naa  # status keeps the NAA of the disk's data


async def test_only_the_vms_own_host_losing_the_lun_is_a_broken_link() -> None:
    """Another host of a cluster scope that does not list the LUN (one that joined the cluster,
    or lost it) is revealed to and told by ClusterReady; the VM's own host is the disk's I/O."""
    lost: set[str] = set()
    lab = Lab.build(default_scope=Scope.CLUSTER)
    masked = lab.hypervisor.sees
    assert masked is not None
    lab.hypervisor.sees = lambda addresses, naa: masked(addresses, naa) and not set(addresses) & lost
    await lab.create_disk("d1", node_name="node-a")  # on esx-1, cluster c1 with esx-2

    lost.add("iqn.1998-01.com.vmware:esx-2")
    work = await one_pass(lab, "d1")
    assert work["d1"].reason == health.HOST_TO_REVEAL
    assert not work["d1"].broken
    assert healthy(lab, "d1").true
    assert not [
        e for e in lab.operator.events_of("d1") if e.type == "Warning" and e.reason == health.HOST_TO_REVEAL
    ]

    lost.clear()
    lost.add("iqn.1998-01.com.vmware:esx-1")
    work = await one_pass(lab, "d1")
    assert work["d1"].reason == health.HOST_LOST_LUN
    assert work["d1"].broken
    assert "esx-1" in work["d1"].message
