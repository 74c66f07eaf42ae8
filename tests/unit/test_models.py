"""The typed models read what earlier releases wrote, say which field is wrong, and write the
publish context the node reads back."""

from __future__ import annotations

import pytest

from lunbridge.errors import InvalidArgument
from lunbridge.models import (
    AttachmentStatus,
    AttachMode,
    ConditionType,
    LunStatus,
    PublishContext,
    VirtualDisk,
    VirtualDiskSpec,
    VirtualDiskStatus,
    merge_patch,
)
from lunbridge.san import ScsiAddress

NAA = "naa.6001405aaaaaaaaaaaaaaaaaaaaaaaaa"
# a status as the release before typed models wrote it, on vSphere and on KVM
LEGACY_VSPHERE = {
    "node": "node-a", "providerID": "vsphere://4231", "vm": "vm-a", "vmId": "vm-17", "host": "esx-1",
    "controllerKey": 1000, "busNumber": 0, "unitNumber": 1, "diskKey": 2001, "guestAddress": "0:1:0",
    "pciSlot": 160,
}  # fmt: skip
LEGACY_KVM = {
    "node": "guest", "providerID": "libvirt://e1c8", "vm": "guest", "vmId": "libvirt:e1c8", "host": "kvm",
    "controllerKey": 0, "busNumber": 0, "unitNumber": 0, "diskKey": 65536, "target": 1,
    "guestAddress": "0:1:0", "pciSlot": 7,
}  # fmt: skip


@pytest.mark.parametrize("legacy", [LEGACY_VSPHERE, LEGACY_KVM])
def test_an_old_attachment_reads_as_a_hypervisor_attachment(legacy: dict[str, object]) -> None:
    attachment = AttachmentStatus.from_dict(legacy)
    assert attachment.mode is AttachMode.HYPERVISOR
    assert (attachment.pci_slot, attachment.guest_address) == (legacy["pciSlot"], "0:1:0")
    assert attachment.provider_id == legacy["providerID"]
    assert attachment.detail["controllerKey"] == legacy["controllerKey"]
    written = attachment.to_dict()
    assert not {"controllerKey", "busNumber", "unitNumber", "diskKey", "target"} & set(written)


def test_the_next_status_write_removes_the_legacy_keys() -> None:
    raw = {"phase": "Ready", "lun": {"backend": "tgt", "naa": NAA}, "attachment": LEGACY_VSPHERE}
    status = VirtualDiskStatus.from_dict(raw)
    patch = merge_patch(raw, status.to_dict())
    assert patch["attachment"]["controllerKey"] is None
    assert patch["attachment"]["mode"] == "hypervisor"
    assert "lun" not in patch  # unchanged parts are not written


def test_merge_patch_writes_only_changes_and_removals() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 4}}) == {"b": {"c": 4, "d": None}}
    assert merge_patch({"a": 1}, {"a": 1}) == {}
    assert merge_patch(None, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"attachment": {"node": "n"}}, {}) == {"attachment": None}


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({}, "spec.size: Field required"),
        ({"size": "1Gi", "volumeMode": "Raw"}, "spec.volumeMode"),
        ({"size": "1Gi", "source": {"virtualDisk": 7}}, "spec.source.virtualDisk"),
        ({"size": "1Gi", "fsType": "btrfs"}, "spec.fsType"),
    ],
)
def test_a_malformed_spec_names_its_field(spec: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named.replace(".", r"\.")):
        VirtualDiskSpec.from_dict(spec, "spec")


def test_a_size_that_is_no_quantity_names_spec_size() -> None:
    with pytest.raises(InvalidArgument, match=r"spec\.size 'lots' is not a quantity"):
        _ = VirtualDiskSpec(size="lots").size_bytes
    assert VirtualDiskSpec.from_dict({"size": 1048576}).size_bytes == 1 << 20


def test_a_spec_patch_is_spelled_by_the_model() -> None:
    assert VirtualDiskSpec.patch(node_name=None) == {"nodeName": None}
    assert VirtualDiskSpec.patch(size="2Gi") == {"size": "2Gi"}
    with pytest.raises(TypeError, match="no field node"):
        VirtualDiskSpec.patch(node="x")


def _attached(attachment: AttachmentStatus) -> VirtualDiskStatus:
    status = VirtualDiskStatus(lun=LunStatus(naa=NAA), attachment=attachment)
    status.set_condition(ConditionType.ATTACHED, True, "RdmAttached", "attached", 1)
    return status


