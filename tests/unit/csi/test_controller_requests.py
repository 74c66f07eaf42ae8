"""The controller service against the fake API server with the fake operator running the real
reconcile (tests/fakes): request validation (INVALID_ARGUMENT with a message), sizes, idempotency
and its limits, the publish context as the operator's status gives it, pagination, and waits
that end when the operator is held back or gives up."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from lunbridge.api import FINALIZER
from lunbridge.errors import AlreadyExists, Unavailable
from lunbridge.models import AttachMode, PublishContext, VirtualDiskSpec
from lunbridge.san import ScsiAddress
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.controller import ControllerService
from lunbridge_csi.volume_rules import GiB, MiB, Timeouts, size_for, volume_id_for
from tests.fakes import Lab
from tests.unit.csi.test_errors import Aborted, FakeContext

Mode = csi_pb2.VolumeCapability.AccessMode.Mode


def cap(mode: int = Mode.SINGLE_NODE_WRITER, block: bool = False, fs: str = "") -> csi_pb2.VolumeCapability:
    access = csi_pb2.VolumeCapability.AccessMode(mode=mode)  # type: ignore[arg-type]
    if block:
        return csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=access)
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs), access_mode=access
    )


async def call(method: Any, request: Any) -> Any:
    return await method(request, FakeContext())


async def code_of(method: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(Aborted) as caught:
        await call(method, request)
    return caught.value.code, caught.value.details


def create(name: str = "pvc-1", size: int = 0, limit: int = 0, **kw: Any) -> csi_pb2.CreateVolumeRequest:
    kw.setdefault("volume_capabilities", [cap()])
    return csi_pb2.CreateVolumeRequest(
        name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size, limit_bytes=limit), **kw
    )


def publish(
    lab: Lab, node: str, volume_id: str = "pvc-1", **kw: Any
) -> csi_pb2.ControllerPublishVolumeRequest:
    """To `node`'s VM, with a mount capability unless `volume_capability` says otherwise."""
    kw.setdefault("volume_capability", cap())
    return csi_pb2.ControllerPublishVolumeRequest(volume_id=volume_id, node_id=lab.provider_id(node), **kw)


# --- pure checks ----------------------------------------------------------------------------
def test_volume_ids_are_the_name_when_it_is_a_dns_label_else_a_stable_hash() -> None:
    assert volume_id_for("pvc-0b9c1aa9-ac98") == "pvc-0b9c1aa9-ac98"
    odd = volume_id_for("sanity Controller Service CreateVolume-ABC")
    assert odd.startswith("csi-")
    assert len(odd) == 44
    assert odd == odd.lower()
    assert odd == volume_id_for("sanity Controller Service CreateVolume-ABC")
    assert volume_id_for("x" * 64).startswith("csi-")


@pytest.mark.parametrize(
    ("required", "limit", "size"),
    [(0, 0, GiB), (0, 10 * MiB, 10 * MiB), (1, 0, MiB), (MiB + 1, 0, 2 * MiB), (5 * GiB, 5 * GiB, 5 * GiB)],
)
def test_sizes_default_to_1gi_and_round_up_to_mib(required: int, limit: int, size: int) -> None:
    assert size_for(csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit)) == size


async def test_publish_context_is_the_operators_attachment_as_strings(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create())
    published = await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    context = dict(published.publish_context)
    [rdm] = lab.rdms("node-a")
    expected = PublishContext(
        AttachMode.HYPERVISOR, lab.lun("pvc-1").naa, pci_slot=rdm.pci_slot,
        guest_address=ScsiAddress(0, rdm.unit_number, 0),
    )  # fmt: skip
    assert context == expected.to_dict()
    assert context == {"mode": "hypervisor", "naa": rdm.naa, "pciSlot": str(rdm.pci_slot),
                       "guestAddress": f"0:{rdm.unit_number}:0"}  # fmt: skip
    assert PublishContext.from_dict(context) == expected


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (create(name=""), "name is required"),
        (create(volume_capabilities=[]), "volume_capabilities is required"),
        (create(volume_capabilities=[cap(Mode.MULTI_NODE_MULTI_WRITER)]), "MULTI_NODE_MULTI_WRITER"),
        (
            create(
                volume_capabilities=[csi_pb2.VolumeCapability(mount=csi_pb2.VolumeCapability.MountVolume())]
            ),
            "access_mode",
        ),
        (create(volume_capabilities=[cap(fs="ntfs")]), "ntfs"),
        (create(volume_capabilities=[cap(), cap(block=True)]), "mixes mount and block"),
        (create(parameters={"colour": "blue"}), "unknown parameter 'colour'"),
        (create(parameters={"fsType": "btrfs"}), "btrfs"),
        (create(parameters={"scope": "planet"}), "planet"),
        (create(parameters={"fsType": "xfs"}, volume_capabilities=[cap(fs="ext4")]), "contradicts"),
        (create(size=2 * GiB, limit=GiB), "above limit_bytes"),
        (create(size=-1), "negative"),
    ],
)
async def test_bad_create_requests_are_invalid_argument(
    service: ControllerService, request_: csi_pb2.CreateVolumeRequest, words: str
) -> None:
    code, details = await code_of(service.CreateVolume, request_)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert words in details


