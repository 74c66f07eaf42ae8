"""The snapshot RPCs of the controller service against the fake API server and the fake
operator running the real DiskSnapshot reconcile: a cut returns ready with its size and time,
idempotency by name, the snapshot id naming its backend, filters and paging of ListSnapshots,
restores at least as large as their snapshot, deletes of unknown ids, and an existing storage
snapshot imported by its id (and found again by its label, or without one)."""

from __future__ import annotations

import grpc

from lunbridge.models import parse_handle
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.controller import ControllerService
from lunbridge_csi.snapshots import HANDLE_LABEL, handle_hash, import_name
from lunbridge_csi.volume_rules import MiB
from tests.fakes import Lab
from tests.unit.csi.conftest import TIMEOUTS
from tests.unit.csi.test_controller_requests import call, code_of, create


def snapshot(name: str = "snapshot-1", source: str = "pvc-0", **kw: object) -> csi_pb2.CreateSnapshotRequest:
    return csi_pb2.CreateSnapshotRequest(name=name, source_volume_id=source, **kw)  # type: ignore[arg-type]


def restore_of(snapshot_id: str) -> csi_pb2.VolumeContentSource:
    return csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
    )


async def _volume(service: ControllerService, name: str = "pvc-0", size: int = 64 * MiB) -> None:
    await call(service.CreateVolume, create(name=name, size=size))


async def test_a_cut_returns_ready_with_its_size_time_and_an_id_naming_the_backend(
    service: ControllerService, lab: Lab
) -> None:
    await _volume(service)
    made = (await call(service.CreateSnapshot, snapshot())).snapshot
    assert made.ready_to_use
    assert (made.source_volume_id, made.size_bytes) == ("pvc-0", 64 * MiB)
    assert made.creation_time.seconds > 0
    backend, storage_name = parse_handle(made.snapshot_id)
    assert backend == lab.services.backends.default
    assert storage_name in lab.storage.snapshots
    assert (await call(service.CreateSnapshot, snapshot())).snapshot == made  # the same name again

    await _volume(service, "pvc-9")
    code, details = await code_of(service.CreateSnapshot, snapshot(source="pvc-9"))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "pvc-0, not pvc-9" in details


async def test_bad_snapshot_requests_name_the_field(service: ControllerService) -> None:
    code, details = await code_of(service.CreateSnapshot, snapshot(name=""))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "name is required")
    code, details = await code_of(service.CreateSnapshot, snapshot(source=""))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "source_volume_id is required")
    code, details = await code_of(service.CreateSnapshot, snapshot(source="pvc-missing"))
    assert code is grpc.StatusCode.NOT_FOUND
    await _volume(service)
    code, details = await code_of(service.CreateSnapshot, snapshot(parameters={"colour": "blue"}))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "colour" in details
    extra = {
        "csi.storage.k8s.io/volumesnapshot/name": "s",
        "csi.storage.k8s.io/volumesnapshot/namespace": "n",
    }
    assert (await call(service.CreateSnapshot, snapshot(parameters=extra))).snapshot.ready_to_use
    code, _ = await code_of(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(max_entries=-1))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_list_filters_and_pages(service: ControllerService) -> None:
    await _volume(service, "pvc-0")
    await _volume(service, "pvc-1")
    ids = [
        (
            await call(service.CreateSnapshot, snapshot(f"snapshot-{i}", source=f"pvc-{i % 2}"))
        ).snapshot.snapshot_id
        for i in range(3)
    ]
    listed = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest())
    assert sorted(e.snapshot.snapshot_id for e in listed.entries) == sorted(ids)
    one = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(snapshot_id=ids[1]))
    assert [e.snapshot.snapshot_id for e in one.entries] == [ids[1]]
    of_0 = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(source_volume_id="pvc-0"))
    assert sorted(e.snapshot.snapshot_id for e in of_0.entries) == sorted([ids[0], ids[2]])
    for unknown in ("no-such-id", f"{parse_handle(ids[0])[0]}/no-such-snapshot", "no-backend/x"):
        found = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(snapshot_id=unknown))
        assert list(found.entries) == [], unknown
    first = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(max_entries=2))
    rest = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(starting_token=first.next_token))
    assert len(first.entries) == 2
    assert [e.snapshot.snapshot_id for e in [*first.entries, *rest.entries]] == sorted(ids)
    assert rest.next_token == ""
    code, _ = await code_of(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(starting_token="x"))
    assert code is grpc.StatusCode.ABORTED


