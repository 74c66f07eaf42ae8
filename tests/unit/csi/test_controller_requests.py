"""The controller service against a fake API server that plays the operator at once: request
validation (INVALID_ARGUMENT with a message), sizes, idempotency and its limits, pagination."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import grpc
import pytest

from lunbridge.errors import NotFound
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.controller import ControllerService
from lunbridge_csi.volume_rules import GiB, MiB, Timeouts, publish_context, size_for, volume_id_for
from tests.unit.csi.test_errors import Aborted, FakeContext

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
NODES = {"vsphere://4231-aaaa": "node-a", "vsphere://4231-bbbb": "node-b"}


def cap(mode: int = Mode.SINGLE_NODE_WRITER, block: bool = False, fs: str = "") -> csi_pb2.VolumeCapability:
    access = csi_pb2.VolumeCapability.AccessMode(mode=mode)  # type: ignore[arg-type]
    if block:
        return csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=access)
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs), access_mode=access
    )


class FakeKube:
    """VirtualDisks in a dict; every write is answered at once as the operator would."""

    def __init__(self) -> None:
        self.disks: dict[str, dict[str, Any]] = {}
        self.gate: asyncio.Event | None = None

    def _settle(self, disk: dict[str, Any]) -> None:
        gen = disk["metadata"]["generation"]
        node = disk["spec"].get("nodeName")
        size = int(str(disk["spec"]["size"]).removesuffix("Mi").removesuffix("Gi")) * (
            GiB if str(disk["spec"]["size"]).endswith("Gi") else MiB
        )
        conds = [
            {"type": "Provisioned", "status": "True", "observedGeneration": gen},
            {"type": "Attached", "status": "True" if node else "False", "observedGeneration": gen},
            {"type": "Ready", "status": "True", "observedGeneration": gen},
        ]
        disk["status"] = {
            "phase": "Ready",
            "observedGeneration": gen,
            "conditions": conds,
            "lun": {"naa": "naa.60014050000000000000000000000001", "sizeBytes": size},
            "attachment": {
                "node": node,
                "pciSlot": 160,
                "guestAddress": "0:0:1",
                "controllerKey": 1000,
                "busNumber": 0,
                "unitNumber": 1,
            }
            if node
            else None,
        }

    async def get(self, name: str) -> dict[str, Any]:
        if self.gate is not None:
            await self.gate.wait()
        if name not in self.disks:
            raise NotFound(f"VirtualDisk {name}: not found")
        return copy.deepcopy(self.disks[name])

    async def list(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.disks.values()))

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        disk = copy.deepcopy(body)
        disk["metadata"]["generation"] = 1
        self._settle(disk)
        self.disks[disk["metadata"]["name"]] = disk
        return disk

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        disk = self.disks[name]
        for key, value in spec.items():
            if value is None:
                disk["spec"].pop(key, None)
            else:
                disk["spec"][key] = value
        disk["metadata"]["generation"] += 1
        self._settle(disk)
        return disk

    async def delete(self, name: str) -> None:
        self.disks.pop(name)

    async def node_by_provider_id(self, provider_id: str) -> str:
        if provider_id not in NODES:
            raise NotFound(f"no Node has spec.providerID {provider_id}")
        return NODES[provider_id]

    async def ping(self) -> None:
        return None


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def service(kube: FakeKube) -> ControllerService:
    return ControllerService(kube, Timeouts(provision=1, attach=1, detach=1, delete=1, expand=1, poll=0.01))


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


def test_publish_context_carries_the_address_as_strings() -> None:
    disk = {
        "status": {
            "lun": {"naa": "naa.6001"},
            "attachment": {
                "pciSlot": 160,
                "guestAddress": "0:0:1",
                "controllerKey": 1000,
                "busNumber": 0,
                "unitNumber": 1,
                "node": "n",
            },
        }
    }
    assert publish_context(disk) == {
        "naa": "naa.6001",
        "pciSlot": "160",
        "guestAddress": "0:0:1",
        "controllerKey": "1000",
        "busNumber": "0",
        "unitNumber": "1",
    }


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


async def test_a_snapshot_source_is_unimplemented(service: ControllerService) -> None:
    source = csi_pb2.VolumeContentSource(snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id="s"))
    code, _ = await code_of(service.CreateVolume, create(volume_content_source=source))
    assert code is grpc.StatusCode.UNIMPLEMENTED


def clone_of(volume_id: str) -> csi_pb2.VolumeContentSource:
    return csi_pb2.VolumeContentSource(volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=volume_id))


async def test_a_volume_source_is_a_clone_at_least_as_large_as_its_source(
    service: ControllerService, kube: FakeKube
) -> None:
    code, details = await code_of(service.CreateVolume, create(volume_content_source=clone_of("pvc-0")))
    assert code is grpc.StatusCode.NOT_FOUND
    assert "source volume pvc-0" in details
    await call(service.CreateVolume, create(name="pvc-0", size=64 * MiB))
    clone = await call(service.CreateVolume, create(size=MiB, volume_content_source=clone_of("pvc-0")))
    assert clone.volume.content_source.volume.volume_id == "pvc-0"
    assert clone.volume.capacity_bytes == 64 * MiB
    assert kube.disks["pvc-1"]["spec"]["source"] == {"virtualDisk": "pvc-0"}
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


# --- behaviour against the fake ---------------------------------------------------------------
async def test_create_is_idempotent_and_a_different_size_already_exists(
    service: ControllerService, kube: FakeKube
) -> None:
    first = await call(service.CreateVolume, create(size=64 * MiB, parameters={"scope": "host"}))
    again = await call(service.CreateVolume, create(size=64 * MiB, parameters={"scope": "host"}))
    assert first.volume == again.volume
    assert first.volume.capacity_bytes == 64 * MiB
    assert kube.disks["pvc-1"]["spec"] == {"size": "64Mi", "volumeMode": "Filesystem", "scope": "host"}
    code, _ = await code_of(service.CreateVolume, create(size=128 * MiB, parameters={"scope": "host"}))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    code, details = await code_of(
        service.CreateVolume, create(size=64 * MiB, parameters={"scope": "cluster"})
    )
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "scope" in details


async def test_a_second_call_on_a_volume_in_flight_is_aborted(
    service: ControllerService, kube: FakeKube
) -> None:
    kube.gate = asyncio.Event()
    first = asyncio.create_task(call(service.CreateVolume, create()))
    await asyncio.sleep(0.01)
    code, _ = await code_of(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    assert code is grpc.StatusCode.ABORTED
    kube.gate.set()
    assert (await first).volume.volume_id == "pvc-1"


async def test_publish_unpublish_and_delete(service: ControllerService, kube: FakeKube) -> None:
    await call(service.CreateVolume, create())
    publish = csi_pb2.ControllerPublishVolumeRequest(
        volume_id="pvc-1", node_id="vsphere://4231-aaaa", volume_capability=cap()
    )
    published = await call(service.ControllerPublishVolume, publish)
    assert published.publish_context["guestAddress"] == "0:0:1"
    assert (await call(service.ControllerPublishVolume, publish)) == published
    elsewhere = csi_pb2.ControllerPublishVolumeRequest(
        volume_id="pvc-1", node_id="vsphere://4231-bbbb", volume_capability=cap()
    )
    code, _ = await code_of(service.ControllerPublishVolume, elsewhere)
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
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id="pvc-1", node_id="vsphere://4231-bbbb"),
    )
    assert kube.disks["pvc-1"]["spec"]["nodeName"] == "node-a"
    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id="pvc-1", node_id="vsphere://4231-aaaa")
    await call(service.ControllerUnpublishVolume, unpublish)
    assert "nodeName" not in kube.disks["pvc-1"]["spec"]
    await call(service.ControllerUnpublishVolume, unpublish)
    await call(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    await call(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    await call(service.ControllerUnpublishVolume, unpublish)
    assert kube.disks == {}


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


async def test_expand_grows_the_spec_and_asks_the_node_to_grow_the_filesystem(
    service: ControllerService, kube: FakeKube
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
    assert kube.disks["pvc-1"]["spec"]["size"] == "128Mi"


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


async def test_a_disk_the_operator_never_provisions_ends_in_deadline_exceeded(
    service: ControllerService, kube: FakeKube
) -> None:
    async def stuck(body: dict[str, Any]) -> dict[str, Any]:
        disk = copy.deepcopy(body)
        disk["metadata"]["generation"] = 1
        disk["status"] = {"phase": "Provisioning", "message": "the storage server does not answer"}
        kube.disks[disk["metadata"]["name"]] = disk
        return disk

    kube.create = stuck  # type: ignore[method-assign]
    code, details = await code_of(service.CreateVolume, create())
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "does not answer" in details


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT),
        ("AlreadyExists", grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
async def test_a_disk_the_operator_gave_up_on_fails_the_call(
    service: ControllerService, kube: FakeKube, reason: str, code: grpc.StatusCode
) -> None:
    async def failed(body: dict[str, Any]) -> dict[str, Any]:
        disk = copy.deepcopy(body)
        disk["metadata"]["generation"] = 1
        disk["status"] = {
            "phase": "Failed",
            "observedGeneration": 1,
            "message": "no pool 'gold'",
            "conditions": [{"type": "Ready", "status": "False", "reason": reason}],
        }
        kube.disks[disk["metadata"]["name"]] = disk
        return disk

    kube.create = failed  # type: ignore[method-assign]
    got, details = await code_of(service.CreateVolume, create(parameters={"pool": "gold"}))
    assert got is code
    assert "no pool 'gold'" in details
