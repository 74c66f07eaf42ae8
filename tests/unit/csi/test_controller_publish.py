"""Issue 12 on the fakes (the fake operator runs the real reconcile).

Case 3: a ControllerPublishVolume whose capability contradicts the disk's spec (volumeMode,
fsType) is ALREADY_EXISTS where the disk is published already and INVALID_ARGUMENT elsewhere,
and changes nothing; `readonly` is INVALID_ARGUMENT (PUBLISH_READONLY is not advertised).
Case 5: a publish the operator never attached (a Node whose providerID names no VM) is undone
by ControllerUnpublishVolume whether or not the Node still exists, and a later publish to
another node works; another existing node's publication is never cleared.
Case 2: a publish to a VM with no free SCSI unit is RESOURCE_EXHAUSTED at once (the operator's
Ready=False LimitExceeded for the current generation) and leaves nothing published; one of an
older generation does not end the wait."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import grpc
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from lunbridge.errors import NotFound
from lunbridge.models import ConditionType
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.controller import ControllerService
from lunbridge_csi.kube import Kube
from lunbridge_csi.volume_rules import RPC, Timeouts
from tests.fakes import Lab
from tests.unit.csi.test_controller_requests import Mode, call, cap, code_of, create, publish

BLOCK = cap(block=True)
FAST = Timeouts(provision=1, attach=0.05, detach=0.05)  # waits the operator cannot end


def unpublish(volume_id: str, node_id: str) -> csi_pb2.ControllerUnpublishVolumeRequest:
    return csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id)


# --- case 3: a publish incompatible with the disk ---------------------------------------------
@pytest.mark.parametrize(
    ("made_as", "asked", "words"),
    [
        (cap(), BLOCK, "block access, but volume pvc-1 has volumeMode Filesystem"),
        (cap(), cap(fs="xfs"), "fs_type xfs, but volume pvc-1 has fsType ext4"),
        (BLOCK, cap(), "mount access, but volume pvc-1 has volumeMode Block"),
    ],
    ids=["block-on-filesystem", "xfs-on-ext4", "mount-on-block"],
)
async def test_a_republish_that_contradicts_the_disk_is_already_exists_and_keeps_the_publication(
    service: ControllerService,
    lab: Lab,
    made_as: csi_pb2.VolumeCapability,
    asked: csi_pb2.VolumeCapability,
    words: str,
) -> None:
    await call(service.CreateVolume, create(volume_capabilities=[made_as]))
    published = await call(service.ControllerPublishVolume, publish(lab, "node-a", volume_capability=made_as))
    [rdm] = lab.rdms("node-a")
    patches = len(lab.kube.called("patch_spec"))
    code, details = await code_of(
        service.ControllerPublishVolume, publish(lab, "node-a", volume_capability=asked)
    )
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "published to node node-a" in details
    assert words in details
    assert len(lab.kube.called("patch_spec")) == patches
    assert lab.disk("pvc-1").spec.node_name == "node-a"
    assert lab.rdms("node-a") == [rdm]
    again = await call(service.ControllerPublishVolume, publish(lab, "node-a", volume_capability=made_as))
    assert again == published


async def test_a_contradicting_publish_to_a_node_it_is_not_published_to_is_invalid_argument(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create())
    code, details = await code_of(
        service.ControllerPublishVolume, publish(lab, "node-a", volume_capability=BLOCK)
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "volume_capability" in details
    assert "volumeMode Filesystem" in details
    assert lab.kube.called("patch_spec") == []
    assert lab.disk("pvc-1").spec.node_name is None
    # published elsewhere: the capability is wrong for this volume anywhere, so still INVALID_ARGUMENT
    await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    code, _ = await code_of(service.ControllerPublishVolume, publish(lab, "node-b", volume_capability=BLOCK))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert lab.disk("pvc-1").spec.node_name == "node-a"


async def test_a_readonly_publish_is_invalid_argument_published_or_not(
    service: ControllerService, lab: Lab
) -> None:
    capabilities = await call(service.ControllerGetCapabilities, csi_pb2.ControllerGetCapabilitiesRequest())
    assert RPC.PUBLISH_READONLY not in {c.rpc.type for c in capabilities.capabilities}
    await call(service.CreateVolume, create())
    for mode in (Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_READER_ONLY):
        request = publish(lab, "node-a", volume_capability=cap(mode), readonly=True)
        code, details = await code_of(service.ControllerPublishVolume, request)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "PUBLISH_READONLY" in details
    assert lab.kube.called("patch_spec") == []
    published = await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    code, _ = await code_of(service.ControllerPublishVolume, publish(lab, "node-a", readonly=True))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert lab.disk("pvc-1").spec.node_name == "node-a"
    # a read-only access mode is the node's to keep: the controller publishes it as it is
    reader = publish(lab, "node-a", volume_capability=cap(Mode.SINGLE_NODE_READER_ONLY))
    assert (await call(service.ControllerPublishVolume, reader)) == published


async def test_validate_names_what_contradicts_the_disk(service: ControllerService) -> None:
    await call(service.CreateVolume, create())
    asked = [BLOCK, cap(fs="xfs"), BLOCK]
    answer = await call(
        service.ValidateVolumeCapabilities,
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="pvc-1", volume_capabilities=asked),
    )
    assert not answer.HasField("confirmed")
    assert answer.message == (
        "volume_capability asks for block access, but volume pvc-1 has volumeMode Filesystem; "
        "volume_capability asks for fs_type xfs, but volume pvc-1 has fsType ext4"
    )


# --- case 5: unpublish after the Node is gone ---------------------------------------------------
@pytest.mark.parametrize("node_deleted", [True, False], ids=["node-deleted", "node-kept"])
async def test_an_unpublish_undoes_a_publish_the_operator_never_attached(
    service: ControllerService, lab: Lab, node_deleted: bool
) -> None:
    nowhere = f"vsphere://{uuid.uuid4()}"  # no VM has it
    lab.kube.add_node("node-x", nowhere)
    await call(service.CreateVolume, create())
    request = csi_pb2.ControllerPublishVolumeRequest(
        volume_id="pvc-1", node_id=nowhere, volume_capability=cap()
    )
    code, details = await code_of(ControllerService(lab.kube, FAST).ControllerPublishVolume, request)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "not attached to node-x" in details
    assert lab.disk("pvc-1").spec.node_name == "node-x"
    assert lab.disk("pvc-1").status.attachment is None
    if node_deleted:
        del lab.kube.nodes["node-x"]
    await call(service.ControllerUnpublishVolume, unpublish("pvc-1", nowhere))
    assert "nodeName" not in lab.kube.disks["pvc-1"]["spec"]
    await call(service.ControllerUnpublishVolume, unpublish("pvc-1", nowhere))  # idempotent
    published = await call(service.ControllerPublishVolume, publish(lab, "node-b"))
    [rdm] = lab.rdms("node-b")
    assert published.publish_context["guestAddress"] == str(rdm.guest_address)


async def test_an_unpublish_from_the_vm_the_disk_is_attached_to_clears_it_after_the_node_changed(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create())
    await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    before = lab.provider_id("node-a")
    lab.kube.add_node("node-a", "vsphere://another-vm")  # the Node now names another VM
    await call(service.ControllerUnpublishVolume, unpublish("pvc-1", before))
    assert "nodeName" not in lab.kube.disks["pvc-1"]["spec"]
    assert lab.rdms("node-a") == []


async def test_an_unpublish_never_clears_the_publication_of_another_existing_node(
    service: ControllerService, lab: Lab
) -> None:
    """The disk moved on to node-b while its status still records node-a (the operator is held
    back): the CO's retried unpublish from node-a leaves node-b's publication, and answers once
    the disk has left node-a's VM."""
    fast = ControllerService(lab.kube, FAST)
    await call(service.CreateVolume, create())
    await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    lab.operator.stop()
    code, _ = await code_of(fast.ControllerUnpublishVolume, unpublish("pvc-1", lab.provider_id("node-a")))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    code, _ = await code_of(fast.ControllerPublishVolume, publish(lab, "node-b"))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    attachment = lab.disk("pvc-1").status.attachment
    assert attachment is not None
    assert (lab.disk("pvc-1").spec.node_name, attachment.node) == ("node-b", "node-a")
    retried = asyncio.create_task(
        call(service.ControllerUnpublishVolume, unpublish("pvc-1", lab.provider_id("node-a")))
    )
    await asyncio.sleep(0.05)
    assert not retried.done()  # still attached to node-a's VM
    await lab.operator.start()
    await retried
    assert lab.disk("pvc-1").spec.node_name == "node-b"
    assert lab.rdms("node-a") == []
    assert len(lab.rdms("node-b")) == 1