async def test_a_restore_is_at_least_its_snapshot_and_echoes_its_source(
    service: ControllerService, lab: Lab
) -> None:
    await _volume(service)
    made = (await call(service.CreateSnapshot, snapshot())).snapshot
    restored = await call(
        service.CreateVolume,
        create(name="pvc-r", size=MiB, volume_content_source=restore_of(made.snapshot_id)),
    )
    assert restored.volume.capacity_bytes == 64 * MiB
    assert restored.volume.content_source.snapshot.snapshot_id == made.snapshot_id
    assert lab.kube.disks["pvc-r"]["spec"]["source"] == {"snapshot": "snapshot-1"}
    assert lab.lun("pvc-r").naa != lab.lun("pvc-0").naa
    code, details = await code_of(
        service.CreateVolume,
        create(name="pvc-s", limit=32 * MiB, volume_content_source=restore_of(made.snapshot_id)),
    )
    assert code is grpc.StatusCode.OUT_OF_RANGE
    code, details = await code_of(
        service.CreateVolume, create(name="pvc-t", volume_content_source=restore_of("x/y"))
    )
    assert code is grpc.StatusCode.NOT_FOUND
    assert "volume_content_source.snapshot.snapshot_id" in details


async def test_deletes_of_known_unknown_and_imported_ids(service: ControllerService, lab: Lab) -> None:
    await _volume(service)
    made = (await call(service.CreateSnapshot, snapshot())).snapshot
    await call(service.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest(snapshot_id=made.snapshot_id))
    assert parse_handle(made.snapshot_id)[1] not in lab.storage.snapshots
    assert "snapshot-1" not in lab.kube.objects.get("disksnapshots", {})
    for unknown in (made.snapshot_id, "no-such-id", "nope/nothing"):
        await call(service.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest(snapshot_id=unknown))
    code, _ = await code_of(service.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest())
    assert code is grpc.StatusCode.INVALID_ARGUMENT

    # a storage snapshot no object knows (made elsewhere, kept by Retain): imported, then deleted
    lun = lab.lun("pvc-0").name
    await lab.storage.create_snapshot(lun, "kept-elsewhere")
    handle = f"{lab.services.backends.default}/kept-elsewhere"
    found = await call(service.ListSnapshots, csi_pb2.ListSnapshotsRequest(snapshot_id=handle))
    assert [e.snapshot.size_bytes for e in found.entries] == [64 * MiB]
    assert import_name(handle) in lab.kube.objects["disksnapshots"]
    await call(service.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest(snapshot_id=handle))
    assert "kept-elsewhere" not in lab.storage.snapshots
    assert import_name(handle) not in lab.kube.objects.get("disksnapshots", {})


async def test_an_import_is_found_by_its_label_and_one_without_the_label_by_the_full_list(
    service: ControllerService, lab: Lab
) -> None:
    await _volume(service)
    await lab.storage.create_snapshot(lab.lun("pvc-0").name, "kept-elsewhere")
    handle = f"{lab.services.backends.default}/kept-elsewhere"
    request = csi_pb2.ListSnapshotsRequest(snapshot_id=handle)
    first = await call(service.ListSnapshots, request)
    labels = lab.kube.objects["disksnapshots"][import_name(handle)]["metadata"]["labels"]
    assert labels[HANDLE_LABEL] == handle_hash(handle)
    selector = f"{HANDLE_LABEL}={handle_hash(handle)}"

    lab.kube.calls.clear()
    assert await call(service.ListSnapshots, request) == first
    assert lab.kube.called("list_snapshots") == [(selector,)]  # no list of every DiskSnapshot

    del labels[HANDLE_LABEL]  # an import made before the label
    lab.kube.calls.clear()
    assert await call(service.ListSnapshots, request) == first
    assert lab.kube.called("list_snapshots") == [(selector,), (None,)]
    assert lab.kube.called("create_snapshot") == []


async def test_a_restore_onto_another_backend_is_refused_naming_both() -> None:
    lab = Lab.build(backends=("gold", "silver"))
    service = ControllerService(lab.kube, TIMEOUTS)
    await _volume(service)
    made = (await call(service.CreateSnapshot, snapshot())).snapshot
    assert parse_handle(made.snapshot_id)[0] == "gold"
    request = create(
        name="pvc-r", parameters={"backend": "silver"}, volume_content_source=restore_of(made.snapshot_id)
    )
    code, details = await code_of(service.CreateVolume, request)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "on storage backend gold, this disk on silver: a restore cannot cross backends" in details
    assert lab.storages["silver"].luns == {}


async def test_a_snapshot_class_can_ask_for_each_snapshot_to_be_verified(
    service: ControllerService, lab: Lab
) -> None:
    await _volume(service)
    asked = {"verifierNode": "worker-3", "verifyCheck": "pg-data"}
    made = (await call(service.CreateSnapshot, snapshot(parameters=asked))).snapshot
    assert made.ready_to_use
    stored = lab.kube.read("disksnapshots", "snapshot-1")
    assert stored["spec"]["verification"] == {"verifierNode": "worker-3", "check": "pg-data"}
    verification = lab.kube.read("diskverifications", "snapshot-1")  # made once the snapshot is ready
    assert verification["spec"] == {"snapshot": "snapshot-1", "verifierNode": "worker-3", "check": "pg-data"}
    code, details = await code_of(
        service.CreateSnapshot, snapshot(name="s2", parameters={"verifyCheck": "x"})
    )
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "parameter verifyCheck needs verifierNode")