def clone_of(volume_id: str) -> csi_pb2.VolumeContentSource:
    return csi_pb2.VolumeContentSource(volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=volume_id))


async def test_a_volume_source_is_a_clone_at_least_as_large_as_its_source(
    service: ControllerService, lab: Lab
) -> None:
    code, details = await code_of(service.CreateVolume, create(volume_content_source=clone_of("pvc-0")))
    assert code is grpc.StatusCode.NOT_FOUND
    assert "source volume pvc-0" in details
    await call(service.CreateVolume, create(name="pvc-0", size=64 * MiB))
    clone = await call(service.CreateVolume, create(size=MiB, volume_content_source=clone_of("pvc-0")))
    assert clone.volume.content_source.volume.volume_id == "pvc-0"
    assert clone.volume.capacity_bytes == 64 * MiB
    assert lab.kube.disks["pvc-1"]["spec"]["source"] == {"virtualDisk": "pvc-0"}
    assert lab.lun("pvc-1").size_bytes == 64 * MiB
    assert lab.lun("pvc-1").naa != lab.lun("pvc-0").naa
    again = await call(service.CreateVolume, create(size=MiB, volume_content_source=clone_of("pvc-0")))
    assert again.volume == clone.volume
    # the same name without the source is another volume
    code, _ = await code_of(service.CreateVolume, create(size=64 * MiB))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    code, _ = await code_of(
        service.CreateVolume, create(name="pvc-2", limit=32 * MiB, volume_content_source=clone_of("pvc-0"))
    )
    assert code is grpc.StatusCode.OUT_OF_RANGE


async def test_a_size_that_fits_no_mib_step_is_out_of_range(service: ControllerService) -> None:
    code, _ = await code_of(service.CreateVolume, create(size=MiB + 1, limit=MiB + 2))
    assert code is grpc.StatusCode.OUT_OF_RANGE


