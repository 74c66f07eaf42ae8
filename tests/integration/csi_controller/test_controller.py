"""CSI controller calls become VirtualDisks that the real operator provisions, attaches to a
vcsim VM as an RDM (on a LUN of the lab's tgtd), detaches and deletes; checked on the peers
themselves (the API server, vCenter, tgtd), never through lunbridge. Issue 12: a re-publish
that contradicts the disk is refused and leaves it attached (case 3); a publish to a Node whose
VM does not exist is undone by an unpublish after that Node is deleted (case 5)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from lunbridge.models import PublishContext, VirtualDiskStatus
from lunbridge_csi._proto import csi_pb2
from tests.integration.operator import observe
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl, node_name

MiB = 1 << 20
Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MOUNT = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(mode=Mode.SINGLE_NODE_WRITER),
)
BLOCK = csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=MOUNT.access_mode)


def pvc_name() -> str:
    return f"pvc-{uuid.uuid4()}"


def create_request(name: str, size: int = 64 * MiB, **kw: Any) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[MOUNT],
        **kw,
    )


def publish_request(name: str, node_id: str, **kw: Any) -> csi_pb2.ControllerPublishVolumeRequest:
    """A publish of volume `name` to `node_id`, as mount unless `volume_capability` is given."""
    kw.setdefault("volume_capability", MOUNT)
    return csi_pb2.ControllerPublishVolumeRequest(volume_id=name, node_id=node_id, **kw)


def code_of(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=60)
    error: Any = caught.value
    return error.code(), error.details()


def test_identity_names_the_plugin_and_is_ready(identity: Any) -> None:
    info = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)
    assert info.name == "csi.lunbridge.io"
    assert identity.Probe(csi_pb2.ProbeRequest(), timeout=10).ready.value is True


def test_create_returns_once_provisioned_is_idempotent_and_delete_takes_everything(
    lab: LabState, controller: Any, volumes: list[str]
) -> None:
    name = pvc_name()
    volumes.append(name)
    started = time.monotonic()
    created = controller.CreateVolume(create_request(name), timeout=120).volume
    took = time.monotonic() - started
    assert created.volume_id == name
    assert created.capacity_bytes == 64 * MiB
    assert created.volume_context["fsType"] == "ext4"
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert observe.condition(disk, "Provisioned")["status"] == "True"
    lun_file = f"{disk['status']['lun']['name']}.img"
    assert lun_file in observe.pool_files(lab)  # an unmapped LUN is in no tgtd target yet
    print(f"CreateVolume took {took:.1f}s")

    again = controller.CreateVolume(create_request(name), timeout=120).volume
    assert again == created
    code, details = code_of(controller.CreateVolume, create_request(name, size=128 * MiB))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "size" in details

    started = time.monotonic()
    controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=name), timeout=120)
    print(f"DeleteVolume took {time.monotonic() - started:.1f}s")
    assert observe.get(lab, "vdisk", name) is None
    assert lun_file not in observe.pool_files(lab)
    controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=name), timeout=60)


def test_publish_attaches_an_rdm_and_unpublish_detaches_it(
    lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer, controller: Any, volumes: list[str]
) -> None:
    vm, other = vcsim.inventory.vms[0], vcsim.inventory.vms[1]
    name = pvc_name()
    volumes.append(name)
    controller.CreateVolume(create_request(name), timeout=120)
    publish = publish_request(name, f"vsphere://{vm.bios_uuid}")
    started = time.monotonic()
    context = controller.ControllerPublishVolume(publish, timeout=240).publish_context
    print(f"ControllerPublishVolume took {time.monotonic() - started:.1f}s")
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert disk["spec"]["nodeName"] == node_name(vm.name)
    status = VirtualDiskStatus.from_dict(disk["status"])
    assert status.lun is not None
    assert status.attachment is not None
    naa = status.lun.naa
    assert naa in observe.served(lab.tgt)
    # only what the node reads; the PCI slot only when the hypervisor reports one (vcsim's
    # default VMs do not)
    assert dict(context) == PublishContext.from_status(status).to_dict()
    assert {"mode", "naa", "guestAddress"} <= set(context) <= {"mode", "naa", "guestAddress", "pciSlot"}
    rdms = [r for r in observe.rdms(si, vm.name) if r.device.endswith(str(naa).removeprefix("naa."))]
    assert len(rdms) == 1
    assert context["guestAddress"] == f"0:{rdms[0].unit}:0"  # PVSCSI: target = unit, LUN 0
    assert (rdms[0].controller_key, rdms[0].bus, rdms[0].unit) == (
        status.attachment.detail["controllerKey"],
        status.attachment.detail["busNumber"],
        status.attachment.detail["unitNumber"],
    )
    # again: the same answer at once; to another node while attached here: refused
    started = time.monotonic()
    assert controller.ControllerPublishVolume(publish, timeout=60).publish_context == context
    assert time.monotonic() - started < 5
    # again as block, though the disk is a Filesystem volume: incompatible, and it stays attached
    as_block = publish_request(name, publish.node_id, volume_capability=BLOCK)
    code, details = code_of(controller.ControllerPublishVolume, as_block)
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "volumeMode Filesystem" in details
    read_only = publish_request(name, publish.node_id, readonly=True)  # no PUBLISH_READONLY
    assert code_of(controller.ControllerPublishVolume, read_only)[0] is grpc.StatusCode.INVALID_ARGUMENT
    still = observe.get(lab, "vdisk", name)
    assert still is not None
    assert still["spec"]["nodeName"] == node_name(vm.name)
    assert still["status"]["attachment"]["vm"] == vm.name
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(str(naa).removeprefix("naa."))]
    assert controller.ControllerPublishVolume(publish, timeout=60).publish_context == context
    elsewhere = publish_request(name, f"vsphere://{other.bios_uuid}")
    code, details = code_of(controller.ControllerPublishVolume, elsewhere)
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert node_name(vm.name) in details
    code, _ = code_of(controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=name))
    assert code is grpc.StatusCode.FAILED_PRECONDITION

    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id=f"vsphere://{vm.bios_uuid}")
    started = time.monotonic()
    controller.ControllerUnpublishVolume(unpublish, timeout=240)
    print(f"ControllerUnpublishVolume took {time.monotonic() - started:.1f}s")
    assert not [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa.removeprefix("naa."))]
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert not disk["status"].get("attachment")
    controller.ControllerUnpublishVolume(unpublish, timeout=60)
    controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=name), timeout=120)
    assert naa not in observe.served(lab.tgt)


def test_list_volumes_pages_through_every_volume(controller: Any, volumes: list[str]) -> None:
    made = []
    for index in range(3):
        # names that are not DNS labels become csi-<hash> volume ids
        volume = controller.CreateVolume(create_request(f"Sanity Volume {uuid.uuid4()} #{index}", MiB))
        made.append(volume.volume.volume_id)
        volumes.append(volume.volume.volume_id)
    assert all(v.startswith("csi-") for v in made)
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = controller.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(page.entries) <= 2
        seen += [entry.volume.volume_id for entry in page.entries]
        pages += 1
        token = page.next_token
        if not token:
            break
    assert set(made) <= set(seen)
    assert len(seen) == len(set(seen))
    assert pages >= 2
    code, _ = code_of(controller.ListVolumes, csi_pb2.ListVolumesRequest(starting_token="invalid-token"))
    assert code is grpc.StatusCode.ABORTED


def test_expand_grows_the_lun(lab: LabState, controller: Any, volumes: list[str]) -> None:
    name = pvc_name()
    volumes.append(name)
    controller.CreateVolume(create_request(name), timeout=120)
    grown = controller.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=name, capacity_range=csi_pb2.CapacityRange(required_bytes=96 * MiB)
        ),
        timeout=120,
    )
    assert grown.capacity_bytes >= 96 * MiB
    assert grown.node_expansion_required
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert disk["status"]["lun"]["sizeBytes"] >= 96 * MiB


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("CreateVolume", csi_pb2.CreateVolumeRequest(name="pvc-x")),
        ("CreateVolume", create_request("pvc-x", parameters={"fsType": "ntfs"})),
        ("DeleteVolume", csi_pb2.DeleteVolumeRequest()),
        ("ControllerPublishVolume", csi_pb2.ControllerPublishVolumeRequest(volume_id="pvc-x")),
        ("ControllerUnpublishVolume", csi_pb2.ControllerUnpublishVolumeRequest()),
        ("ValidateVolumeCapabilities", csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="pvc-x")),
    ],
)
def test_bad_requests_are_invalid_argument(controller: Any, method: str, request_: Any) -> None:
    code, details = code_of(getattr(controller, method), request_)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details


def test_unknown_volumes_and_nodes_are_not_found(
    controller: Any, vcsim: vcsim_lab.VcsimPeer, volumes: list[str]
) -> None:
    vm = vcsim.inventory.vms[0]
    missing = publish_request("pvc-missing", f"vsphere://{vm.bios_uuid}")
    assert code_of(controller.ControllerPublishVolume, missing)[0] is grpc.StatusCode.NOT_FOUND
    name = pvc_name()
    volumes.append(name)
    controller.CreateVolume(create_request(name, MiB), timeout=120)
    nowhere = publish_request(name, "vsphere://no-such-vm")
    assert code_of(controller.ControllerPublishVolume, nowhere)[0] is grpc.StatusCode.NOT_FOUND
    # unpublishing what is not published (or from a node that does not exist) is done already
    controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id="vsphere://no-such-vm"), timeout=60
    )
    controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id="pvc-missing", node_id="vsphere://x"), timeout=60
    )


MARKER = b"lunbridge: these bytes must reach the clone\n"


def test_a_volume_source_makes_a_clone_with_the_sources_bytes(
    lab: LabState, controller: Any, volumes: list[str]
) -> None:
    origin_name, clone_name = pvc_name(), pvc_name()
    volumes += [origin_name, clone_name]
    controller.CreateVolume(create_request(origin_name, 16 * MiB), timeout=120)
    origin = observe.get(lab, "vdisk", origin_name)
    assert origin is not None
    pool = Path(lab.env()["LUNBRIDGE_TGT_POOL_DIR"]) / "luns"
    with (pool / f"{origin['status']['lun']['name']}.img").open("r+b") as handle:
        handle.seek(4096)
        handle.write(MARKER)

    source = csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=origin_name)
    )
    started = time.monotonic()
    clone = controller.CreateVolume(
        create_request(clone_name, 16 * MiB, volume_content_source=source), timeout=120
    ).volume
    print(f"CreateVolume (clone) took {time.monotonic() - started:.1f}s")
    assert clone.content_source.volume.volume_id == origin_name
    assert clone.capacity_bytes == 16 * MiB
    copied = observe.get(lab, "vdisk", clone_name)
    assert copied is not None
    assert copied["status"]["lun"]["naa"] != origin["status"]["lun"]["naa"]
    with (pool / f"{copied['status']['lun']['name']}.img").open("rb") as handle:
        handle.seek(4096)
        assert handle.read(len(MARKER)) == MARKER

    missing = csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id="pvc-no-such-volume")
    )
    code, _ = code_of(controller.CreateVolume, create_request(pvc_name(), volume_content_source=missing))
    assert code is grpc.StatusCode.NOT_FOUND


def test_unpublish_after_the_node_is_deleted_clears_a_publish_that_never_attached(
    lab: LabState, vcsim: vcsim_lab.VcsimPeer, controller: Any, volumes: list[str], nodes: list[str]
) -> None:
    """Issue 12, case 5: a Node whose providerID names no VM, so the publish to it cannot attach
    (DEADLINE_EXCEEDED, spec.nodeName stays); the Node is deleted; the unpublish still clears
    the publication, so the volume can be published to a real node afterwards."""
    ghost, ghost_id = f"it-gone-{uuid.uuid4().hex[:8]}", f"vsphere://{uuid.uuid4()}"
    nodes.append(ghost)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": ghost}, "spec": {"providerID": ghost_id}}
    observe.apply(lab, node)
    name = pvc_name()
    volumes.append(name)
    controller.CreateVolume(create_request(name), timeout=120)
    with pytest.raises(grpc.RpcError) as caught:
        controller.ControllerPublishVolume(publish_request(name, ghost_id), timeout=8)
    error: Any = caught.value
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert disk["spec"]["nodeName"] == ghost
    assert not disk.get("status", {}).get("attachment")

    deleted = kubectl(lab, "delete", "node", ghost)
    assert deleted.returncode == 0, deleted.stderr
    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id=ghost_id)
    started = time.monotonic()
    controller.ControllerUnpublishVolume(unpublish, timeout=240)
    print(f"ControllerUnpublishVolume (Node gone) took {time.monotonic() - started:.1f}s")
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert "nodeName" not in disk["spec"]
    controller.ControllerUnpublishVolume(unpublish, timeout=60)  # idempotent

    vm = vcsim.inventory.vms[0]
    real_id = f"vsphere://{vm.bios_uuid}"
    context = controller.ControllerPublishVolume(publish_request(name, real_id), timeout=240).publish_context
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert disk["spec"]["nodeName"] == node_name(vm.name)
    assert context["naa"] == disk["status"]["lun"]["naa"]
    assert disk["status"]["attachment"]["vm"] == vm.name
    controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id=real_id), timeout=240
    )
    disk = observe.get(lab, "vdisk", name)
    assert disk is not None
    assert not disk["status"].get("attachment")