def test_the_publish_context_carries_only_what_the_node_reads() -> None:
    status = _attached(AttachmentStatus.from_dict(LEGACY_VSPHERE))
    context = PublishContext.from_status(status).to_dict()
    assert context == {"mode": "hypervisor", "naa": NAA, "pciSlot": "160", "guestAddress": "0:1:0"}
    read = PublishContext.from_dict(context)
    assert (read.naa, read.pci_slot, read.guest_address) == (NAA, 160, ScsiAddress(0, 1, 0))


def test_a_publish_context_of_the_previous_release_is_read() -> None:
    old = {"naa": NAA.upper(), "pciSlot": "160", "guestAddress": "0:3:0", "controllerKey": "1000",
           "busNumber": "0", "unitNumber": "3"}  # fmt: skip
    read = PublishContext.from_dict(old)
    assert (read.mode, read.naa, read.pci_slot, read.guest_address) == (
        AttachMode.HYPERVISOR, NAA, 160, ScsiAddress(0, 3, 0))  # fmt: skip


def test_an_initiator_publish_context_round_trips() -> None:
    attachment = AttachmentStatus(mode=AttachMode.INITIATOR, node="bm-1", target_iqn="iqn.2024-01.io.x:t",
                                  portals=["10.0.0.5:3260", "10.0.1.5:3260"], lun_id=3)  # fmt: skip
    context = PublishContext.from_status(_attached(attachment)).to_dict()
    assert context["portals"] == "10.0.0.5:3260,10.0.1.5:3260"
    assert PublishContext.from_dict(context).portals == ("10.0.0.5:3260", "10.0.1.5:3260")


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"pciSlot": "160", "guestAddress": "0:1:0"}, "lacks naa"),
        ({"naa": NAA, "guestAddress": "0:1:0"}, "lacks pciSlot"),
        ({"naa": NAA, "pciSlot": "x", "guestAddress": "0:1:0"}, "pciSlot 'x' is not a number"),
        ({"naa": NAA, "pciSlot": "160", "guestAddress": "0:1"}, "'0:1' is not 'channel:target:lun'"),
        ({"naa": "naa.xyz", "pciSlot": "160", "guestAddress": "0:1:0"}, "is not an NAA id"),
        ({"mode": "fibre", "naa": NAA}, "mode 'fibre' is not one of hypervisor, initiator"),
        ({"mode": "initiator", "naa": NAA, "targetIqn": "iqn.x"}, "lacks portals, lunId"),
        ({"mode": "initiator", "naa": NAA, "targetIqn": "target-1", "portals": "10.0.0.5:3260", "lunId": "1"},
         "publish_context targetIqn: 'target-1' is not an iSCSI name"),
        ({"mode": "initiator", "naa": NAA, "targetIqn": "iqn.2024-01.io.x:t", "portals": "10.0.0.5:3260,h:0",
          "lunId": "1"}, "publish_context portals: 'h:0' is not host:port"),
        *[({"mode": "initiator", "naa": NAA, "targetIqn": "iqn.2024-01.io.x:t", "portals": portals,
            "lunId": "1"}, f"publish_context portals: {bad!r} is not host:port")
          for portals, bad in (("a:1,,b:2", ""), ("-a:3260", "-a:3260"), ("a:\uff13\uff12", "a:\uff13\uff12"),
                               (" , ", ""))],
        *[({"mode": "initiator", "naa": NAA, "targetIqn": name, "portals": "a:3260", "lunId": "1"},
           "publish_context targetIqn: ")
          for name in ("iqn.2024-01.io.x:disk 1", "iqn.2024-01.io.x:" + "a" * 220)],
    ],
)  # fmt: skip
def test_a_bad_publish_context_names_the_key(context: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        PublishContext.from_dict(context)


def test_a_status_without_an_attachment_publishes_nothing() -> None:
    with pytest.raises(InvalidArgument, match="not attached"):
        PublishContext.from_status(VirtualDiskStatus(lun=LunStatus(naa=NAA)))


def test_a_whole_object_reads_with_metadata_and_no_status() -> None:
    disk = VirtualDisk.from_dict(
        {"metadata": {"name": "d", "uid": "u-1", "generation": 2, "deletionTimestamp": "2026-01-01T00:00:00Z",
                      "annotations": {"csi.lunbridge.io/name": "pvc-1"}},
         "spec": {"size": "1Gi"}, "status": None}
    )  # fmt: skip
    assert (disk.name, disk.metadata.generation, disk.metadata.deletion_timestamp) == (
        "d", 2, "2026-01-01T00:00:00Z")  # fmt: skip
    assert disk.status.phase is None
    assert not disk.current
    assert disk.body()["spec"] == {"size": "1Gi", "fsType": "ext4", "volumeMode": "Filesystem",
                                   "reclaimPolicy": "Delete"}  # fmt: skip
