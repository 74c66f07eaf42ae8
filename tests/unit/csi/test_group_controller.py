"""The GroupController service against the fake API server and the fake operator running the
real DiskGroupSnapshot reconcile: a group of volumes is cut and returned with its members (ids
that the snapshot RPCs and restores resolve), idempotency by name and set of volumes, Get and
Delete with and without the member ids, and every bad request naming its field."""

from __future__ import annotations

import grpc

from lunbridge.models import parse_handle
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.controller import ControllerService
from lunbridge_csi.groups import GroupControllerService
from lunbridge_csi.volume_rules import MiB
from tests.fakes import Lab
from tests.unit.csi.conftest import TIMEOUTS
from tests.unit.csi.test_controller_requests import call, code_of, create
from tests.unit.csi.test_controller_snapshots import restore_of


def group_of(*volumes: str, name: str = "groupsnapshot-1") -> csi_pb2.CreateVolumeGroupSnapshotRequest:
    return csi_pb2.CreateVolumeGroupSnapshotRequest(name=name, source_volume_ids=list(volumes))


async def test_a_group_is_cut_with_members_that_restore(service: ControllerService, lab: Lab) -> None:
    groups = GroupControllerService(lab.kube, TIMEOUTS)
    for volume in ("pvc-a", "pvc-b"):
        await call(service.CreateVolume, create(name=volume, size=32 * MiB))
    made = (await call(groups.CreateVolumeGroupSnapshot, group_of("pvc-a", "pvc-b"))).group_snapshot
    assert made.ready_to_use
    assert made.group_snapshot_id == "groupsnapshot-1"
    assert sorted(s.source_volume_id for s in made.snapshots) == ["pvc-a", "pvc-b"]
    assert {s.group_snapshot_id for s in made.snapshots} == {"groupsnapshot-1"}
    assert len(lab.storage.groups) == 1
    assert (await call(groups.CreateVolumeGroupSnapshot, group_of("pvc-b", "pvc-a"))).group_snapshot == made
    code, _ = await code_of(groups.CreateVolumeGroupSnapshot, group_of("pvc-a"))
    assert code is grpc.StatusCode.ALREADY_EXISTS

    member = made.snapshots[0]
    listed = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(snapshot_id=member.snapshot_id))
    assert [e.snapshot.source_volume_id for e in listed.entries] == [member.source_volume_id]
    request = create(name="pvc-r", size=MiB, volume_content_source=restore_of(member.snapshot_id))
    restored = await call(service.CreateVolume, request)
    assert restored.volume.capacity_bytes == 32 * MiB
    assert parse_handle(member.snapshot_id)[1] == lab.lun("pvc-r").source_snapshot

    ids = [s.snapshot_id for s in made.snapshots]
    got = await call(
        groups.GetVolumeGroupSnapshot,
        csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id="groupsnapshot-1", snapshot_ids=ids),
    )
    assert got.group_snapshot == made
    code, details = await code_of(
        groups.DeleteVolumeGroupSnapshot,
        csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id="groupsnapshot-1", snapshot_ids=ids[:1]),
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "not the members" in details
    await call(
        groups.DeleteVolumeGroupSnapshot,
        csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id="groupsnapshot-1", snapshot_ids=ids),
    )
    assert not lab.kube.objects.get("diskgroupsnapshots")
    assert not lab.kube.objects.get("disksnapshots")
    code, _ = await code_of(
        groups.GetVolumeGroupSnapshot,
        csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id="groupsnapshot-1"),
    )
    assert code is grpc.StatusCode.NOT_FOUND


async def test_bad_group_requests_name_the_field(lab: Lab) -> None:
    groups = GroupControllerService(lab.kube, TIMEOUTS)
    cases = [
        (
            groups.CreateVolumeGroupSnapshot,
            csi_pb2.CreateVolumeGroupSnapshotRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name is required",
        ),
        (
            groups.CreateVolumeGroupSnapshot,
            group_of(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "source_volume_ids is required",
        ),
        (groups.CreateVolumeGroupSnapshot, group_of("pvc-missing"), grpc.StatusCode.NOT_FOUND, "pvc-missing"),
        (
            groups.GetVolumeGroupSnapshot,
            csi_pb2.GetVolumeGroupSnapshotRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "group_snapshot_id is required",
        ),
        (
            groups.GetVolumeGroupSnapshot,
            csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id="Not A Name"),
            grpc.StatusCode.NOT_FOUND,
            "no such group",
        ),
        (
            groups.DeleteVolumeGroupSnapshot,
            csi_pb2.DeleteVolumeGroupSnapshotRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "group_snapshot_id is required",
        ),
    ]
    for method, request, want, words in cases:
        code, details = await code_of(method, request)
        assert (code, words in details) == (want, True), details
    for unknown in ("Not A Name", "no-such-group"):
        await call(
            groups.DeleteVolumeGroupSnapshot,
            csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=unknown),
        )
    caps = await call(groups.GroupControllerGetCapabilities, csi_pb2.GroupControllerGetCapabilitiesRequest())
    assert [c.rpc.type for c in caps.capabilities] == [
        csi_pb2.GroupControllerServiceCapability.RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT
    ]
