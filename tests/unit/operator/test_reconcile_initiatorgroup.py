"""InitiatorGroup objects through the real handlers on the fakes: a group a user wrote is
honoured as written, a group's igroup is kept on every backend that holds it, a group is
not deleted while a LUN is mapped to it, and a host that left the cluster keeps its initiators
while a VM on it still has a LUN of the group."""

from __future__ import annotations

from lunbridge.api import INITIATOR_GROUP_PLURAL
from lunbridge.hypervisor.base import Scope
from lunbridge.models import ConditionType, InitiatorGroup, InitiatorGroupSpec, ObjectMeta, OsType, Phase
from lunbridge_operator.reconcile import initiatorgroup
from tests.fakes import Lab

ESX1_IQN = "iqn.1998-01.com.vmware:esx-1"
ESX2_IQN = "iqn.1998-01.com.vmware:esx-2"


def group_of(lab: Lab, name: str) -> InitiatorGroup:
    return InitiatorGroup.from_dict(lab.kube.read(INITIATOR_GROUP_PLURAL, name))


def held(lab: Lab, name: str = "cluster-c1") -> list[str]:
    return list(lab.storage.igroups[name].initiators)


async def resync(lab: Lab, name: str) -> tuple[InitiatorGroup, list[tuple[str, str]]]:
    """The group's periodic (or woken) pass; the group after it and the events it posted."""
    group = group_of(lab, name)
    posted: list[tuple[str, str]] = []

    def events(reason: str, message: str, *, warning: bool = False) -> None:
        posted.append((reason, message))

    generation = group.metadata.generation
    await initiatorgroup.reconcile(
        lab.services, name, generation, group.spec, group.status, events, managed=group.managed
    )
    return group_of(lab, name), posted


async def test_a_users_group_with_os_type_linux_is_honoured_by_the_disks_that_use_it() -> None:
    lab = Lab.build(default_scope=Scope.HOST)
    mine = InitiatorGroup(
        metadata=ObjectMeta(name="host-esx-1"), spec=InitiatorGroupSpec(hosts=["esx-1"], os_type=OsType.LINUX)
    )
    await lab.kube.create(INITIATOR_GROUP_PLURAL, mine.body())
    assert lab.storage.igroups["host-esx-1"].os_type == OsType.LINUX
    assert lab.storage.igroups["host-esx-1"].initiators == (ESX1_IQN,)
    group = group_of(lab, "host-esx-1")
    assert not group.managed
    assert group.status.is_true(ConditionType.READY)
    assert [row.address for row in group.status.initiators] == [ESX1_IQN]
    disk = await lab.create_disk("d1", node_name="node-a")
    assert disk.status.phase is Phase.READY
    assert disk.status.initiator_group == "host-esx-1"
    assert lab.storage.igroups["host-esx-1"].os_type == OsType.LINUX
    assert group_of(lab, "host-esx-1").spec == mine.spec
    assert lab.storage.called("create_igroup") == [
        ("host-esx-1", mine.spec.protocol, [ESX1_IQN], OsType.LINUX)
    ]


async def test_a_groups_igroup_is_kept_on_every_backend_that_holds_it() -> None:
    lab = Lab.build(("lab", "fast"))
    await lab.create_disk("d1", node_name="node-a", backend="fast")
    group = group_of(lab, "cluster-c1")
    assert group.managed
    for storage in lab.storages.values():
        assert storage.igroups["cluster-c1"].initiators == (ESX1_IQN, ESX2_IQN)
    assert group.status.backend == "fast, lab"
    assert group.status.hosts == ["esx-1", "esx-2"]
    assert group.status.mapped_luns == 1
    assert lab.storages["fast"].maps[0].lun == lab.lun("d1", "fast").name
    assert lab.storages["lab"].maps == []


async def test_a_group_is_not_deleted_while_a_lun_is_mapped_to_it() -> None:
    lab = Lab.build(("lab", "fast"))
    await lab.create_disk("d1", node_name="node-a")
    await lab.kube.delete_object(INITIATOR_GROUP_PLURAL, "cluster-c1")
    [refused] = lab.operator.failures_of("cluster-c1")
    assert refused.retryable
    assert "still has 1 LUNs mapped on backend lab" in str(refused.error)
    assert lab.operator.events_of("cluster-c1")[-1].reason == "DeleteFailed"
    assert group_of(lab, "cluster-c1").metadata.deletion_timestamp
    assert "cluster-c1" in lab.storage.igroups
    await lab.delete("d1")
    await lab.operator.retry()
    assert "cluster-c1" not in lab.kube.objects[INITIATOR_GROUP_PLURAL]
    assert all("cluster-c1" not in storage.igroups for storage in lab.storages.values())
    assert lab.operator.reasons("cluster-c1")[-1] == "Deleted"


async def test_a_host_that_left_the_cluster_keeps_its_initiators_while_a_vm_on_it_has_a_lun_here() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-b")  # node-b runs on esx-2, the group's spec.hosts
    assert held(lab) == [ESX1_IQN, ESX2_IQN]
    lab.hypervisor.move_host("esx-2", None)
    group, posted = await resync(lab, "cluster-c1")
    assert held(lab) == [ESX1_IQN, ESX2_IQN]
    assert group.status.hosts == ["esx-1", "esx-2"]
    assert group.status.retained_hosts == ["esx-2"]
    assert [reason for reason, _ in posted] == ["HostRetained"]
    assert "host esx-2 left the group's scope" in posted[0][1]
    _, posted = await resync(lab, "cluster-c1")
    assert posted == []  # said once
    await lab.create_disk("d2", node_name="node-a")  # a disk's map step adds, never removes
    assert held(lab) == [ESX1_IQN, ESX2_IQN]
    lab.hypervisor.move_vm(lab.vms["node-b"], "esx-1")
    group, posted = await resync(lab, "cluster-c1")
    assert held(lab) == [ESX1_IQN]
    assert (group.status.hosts, group.status.retained_hosts) == (["esx-1"], [])
    assert [reason for reason, _ in posted] == ["Synced"]


async def test_a_host_that_left_the_cluster_without_a_vm_of_a_lun_here_is_dropped_at_once() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-b")
    lab.hypervisor.move_host("esx-1", None)  # node-a runs there, with no disk
    group, posted = await resync(lab, "cluster-c1")
    assert held(lab) == [ESX2_IQN]
    assert (group.status.hosts, group.status.retained_hosts) == (["esx-2"], [])
    assert [reason for reason, _ in posted] == ["Synced"]
