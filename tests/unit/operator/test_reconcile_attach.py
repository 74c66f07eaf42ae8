"""Attaching through the real reconcile steps on the fakes: masking to the host's initiators, the
RDM and what the status tells the node, moving between hosts, detaching, a VM without free
units, deletes after the VM or the LUN vanished, and a periodic re-check that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from lunbridge.hypervisor.base import Scope
from lunbridge.models import AttachMode, ConditionType, InitiatorGroup, OsType, Phase, PublishContext
from lunbridge.san import ScsiAddress
from tests.fakes import Lab

ESX1_IQN = "iqn.1998-01.com.vmware:esx-1"
ESX3_IQN = "iqn.1998-01.com.vmware:esx-3"


async def test_attaching_masks_the_lun_to_the_hosts_initiators_and_adds_an_rdm() -> None:
    lab = Lab.build(default_scope=Scope.HOST)
    disk = await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    group = InitiatorGroup.from_dict(lab.kube.read("initiatorgroups", "host-esx-1"))
    assert group.managed
    assert group.spec.hosts == ["esx-1"]
    assert group.spec.os_type is OsType.VMWARE
    igroup = lab.storage.igroups["host-esx-1"]
    assert igroup.initiators == (ESX1_IQN,)
    assert igroup.os_type == group.spec.os_type
    [mapping] = lab.storage.maps
    assert (mapping.lun, mapping.igroup) == (lun.name, "host-esx-1")
    assert lab.hypervisor.rescans["esx-1"] >= 1
    assert lab.hypervisor.portals["esx-1"] == {lab.storage.portal}
    [rdm] = lab.rdms("node-a")
    assert rdm.naa == lun.naa
    status = disk.status
    assert status.phase is Phase.READY
    for kind in set(ConditionType) - {ConditionType.CLUSTER_READY}:
        assert status.is_true(kind, generation=1), kind
    # esx-1 is in cluster c1: a VM whose disk only its host sees cannot move (what scope host gives up)
    pinned = status.condition(ConditionType.CLUSTER_READY)
    assert pinned is not None
    assert (pinned.true, pinned.reason) == (False, "NotMovable")
    assert "esx-1" in pinned.message
    assert status.initiator_group == "host-esx-1"
    assert status.lun is not None
    assert status.lun.id == mapping.lun_id
    attachment = status.attachment
    assert attachment is not None
    assert attachment.mode is AttachMode.HYPERVISOR
    assert (attachment.node, attachment.vm_id, attachment.host) == ("node-a", lab.vms["node-a"].id, "esx-1")
    assert attachment.provider_id == lab.provider_id("node-a")
    assert attachment.pci_slot == rdm.pci_slot
    assert attachment.guest_address == str(rdm.guest_address)
    assert attachment.detail == rdm.detail()
    assert PublishContext.from_status(status) == PublishContext(
        AttachMode.HYPERVISOR,
        lun.naa,
        pci_slot=rdm.pci_slot,
        guest_address=ScsiAddress(0, rdm.unit_number, 0),
    )
    assert lab.operator.reasons("d1") == ["Provisioned", "Mapped", "Attached"]
    assert lab.operator.reasons("host-esx-1") == ["Synced"]


async def test_moving_to_a_node_on_another_host_moves_the_map_and_the_rdm_not_the_lun() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")  # esx-1, in cluster c1
    lun = lab.lun("d1")
    [old_rdm] = lab.rdms("node-a")
    rescans = lab.hypervisor.rescans["esx-1"]
    moved = await lab.patch("d1", node_name="node-c")  # esx-3, standalone
    assert lab.rdms("node-a") == []
    [rdm] = lab.rdms("node-c")
    assert rdm.naa == old_rdm.naa == lun.naa
    assert list(lab.storage.luns.values()) == [lun]
    assert [(m.lun, m.igroup) for m in lab.storage.maps] == [(lun.name, "host-esx-3")]
    assert lab.storage.igroups["host-esx-3"].initiators == (ESX3_IQN,)
    assert lab.hypervisor.rescans["esx-1"] > rescans  # the old host forgets the LUN
    assert moved.status.phase is Phase.READY
    assert moved.current
    assert moved.status.attachment is not None
    assert (moved.status.attachment.node, moved.status.attachment.host) == ("node-c", "esx-3")
    assert moved.status.initiator_group == "host-esx-3"
    reasons = lab.operator.reasons("d1")
    assert reasons[reasons.index("Detached") :] == ["Detached", "Unmapped", "Mapped", "Attached"]


async def test_clearing_node_name_detaches_and_unmaps_but_keeps_the_lun() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    detached = await lab.patch("d1", node_name=None)
    assert lab.rdms("node-a") == []
    assert lab.storage.maps == []
    assert list(lab.storage.luns.values()) == [lun]
    assert detached.status.phase is Phase.READY
    assert detached.status.attachment is None
    assert detached.status.initiator_group is None
    assert not detached.status.is_true(ConditionType.ATTACHED)
    assert not detached.status.is_true(ConditionType.MAPPED)
    assert detached.status.is_true(ConditionType.READY, generation=2)
    assert "attachment" not in lab.kube.disks["d1"]["status"]


async def test_a_vm_without_a_free_unit_is_not_ready_and_is_retried() -> None:
    lab = Lab.build(max_disks=1)
    await lab.create_disk("d1", node_name="node-a")
    full = await lab.create_disk("d2", node_name="node-a")
    ready = full.status.condition(ConditionType.READY)
    assert ready is not None
    assert (ready.true, ready.reason) == (False, "LimitExceeded")
    assert "no free SCSI unit" in (full.status.message or "")
    assert full.status.phase is not Phase.FAILED
    [failure] = lab.operator.failures_of("d2")
    assert failure.retryable
    assert lab.operator.events_of("d2")[-1].reason == "LimitExceeded"
    await lab.patch("d1", node_name=None)  # frees the unit
    await lab.operator.retry()
    assert lab.disk("d2").status.phase is Phase.READY
    assert [rdm.naa for rdm in lab.rdms("node-a")] == [lab.lun("d2").naa]


@pytest.mark.parametrize(("vm_gone", "lun_gone"), [(True, False), (False, True), (True, True)])
async def test_delete_completes_when_the_vm_or_the_lun_is_already_gone(vm_gone: bool, lun_gone: bool) -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    if vm_gone:
        lab.hypervisor.remove_vm(lab.vms["node-a"])
    if lun_gone:  # a storage admin removed it
        await lab.storage.unmap_lun(lun.name, "cluster-c1")
        await lab.storage.delete_lun(lun.name)
    deletes = len(lab.storage.called("delete_lun"))
    await lab.delete("d1")
    assert "d1" not in lab.kube.disks
    assert lab.operator.failures == []
    assert lab.storage.luns == {}
    assert lab.storage.maps == []
    assert lab.hypervisor.all_rdms() == []
    if lun_gone:  # the backend still got to take away what it made on the way to the LUN
        assert lab.storage.called("delete_lun")[deletes:] == [(lun.name,)]


async def test_a_periodic_recheck_of_a_ready_disk_writes_nothing() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    before = lab.kube.read("virtualdisks", "d1")
    events = len(lab.operator.events)
    status_writes = len(lab.kube.called("patch_status"))
    storage = lab.storage
    held = (dict(storage.luns), list(storage.maps), dict(storage.igroups), lab.rdms("node-a"))
    looked = len(storage.called("list_luns"))
    await lab.operator.recheck("d1")
    assert len(lab.kube.called("patch_status")) == status_writes
    assert lab.kube.read("virtualdisks", "d1") == before  # resourceVersion too
    assert len(lab.operator.events) == events
    assert (dict(storage.luns), list(storage.maps), dict(storage.igroups), lab.rdms("node-a")) == held
    assert len(storage.called("list_luns")) > looked  # it did check


async def test_a_create_writes_status_twice_before_the_attach_and_when_ready() -> None:
    """Each status write is a PATCH and a watch event for every watcher: the provision and the
    map are found again by name, so only the VM about to get the RDM and the end are written."""
    lab = Lab.build(default_scope=Scope.HOST)
    await lab.create_disk("d1", node_name="node-a")
    writes = [status for plural, name, status in lab.kube.called("patch_status") if name == "d1"]
    assert [w.get("phase") for w in writes] == ["Attaching", "Ready"]
    assert writes[0]["attachment"]["vmId"] == lab.vms["node-a"].id
    assert writes[0]["lun"]["naa"] == lab.lun("d1").naa


async def test_the_hosts_initiator_group_seen_by_the_watch_is_not_read_again() -> None:
    """A disk's mask step takes its host's InitiatorGroup from what kopf's watch saw (the
    operator's index); one the watch has not seen yet is read from the API, or made."""
    lab = Lab.build()
    seen: dict[str, dict[str, Any]] = {}
    lab.services.known_igroup = seen.get
    await lab.create_disk("d1", node_name="node-a")
    assert [args for args in lab.kube.called("get") if args[0] == "initiatorgroups"] == [
        ("initiatorgroups", "cluster-c1")
    ]
    seen["cluster-c1"] = lab.kube.read("initiatorgroups", "cluster-c1")
    await lab.create_disk("d2", node_name="node-a")
    assert len([args for args in lab.kube.called("get") if args[0] == "initiatorgroups"]) == 1
    assert lab.disk("d2").status.is_true(ConditionType.READY)


