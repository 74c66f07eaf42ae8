"""The generated CSI stubs import and carry the spec's services and messages."""

from __future__ import annotations

from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc


def test_stubs_define_the_three_csi_services() -> None:
    services = set(csi_pb2.DESCRIPTOR.services_by_name)
    assert {"Identity", "Controller", "Node"} <= services
    assert hasattr(csi_pb2_grpc, "IdentityServicer")
    assert hasattr(csi_pb2_grpc, "add_NodeServicer_to_server")


def test_messages_round_trip() -> None:
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id="vd-1",
        staging_target_path="/staging",
        publish_context={"naa": "naa.6001405abc"},
    )
    decoded = csi_pb2.NodeStageVolumeRequest.FromString(request.SerializeToString())
    assert decoded.publish_context["naa"] == "naa.6001405abc"
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
