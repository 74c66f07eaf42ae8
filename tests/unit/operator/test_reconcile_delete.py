"""Deleting a disk never orphans what lunbridge made: the teardown follows what status recorded
(a disk never attached needs no VM lookup), a failure on the way down keeps the finalizer and
says why, and the forget annotation lets a disk go while naming what stays behind."""

from __future__ import annotations

import pytest

from lunbridge.api import FORGET_ANNOTATION, VIRTUAL_DISK_PLURAL
from lunbridge.errors import HypervisorUnreachable, Unavailable
from lunbridge.models import ConditionType, Phase
from lunbridge_operator.reconcile import hosts
from tests.fakes import Lab

BAD_PROVIDER_ID = "vsphere://not-a-uuid"


async def test_a_disk_on_a_node_whose_provider_id_names_no_vm_deletes_its_lun() -> None:
    lab = Lab.build()
    lab.kube.add_node("node-x", BAD_PROVIDER_ID)
    disk = await lab.create_disk("d1", node_name="node-x")
    lun = lab.lun("d1")
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert (ready.status.value, ready.reason) == ("False", "NotFound")  # retried: the Node may be fixed
    assert "does not hold a UUID" in ready.message
    assert disk.status.attachment is None

    lookups = len(lab.hypervisor.called("find_vm"))
    await lab.delete("d1")
    assert "d1" not in lab.kube.disks
    assert lun.name not in lab.storage.luns
    assert len(lab.hypervisor.called("find_vm")) == lookups  # never attached: no VM to look for


async def test_a_failure_on_the_way_down_keeps_the_finalizer_and_says_why() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    lab.storage.fail_next("delete_lun", Unavailable("the storage server is down"), times=2)
    await lab.delete("d1")
    assert "d1" in lab.kube.disks, "the disk went while its LUN is still there"
    status = lab.disk("d1").status
    assert status.phase is Phase.DELETING
    ready = status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.reason == "DeleteBlocked"
    assert "the storage server is down" in ready.message
    assert lun.name in ready.message
    assert "DeleteFailed" in lab.operator.reasons("d1")
    failures = lab.operator.failures_of("d1")
    assert failures
    assert all(f.retryable for f in failures)

    await lab.operator.retry()  # the second queued fault
    assert "d1" in lab.kube.disks
    await lab.operator.retry()
    assert "d1" not in lab.kube.disks
    assert lun.name not in lab.storage.luns
    assert lab.hypervisor.all_rdms() == []


async def test_vcenter_down_at_the_rescan_after_the_unmap_keeps_the_disk_until_its_hosts_rescanned() -> None:
    """A host that cannot rescan does not hold up a delete, but vCenter being down is not that:
    no host could, and every host of the igroup would keep listing the unmapped LUN. The disk
    waits; the retry finds no map left and still rescans the hosts of the igroup status names."""
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    igroup = lab.disk("d1").status.initiator_group
    assert igroup is not None
    before = len(lab.hypervisor.called("rescan"))
    lab.hypervisor.fail_next("rescan", HypervisorUnreachable("vCenter cannot be reached"))
    await lab.delete("d1")
    assert "d1" in lab.kube.disks
    assert lab.storage.mappings_of(lun=lun.name) == []  # unmapped before the rescan failed
    assert lab.disk("d1").status.initiator_group == igroup  # so the retry knows whose hosts
    assert "cannot be reached" in str(lab.operator.failures_of("d1")[-1].error)

    await lab.operator.retry()
    assert "d1" not in lab.kube.disks
    assert lun.name not in lab.storage.luns
    rescanned = {host.name for (host, _) in lab.hypervisor.called("rescan")[before + 1 :]}
    expected = {h.name for h in await hosts.of_igroups(lab.services, [igroup])}
    assert expected
    assert expected <= rescanned
    assert "RescanFailed" not in lab.operator.reasons("d1")


@pytest.mark.parametrize(
    "change", [{"node_name": "node-c"}, {"scope": "cluster"}], ids=["new node", "new scope"]
)
async def test_vcenter_down_at_the_rescan_after_a_move_rescans_the_old_igroups_hosts_on_retry(
    change: dict[str, str],
) -> None:
    """The same when the disk leaves its igroup for another (a node on another host, a wider
    scope): the failure's status write keeps naming the old igroup, whose hosts the retry
    rescans although its map is gone."""
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a", scope="host")
    old = lab.disk("d1").status.initiator_group
    assert old is not None
    old_hosts = {h.name for h in await hosts.of_igroups(lab.services, [old])}
    assert old_hosts == {"esx-1"}
    lab.hypervisor.fail_next("rescan", HypervisorUnreachable("vCenter cannot be reached"))
    await lab.patch("d1", **change)
    assert lab.storage.mappings_of(lun=lab.lun("d1").name, igroup=old) == []
    assert lab.disk("d1").status.initiator_group == old
    before = len(lab.hypervisor.called("rescan"))

    await lab.operator.retry()
    rescanned = {host.name for (host, _) in lab.hypervisor.called("rescan")[before:]}
    assert old_hosts <= rescanned
    disk = lab.disk("d1")
    assert disk.status.initiator_group != old
    assert disk.status.condition(ConditionType.READY) is not None


async def test_the_forget_annotation_lets_a_stuck_disk_go_and_names_what_is_left() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    lab.storage.fail_next("delete_lun", Unavailable("the storage server is down"), times=100)
    await lab.delete("d1")
    assert "d1" in lab.kube.disks
    lab.kube.objects[VIRTUAL_DISK_PLURAL]["d1"]["metadata"]["annotations"] = {FORGET_ANNOTATION: "true"}
    await lab.operator.retry()
    assert "d1" not in lab.kube.disks
    [forgotten] = [e for e in lab.operator.events_of("d1") if e.reason == "Forgotten"]
    assert forgotten.type == "Warning"
    assert lun.name in forgotten.message
    assert lun.name in lab.storage.luns  # left behind, as the Event says


async def test_a_disk_a_persistent_volume_or_attachment_uses_is_deleted_only_once_free() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    lun = lab.lun("d1")
    lab.kube.users["d1"] = ["PersistentVolume d1 (Bound)", "VolumeAttachment csi-1 (node node-a)"]
    await lab.delete("d1")
    assert "d1" in lab.kube.disks
    assert lab.rdms("node-a"), "the disk was cut from the running VM"
    ready = lab.disk("d1").status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.reason == "DeleteBlocked"
    assert "PersistentVolume d1 (Bound)" in ready.message
    assert "VolumeAttachment csi-1" in ready.message

    lab.kube.users["d1"] = []  # the PVC went: the PV is Released, the attachment gone
    await lab.operator.retry()
    assert "d1" not in lab.kube.disks
    assert lun.name not in lab.storage.luns