async def test_a_node_whose_provider_id_the_watch_saw_is_not_read() -> None:
    """The node's providerID comes from the operator's index of Nodes when it has one; a Node
    it has not seen with one is read."""
    lab = Lab.build()
    seen: dict[str, str] = {}
    lab.services.known_provider_id = seen.get
    await lab.create_disk("d1", node_name="node-a")
    assert lab.kube.called("node") == [("node-a",)]
    seen["node-a"] = lab.kube.nodes["node-a"]["spec"]["provider_id"]
    await lab.create_disk("d2", node_name="node-a")
    assert lab.kube.called("node") == [("node-a",)]
    assert lab.disk("d2").status.is_true(ConditionType.READY)


async def test_a_node_the_watch_saw_in_hypervisor_mode_is_not_read_and_others_are() -> None:
    """The operator's index of LunbridgeNodes spares the read of a guest's own (mode
    `hypervisor`); a node it saw in `initiator` mode, or has not seen, is read, so its
    accepted initiators are current."""
    lab = Lab.build()
    seen: dict[str, str] = {}
    lab.services.known_node_mode = seen.get

    def reads() -> int:
        return len([args for args in lab.kube.called("get") if args[0] == "lunbridgenodes"])

    await lab.create_disk("d1", node_name="node-a")
    assert reads() == 1
    seen["node-a"] = "hypervisor"
    await lab.create_disk("d2", node_name="node-a")
    assert reads() == 1
    assert lab.disk("d2").status.is_true(ConditionType.READY)
    seen["node-a"] = "initiator"
    await lab.create_disk("d3", node_name="node-a")
    assert reads() == 2


