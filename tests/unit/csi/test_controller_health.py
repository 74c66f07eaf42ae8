"""ControllerGetVolume and ListVolumes report where a volume is published and its condition, as
the operator's re-check last verified it (its `Healthy` condition): normal with the chain it
checked, abnormal naming the link that broke, normal again once it is back."""

from __future__ import annotations

import grpc

from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.controller import ControllerService
from lunbridge_operator.reconcile import health
from tests.fakes import Lab
from tests.unit.csi.test_controller_requests import call, code_of, create, publish
from tests.unit.operator.test_health import one_pass

RPC = csi_pb2.ControllerServiceCapability.RPC


async def get(service: ControllerService, volume_id: str) -> csi_pb2.ControllerGetVolumeResponse:
    answer: csi_pb2.ControllerGetVolumeResponse = await call(
        service.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
    )
    return answer


async def test_the_health_capabilities_are_advertised(service: ControllerService) -> None:
    answer = await call(service.ControllerGetCapabilities, csi_pb2.ControllerGetCapabilitiesRequest())
    offered = {c.rpc.type for c in answer.capabilities}
    assert {RPC.GET_VOLUME, RPC.VOLUME_CONDITION, RPC.LIST_VOLUMES_PUBLISHED_NODES} <= offered


async def test_a_volume_that_does_not_exist_is_not_found(service: ControllerService) -> None:
    for volume_id in ("pvc-nobody", "Not A Label"):
        code, message = await code_of(
            service.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
        )
        assert code is grpc.StatusCode.NOT_FOUND
        assert volume_id in message
    code, message = await code_of(service.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "volume_id" in message


async def test_a_published_volume_names_its_node_and_the_links_verified(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create("pvc-1"))
    unpublished = await get(service, "pvc-1")
    assert list(unpublished.status.published_node_ids) == []
    assert not unpublished.status.volume_condition.abnormal
    await call(service.ControllerPublishVolume, publish(lab, "node-a"))

    answer = await get(service, "pvc-1")
    [entry] = (await call(service.ListVolumes, csi_pb2.ListVolumesRequest())).entries

    assert answer.volume.volume_id == "pvc-1"
    assert answer.volume.capacity_bytes == lab.lun("pvc-1").size_bytes
    assert list(answer.status.published_node_ids) == [lab.provider_id("node-a")]
    condition = answer.status.volume_condition
    assert not condition.abnormal
    assert lab.lun("pvc-1").naa in condition.message
    assert entry.volume == answer.volume
    assert list(entry.status.published_node_ids) == list(answer.status.published_node_ids)
    assert entry.status.volume_condition == condition


async def test_a_broken_link_is_abnormal_and_named_until_it_is_back(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create("pvc-1"))
    await call(service.ControllerPublishVolume, publish(lab, "node-a"))
    lun = lab.lun("pvc-1")
    maps = lab.storage.mappings_of(lun.name)
    lab.storage.maps = [m for m in lab.storage.maps if m.lun != lun.name]
    del lab.storage.luns[lun.name]  # deleted on the storage server by hand: not repairable

    await one_pass(lab, "pvc-1")

    broken = (await get(service, "pvc-1")).status.volume_condition
    assert broken.abnormal
    assert broken.message.startswith(f"{health.LUN_MISSING}: ")
    assert lun.naa in broken.message
    [entry] = (await call(service.ListVolumes, csi_pb2.ListVolumesRequest())).entries
    assert entry.status.volume_condition == broken

    lab.storage.luns[lun.name] = lun  # brought back
    lab.storage.maps.extend(maps)
    await one_pass(lab, "pvc-1")

    again = (await get(service, "pvc-1")).status.volume_condition
    assert not again.abnormal
    assert again.message.startswith("repaired: ")