@pytest.mark.parametrize(
    ("method", "request_", "words"),
    [
        ("DeleteVolume", csi_pb2.DeleteVolumeRequest(), "volume_id is required"),
        (
            "ControllerPublishVolume",
            csi_pb2.ControllerPublishVolumeRequest(node_id="n", volume_capability=cap()),
            "volume_id is required",
        ),
        (
            "ControllerPublishVolume",
            csi_pb2.ControllerPublishVolumeRequest(volume_id="v", volume_capability=cap()),
            "node_id is required",
        ),
        (
            "ControllerPublishVolume",
            csi_pb2.ControllerPublishVolumeRequest(volume_id="v", node_id="n"),
            "volume_capability is required",
        ),
        ("ControllerUnpublishVolume", csi_pb2.ControllerUnpublishVolumeRequest(node_id="n"), "volume_id"),
        (
            "ValidateVolumeCapabilities",
            csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="v"),
            "volume_capabilities is required",
        ),
        ("ListVolumes", csi_pb2.ListVolumesRequest(max_entries=-1), "negative"),
        ("ControllerExpandVolume", csi_pb2.ControllerExpandVolumeRequest(volume_id="v"), "capacity_range"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    service: ControllerService, method: str, request_: Any, words: str
) -> None:
    code, details = await code_of(getattr(service, method), request_)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert words in details


# --- behaviour against the fakes --------------------------------------------------------------
async def test_create_is_idempotent_and_a_different_size_already_exists(
    service: ControllerService, lab: Lab
) -> None:
    first = await call(service.CreateVolume, create(size=64 * MiB, parameters={"scope": "host"}))
    again = await call(service.CreateVolume, create(size=64 * MiB, parameters={"scope": "host"}))
    assert first.volume == again.volume
    assert first.volume.capacity_bytes == 64 * MiB
    assert lab.disk("pvc-1").spec == VirtualDiskSpec(size="64Mi", scope="host")
    # made with the operator's finalizer: no round of the operator's own to add it
    assert lab.disk("pvc-1").metadata.finalizers == [FINALIZER]
    assert len(lab.storage.luns) == 1
    code, _ = await code_of(service.CreateVolume, create(size=128 * MiB, parameters={"scope": "host"}))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    code, details = await code_of(
        service.CreateVolume, create(size=64 * MiB, parameters={"scope": "cluster"})
    )
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "scope" in details
    assert len(lab.storage.luns) == 1


async def test_a_second_call_on_a_volume_in_flight_is_aborted(service: ControllerService, lab: Lab) -> None:
    lab.operator.stop()
    made = asyncio.Event()

    async def seen(plural: str, name: str) -> None:
        made.set()

    lab.kube.watch(seen)
    first = asyncio.create_task(call(service.CreateVolume, create()))
    await made.wait()  # CreateVolume made the disk; it waits for the operator now
    code, _ = await code_of(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    assert code is grpc.StatusCode.ABORTED
    await lab.operator.start()
    assert (await first).volume.volume_id == "pvc-1"
    assert lab.kube.called("delete") == []


async def test_publish_unpublish_and_delete(service: ControllerService, lab: Lab) -> None:
    await call(service.CreateVolume, create())
    published = await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    [rdm] = lab.rdms("node-a")
    assert published.publish_context["guestAddress"] == str(rdm.guest_address)
    assert (await call(service.ControllerPublishVolume, publish(lab, "node-a"))) == published
    code, _ = await code_of(service.ControllerPublishVolume, publish(lab, "node-b"))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    code, _ = await code_of(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    unknown = csi_pb2.ControllerPublishVolumeRequest(
        volume_id="pvc-1", node_id="vsphere://nobody", volume_capability=cap()
    )
    code, _ = await code_of(service.ControllerPublishVolume, unknown)
    assert code is grpc.StatusCode.NOT_FOUND
    # unpublish from another node changes nothing; from the right one it detaches
    await call(
        service.ControllerUnpublishVolume,
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id="pvc-1", node_id=lab.provider_id("node-b")),
    )
    assert lab.disk("pvc-1").spec.node_name == "node-a"
    assert lab.rdms("node-a") == [rdm]
    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id="pvc-1", node_id=lab.provider_id("node-a"))
    await call(service.ControllerUnpublishVolume, unpublish)
    assert "nodeName" not in lab.kube.disks["pvc-1"]["spec"]
    assert lab.rdms("node-a") == []
    assert lab.storage.maps == []
    await call(service.ControllerUnpublishVolume, unpublish)
    await call(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    await call(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    await call(service.ControllerUnpublishVolume, unpublish)
    assert lab.kube.disks == {}
    assert lab.storage.luns == {}


async def test_list_volumes_pages_and_refuses_a_bad_token(service: ControllerService) -> None:
    for index in range(5):
        await call(service.CreateVolume, create(name=f"pvc-{index}", size=MiB))
    seen, token, pages = [], "", 0
    while True:
        page = await call(
            service.ListVolumes, csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token)
        )
        seen += [entry.volume.volume_id for entry in page.entries]
        pages += 1
        token = page.next_token
        if not token:
            break
    assert seen == [f"pvc-{index}" for index in range(5)]
    assert pages == 3
    code, _ = await code_of(service.ListVolumes, csi_pb2.ListVolumesRequest(starting_token="invalid-token"))
    assert code is grpc.StatusCode.ABORTED


async def test_expand_grows_the_lun_and_asks_the_node_to_grow_the_filesystem(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create(size=64 * MiB))
    grown = await call(
        service.ControllerExpandVolume,
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id="pvc-1", capacity_range=csi_pb2.CapacityRange(required_bytes=128 * MiB)
        ),
    )
    assert grown.capacity_bytes == 128 * MiB
    assert grown.node_expansion_required
    assert lab.kube.disks["pvc-1"]["spec"]["size"] == "128Mi"
    assert lab.lun("pvc-1").size_bytes == 128 * MiB


async def test_validate_confirms_only_what_the_volume_supports(service: ControllerService) -> None:
    await call(service.CreateVolume, create())
    ok = await call(
        service.ValidateVolumeCapabilities,
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="pvc-1", volume_capabilities=[cap()]),
    )
    assert ok.HasField("confirmed")
    no = await call(
        service.ValidateVolumeCapabilities,
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id="pvc-1", volume_capabilities=[cap(Mode.MULTI_NODE_MULTI_WRITER)]
        ),
    )
    assert not no.HasField("confirmed")
    assert "MULTI_NODE_MULTI_WRITER" in no.message
    code, _ = await code_of(
        service.ValidateVolumeCapabilities,
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="pvc-nope", volume_capabilities=[cap()]),
    )
    assert code is grpc.StatusCode.NOT_FOUND


async def test_a_disk_the_operator_never_provisions_ends_in_deadline_exceeded(lab: Lab) -> None:
    service = ControllerService(lab.kube, Timeouts(provision=0.02))
    lab.operator.stop()
    code, details = await code_of(service.CreateVolume, create())
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "not provisioned" in details
    assert "phase none" in details


async def test_a_disk_the_operator_keeps_retrying_ends_in_deadline_exceeded_with_its_reason(lab: Lab) -> None:
    service = ControllerService(lab.kube, Timeouts(provision=0.02))
    lab.storage.fail_next("create_lun", Unavailable("the storage server does not answer"))
    code, details = await code_of(service.CreateVolume, create())
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "does not answer" in details


async def test_a_disk_the_operator_gave_up_on_for_its_spec_is_invalid_argument(
    service: ControllerService, lab: Lab
) -> None:
    code, details = await code_of(service.CreateVolume, create(parameters={"backend": "gold"}))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "'gold' is not a storage backend" in details
    assert lab.storage.luns == {}


async def test_a_disk_the_operator_gave_up_on_otherwise_is_failed_precondition(
    service: ControllerService, lab: Lab
) -> None:
    lab.storage.fail_next("create_lun", AlreadyExists("LUN vd-x exists with another size"))
    code, details = await code_of(service.CreateVolume, create())
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "exists with another size" in details