async def test_the_kube_client_reads_a_nodes_provider_id_and_says_not_found_for_a_missing_node() -> None:
    client: Any = kubernetes.client
    nodes = {
        "n1": client.V1Node(spec=client.V1NodeSpec(provider_id="vsphere://4211")),
        "n2": client.V1Node(spec=client.V1NodeSpec()),
    }

    def read_node(name: str) -> Any:
        if name not in nodes:
            raise ApiException(status=404, reason="Not Found")
        return nodes[name]

    kube = Kube(client.ApiClient())
    kube._core = SimpleNamespace(read_node=read_node)
    assert await kube.node_provider_id("n1") == "vsphere://4211"
    assert await kube.node_provider_id("n2") is None
    with pytest.raises(NotFound, match="read Node n3"):
        await kube.node_provider_id("n3")


# --- case 2: a full VM -----------------------------------------------------------------------
PATIENT = Timeouts(provision=1, attach=30)  # a bound the call must not wait out


async def test_a_publish_to_a_full_vm_is_resource_exhausted_at_once_and_leaves_nothing_published(
    lab: Lab,
) -> None:
    service = ControllerService(lab.kube, PATIENT)
    await call(service.CreateVolume, create())
    lab.hypervisor.hold_units(lab.vms["node-a"])  # disks lunbridge does not manage take every unit
    started = asyncio.get_running_loop().time()
    code, details = await code_of(service.ControllerPublishVolume, publish(lab, "node-a"))
    assert asyncio.get_running_loop().time() - started < 5
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "VM node-a-vm has no free SCSI unit" in details  # the operator's message
    disk = lab.disk("pvc-1")
    assert disk.spec.node_name is None
    assert [patch for (_, patch) in lab.kube.called("patch_spec")] == [
        {"nodeName": "node-a"},
        {"nodeName": None},
    ]
    assert lab.rdms("node-a") == []
    assert lab.storage.mappings_of(lab.lun("pvc-1").name) == []  # the operator undid the mapping
    assert disk.status.attachment is None
    assert disk.status.is_true(ConditionType.READY, disk.metadata.generation)
    # a unit frees up: the CO's retry publishes it
    lab.hypervisor.free_units(lab.vms["node-a"])
    published = await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    [rdm] = lab.rdms("node-a")
    assert published.publish_context["guestAddress"] == str(rdm.guest_address)


async def test_a_full_vm_of_an_older_generation_does_not_end_the_publish(lab: Lab) -> None:
    """The status still says LimitExceeded for node-a while the disk moved on to node-b (the
    operator is held back): the publish to node-b waits, and gets its attachment."""
    lab.hypervisor.hold_units(lab.vms["node-a"])
    stale = await lab.create_disk("pvc-1", node_name="node-a")
    ready = stale.status.condition(ConditionType.READY)
    assert ready is not None
    assert (ready.status.value, ready.reason) == ("False", "LimitExceeded")
    lab.operator.stop()
    await lab.patch("pvc-1", node_name="node-b")
    code, _ = await code_of(ControllerService(lab.kube, FAST).ControllerPublishVolume, publish(lab, "node-b"))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert lab.disk("pvc-1").spec.node_name == "node-b"
    await lab.operator.start()
    published = await call(
        ControllerService(lab.kube, PATIENT).ControllerPublishVolume, publish(lab, "node-b")
    )
    assert published.publish_context["naa"] == lab.lun("pvc-1").naa
    assert len(lab.rdms("node-b")) == 1