def map_calls(lab: Lab, since: int) -> list[tuple[str, str, str]]:
    return [
        (c.method, c.args[0], c.args[1])
        for c in lab.storage.calls[since:]
        if c.method in ("map_lun", "unmap_lun")
    ]


async def test_a_vm_moved_off_its_host_gets_the_lun_on_the_new_host_with_its_id_before_the_old_map_goes() -> (
    None
):
    lab = Lab.build(default_scope=Scope.HOST)
    await lab.create_disk("d1", node_name="node-a")  # LUN id 0 in igroup host-esx-1
    await lab.create_disk("d2", node_name="node-a")  # LUN id 1
    lun = lab.lun("d2")
    lab.hypervisor.move_vm(lab.vms["node-a"], "esx-2")  # a cold migration, or an HA restart
    since = len(lab.storage.calls)

    await lab.operator.recheck("d2")

    assert map_calls(lab, since) == [
        ("map_lun", lun.name, "host-esx-2"),
        ("unmap_lun", lun.name, "host-esx-1"),
    ]
    assert [(m.igroup, m.lun_id) for m in lab.storage.maps if m.lun == lun.name] == [("host-esx-2", 1)]
    disk = lab.disk("d2")
    assert disk.status.phase is Phase.READY
    assert disk.status.lun is not None
    assert (disk.status.initiator_group, disk.status.lun.id) == ("host-esx-2", 1)
    assert disk.status.attachment is not None
    assert disk.status.attachment.host == "esx-2"
    assert lun.naa in [r.naa for r in lab.rdms("node-a")]
    assert "Detached" not in lab.operator.reasons("d2")
    assert not [e for e in lab.operator.events_of("d2") if e.type == "Warning"]


async def test_a_lun_id_taken_on_the_new_host_is_said_in_a_warning() -> None:
    lab = Lab.build(default_scope=Scope.HOST)
    for name, node in (("d1", "node-a"), ("d2", "node-a"), ("d3", "node-b"), ("d4", "node-b")):
        await lab.create_disk(name, node_name=node)  # ids 0 and 1 in host-esx-1 and host-esx-2
    lab.hypervisor.move_vm(lab.vms["node-a"], "esx-2")

    await lab.operator.recheck("d2")

    lun = lab.lun("d2")
    assert [(m.igroup, m.lun_id) for m in lab.storage.maps if m.lun == lun.name] == [("host-esx-2", 2)]
    [warning] = [e for e in lab.operator.events_of("d2") if e.type == "Warning"]
    assert warning.reason == "LunIdChanged"
    assert "LUN id 1 is taken in igroup host-esx-2" in warning.message
    assert lab.disk("d2").status.phase is Phase.READY
