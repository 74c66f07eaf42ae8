"""lunbridge's real NodeService inside the lab's KVM guest, on a LUN the libvirt layer
attached from tgtd: stage formats a blank disk and mounts it, publish bind-mounts it, a file
written there survives unstage and a second stage (which does not format again); a device at
the published address that carries another NAA is refused FAILED_PRECONDITION and left
untouched; after unstage no disk of that NAA is left in the guest; a Block volume is a device
node bind-mounted onto a file. A publish again at the same target is OK when it asks for what
is mounted there and ALREADY_EXISTS when it asks for it read-only (issue 12, case 3).
NodeGetInfo answers the configured cap of a KVM guest (issue 12, case 2). An unstage of a disk
whose SCSI device was set offline unmounts it, deletes the device and answers OK, also when
retried (issue 12, case 7). NodeGetVolumeStats' volume condition names the link that broke
in the guest (the filesystem remounted read-only, the SCSI device offline, then deleted) and
is normal again once it is back (issue 19). Every test detaches its LUN and leaves no mount
behind."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lunbridge.hypervisor.base import Attachment
from lunbridge.hypervisor.libvirt import Libvirt
from lunbridge.models import AttachMode, PublishContext
from lunbridge.storage.base import Lun
from lunbridge.storage.tgt import TgtBackend
from lunbridge_csi.guest import scsi
from tests.integration.csi_node.conftest import STATE_DIR, Node
from tests.integration.libvirt.conftest import MakeLun
from tests.integration.libvirt.guestscsi import delete_disk, disks
from tests.lab.lab import LabState
from tests.lab.libvirt import LibvirtGuest

MOUNT = {"mount": {"fsType": "ext4"}, "accessMode": {"mode": "SINGLE_NODE_WRITER"}}
BLOCK = {"block": {}, "accessMode": {"mode": "SINGLE_NODE_WRITER"}}
OTHER_NAA = "naa.6001405" + "ab" * 12 + "c"


def context(attachment: Attachment, naa: str) -> dict[str, str]:
    where = PublishContext(AttachMode.HYPERVISOR, naa, attachment.pci_slot, attachment.guest_address)
    return where.to_dict()


@contextlib.asynccontextmanager
async def attached(
    kvm: Libvirt, guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState
) -> AsyncIterator[tuple[Lun, Attachment, str]]:
    """A LUN attached to the guest; afterwards nothing of it stays mounted or visible there."""
    lun = await masked_lun([lab.host_iqn])
    vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid}")
    await kvm.ensure_iscsi_portal([vm.host], lab.tgt.portal)
    attachment = await kvm.attach_rdm(vm, lun.naa)
    assert attachment.pci_slot is not None
    base = f"/mnt/lunbridge-csi-test/{uuid.uuid4().hex[:8]}"
    try:
        yield lun, attachment, base
    finally:
        guest.run(
            f"for m in $(findmnt -rn -o TARGET | grep '^{base}' | sort -r); do umount $m; done; "
            f"rm -rf {base}",
            timeout=60,
        )
        found = disks(guest).get(lun.naa)
        if found:
            delete_disk(guest, found[0])
        await kvm.detach_rdm(vm, lun.naa)


def call(method: str, **request: Any) -> dict[str, Any]:
    return {"call": method, "request": request}


def stage_call(volume: str, staging: str, ctx: dict[str, str], capability: dict[str, Any]) -> dict[str, Any]:
    return call(
        "NodeStageVolume",
        volumeId=volume,
        stagingTargetPath=staging,
        volumeCapability=capability,
        publishContext=ctx,
    )


def publish_call(
    volume: str, staging: str, target: str, ctx: dict[str, str], capability: dict[str, Any]
) -> dict[str, Any]:
    return call(
        "NodePublishVolume",
        volumeId=volume,
        stagingTargetPath=staging,
        targetPath=target,
        volumeCapability=capability,
        publishContext=ctx,
    )


def sh(command: str) -> dict[str, Any]:
    return {"sh": command}


def codes(results: list[dict[str, Any]]) -> list[str]:
    return [r.get("code", "sh") for r in results]


def said(results: list[dict[str, Any]]) -> str:
    """One line per step, with what a failed call or a command said in full (an assertion's
    own repr of the results is cut short, and the node plugin's log stays in the guest)."""
    lines = []
    for number, result in enumerate(results):
        words = result.get("details") or result.get("stderr") or ""
        lines.append(f"{number}: {result.get('code', 'sh')} {words}".rstrip())
    return "\n".join(lines)


@pytest.mark.timeout(900)
async def test_stage_publish_write_unstage_and_stage_again_keeps_the_file(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, node: Node
) -> None:
    async with attached(kvm, kvm_guest, masked_lun, lab) as (lun, attachment, base):
        volume = f"vd-{lun.name}"
        staging, target = f"{base}/staging", f"{base}/pod/mount"
        ctx = context(attachment, lun.naa)
        stage = stage_call(volume, staging, ctx, MOUNT)
        # what a VolumeAttachment made by the previous release carries: no mode, unread keys
        legacy = {key: ctx[key] for key in ("naa", "pciSlot", "guestAddress")}
        legacy.update({f"{key}": str(value) for key, value in attachment.detail().items()})
        legacy.update(controllerKey="0", busNumber="0", unitNumber="0")
        stage_legacy = stage_call(volume, staging, legacy, MOUNT)
        publish = publish_call(volume, staging, target, ctx, MOUNT)
        publish_read_only = {**publish, "request": {**publish["request"], "readonly": True}}
        unpublish = call("NodeUnpublishVolume", volumeId=volume, targetPath=target)
        unstage = call("NodeUnstageVolume", volumeId=volume, stagingTargetPath=staging)
        fs_uuid = sh(f"blkid -p -s UUID -o value $(findmnt -n -o SOURCE {staging})")

        first = node(
            [
                call("NodeGetInfo"),
                call("NodeGetCapabilities"),
                stage,
                stage_legacy,  # idempotent, and a publish context of the previous release is read
                fs_uuid,
                publish,
                publish,  # idempotent
                sh(
                    f"echo kept-by-lunbridge > {target}/proof && sync && findmnt -n -o SOURCE,FSTYPE {target}"
                ),
                call("NodeGetVolumeStats", volumeId=volume, volumePath=target),
                publish_read_only,  # the target is mounted read-write: incompatible
                sh(f"findmnt -n -o OPTIONS {target}"),
                unpublish,
                unpublish,  # idempotent
                unstage,
                unstage,  # idempotent
                sh(f"findmnt {staging}; findmnt {target}; test -e {target}"),
                sh("cat /sys/class/scsi_host/host*/proc_name"),  # the drivers of the guest's SCSI hosts
            ]
        )
        assert codes(first) == [
            "OK",
            "OK",
            "OK",
            "OK",
            "sh",
            "OK",
            "OK",
            "sh",
            "OK",
            "ALREADY_EXISTS",
            "sh",
            "OK",
            "OK",
            "OK",
            "OK",
            "sh",
            "sh",
        ], said(first)
        info, capabilities = first[0]["response"], first[1]["response"]
        assert info["nodeId"].lower() == f"libvirt://{lab.guest_uuid}".lower()
        # issue 12, case 2: the lab guest shows virtio-scsi controllers only (a KVM guest), so
        # it holds the configured cap of lunbridge disks, whatever is attached or staged now
        drivers = set(first[16]["stdout"].split())
        assert scsi.VIRTIO_SCSI in drivers, first[16]
        assert not drivers & {scsi.PVSCSI, *scsi.VSPHERE_OTHER_SCSI}, first[16]
        assert int(info["maxVolumesPerNode"]) == scsi.DEFAULT_KVM_MAX_VOLUMES
        assert {c["rpc"]["type"] for c in capabilities["capabilities"]} == {
            "STAGE_UNSTAGE_VOLUME",
            "EXPAND_VOLUME",
            "GET_VOLUME_STATS",
            "VOLUME_CONDITION",
        }
        first_uuid = first[4]["stdout"].strip()
        assert first_uuid, first[4]
        assert first[7]["rc"] == 0, first[7]
        assert first[7]["stdout"].split()[1] == "ext4"
        usage = {u["unit"]: u for u in first[8]["response"]["usage"]}
        assert 0 < int(usage["BYTES"]["total"]) <= lun.size_bytes
        assert "mounted read-write, not read-only" in first[9]["details"]
        assert first[10]["stdout"].split(",")[0] == "rw", first[10]  # left as it was
        assert first[15]["rc"] != 0  # nothing mounted, target removed
        assert first[15]["stdout"] == ""
        assert lun.naa not in disks(kvm_guest)  # unstage deleted the SCSI device: no ghost

        second = node(
            [
                stage,
                fs_uuid,
                publish,
                sh(f"cat {target}/proof"),
                unpublish,
                unstage,
                call("NodeGetInfo"),
            ],
            kvm_max_volumes=17,
        )
        assert codes(second) == ["OK", "sh", "OK", "sh", "OK", "OK", "OK"], said(second)
        assert int(second[6]["response"]["maxVolumesPerNode"]) == 17  # --kvm-max-volumes
        assert second[1]["stdout"].strip() == first_uuid  # the same filesystem: never re-formatted
        assert second[3]["stdout"] == "kept-by-lunbridge\n"
        assert lun.naa not in disks(kvm_guest)
        print(
            "stage (format+mount) {:.3f}s, stage again {:.3f}s, stage (existing fs) {:.3f}s, "
            "unstage {:.3f}s".format(
                first[2]["seconds"], first[3]["seconds"], second[0]["seconds"], first[13]["seconds"]
            )
        )


@pytest.mark.timeout(900)
async def test_a_device_with_another_naa_at_the_address_is_refused_and_untouched(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, node: Node
) -> None:
    async with attached(kvm, kvm_guest, masked_lun, lab) as (lun, attachment, base):
        staging = f"{base}/staging"
        results = node(
            [
                stage_call("vd-wrong", staging, context(attachment, OTHER_NAA), MOUNT),
                sh(f"findmnt {staging}"),
                sh("ls /var/lib/lunbridge-guest/csi-node-test/"),
            ]
        )
        refused = results[0]
        assert refused["code"] == "FAILED_PRECONDITION", refused
        assert OTHER_NAA in refused["details"]
        assert lun.naa in refused["details"]
        assert results[1]["rc"] != 0  # nothing mounted
        assert "vd-wrong" not in results[2]["stdout"]  # nothing recorded
        sd, _ = disks(kvm_guest)[lun.naa]  # the rescan found it, the NAA check refused it
        probe = kvm_guest.run(["blkid", "-p", f"/dev/{sd}"], timeout=60)
        assert probe.returncode == 2, probe  # still no signature at all: nothing was written


@pytest.mark.timeout(900)
async def test_a_block_volume_is_the_device_bound_onto_a_file(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, node: Node
) -> None:
    async with attached(kvm, kvm_guest, masked_lun, lab) as (lun, attachment, base):
        volume = f"vd-{lun.name}"
        staging, target = f"{base}/staging", f"{base}/pod/dev"
        ctx = context(attachment, lun.naa)
        publish = publish_call(volume, staging, target, ctx, BLOCK)
        results = node(
            [
                stage_call(volume, staging, ctx, BLOCK),
                publish,
                publish,  # idempotent: the device node bound there is this volume's
                sh(f"blockdev --getsize64 {target}; blkid -p {target}; echo rc=$?"),
                call("NodeGetVolumeStats", volumeId=volume, volumePath=target),
                call("NodeUnpublishVolume", volumeId=volume, targetPath=target),
                call("NodeUnstageVolume", volumeId=volume, stagingTargetPath=staging),
                sh(f"test -e {target}"),
            ]
        )
        assert codes(results) == ["OK", "OK", "OK", "sh", "OK", "OK", "OK", "sh"], said(results)
        size, probe = results[3]["stdout"].split()
        assert int(size) == lun.size_bytes
        assert probe == "rc=2"  # a Block volume is never formatted
        assert int(results[4]["response"]["usage"][0]["total"]) == lun.size_bytes
        assert results[7]["rc"] != 0
        assert lun.naa not in disks(kvm_guest)


@pytest.mark.timeout(900)
async def test_expand_rescans_the_size_and_grows_the_filesystem(
    kvm: Libvirt,
    kvm_guest: LibvirtGuest,
    masked_lun: MakeLun,
    lab: LabState,
    node: Node,
    backend: TgtBackend,
) -> None:
    async with attached(kvm, kvm_guest, masked_lun, lab) as (lun, attachment, base):
        volume = f"vd-{lun.name}"
        staging, target = f"{base}/staging", f"{base}/pod/mount"
        ctx = context(attachment, lun.naa)
        stage = stage_call(volume, staging, ctx, MOUNT)
        publish = publish_call(volume, staging, target, ctx, MOUNT)
        first = node(
            [stage, publish, sh(f"echo before-grow > {target}/proof && sync; df -B1 --output=size {target}")]
        )
        assert codes(first) == ["OK", "OK", "sh"], said(first)
        size_before = int(first[2]["stdout"].split()[-1])

        grown = await backend.resize_lun(lun.name, 2 * lun.size_bytes)
        second = node(
            [
                call("NodeExpandVolume", volumeId=volume, volumePath=target, volumeCapability=MOUNT),
                sh(f"df -B1 --output=size {target}; cat {target}/proof"),
                call("NodeUnpublishVolume", volumeId=volume, targetPath=target),
                call("NodeUnstageVolume", volumeId=volume, stagingTargetPath=staging),
            ]
        )
        assert codes(second) == ["OK", "sh", "OK", "OK"], said(second)
        assert int(second[0]["response"]["capacityBytes"]) == grown.size_bytes
        size_after, proof = second[1]["stdout"].split()[-2:]
        assert int(size_after) > size_before * 3 // 2
        assert proof == "before-grow"
        assert lun.naa not in disks(kvm_guest)


@pytest.mark.timeout(900)
async def test_unstage_of_a_disk_set_offline_unmounts_and_deletes_it(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, node: Node
) -> None:
    """Issue 12, case 7: the disk dies under a staged volume (its SCSI device offline, as after
    the LUN was removed behind lunbridge's back): NodeUnstage still unmounts, deletes the SCSI
    device, removes the state file and answers OK; a retry is OK too."""
    async with attached(kvm, kvm_guest, masked_lun, lab) as (lun, attachment, base):
        volume = f"vd-{lun.name}"
        staging, target, sd_file = f"{base}/staging", f"{base}/pod/mount", f"{base}/sd"
        ctx = context(attachment, lun.naa)
        unstage = call("NodeUnstageVolume", volumeId=volume, stagingTargetPath=staging)
        results = node(
            [
                stage_call(volume, staging, ctx, MOUNT),
                publish_call(volume, staging, target, ctx, MOUNT),
                sh(f"echo written-before-the-disk-died > {target}/proof"),  # dirty, never flushed
                call("NodeUnpublishVolume", volumeId=volume, targetPath=target),
                sh(
                    f"sd=$(basename $(findmnt -n -o SOURCE {staging})) && echo $sd > {sd_file} && "
                    "echo offline > /sys/block/$sd/device/state && cat /sys/block/$sd/device/state"
                ),
                unstage,
                unstage,  # the kubelet's retry
                sh(
                    f"findmnt {staging}; echo mounted=$?; test -e /sys/block/$(cat {sd_file}); "
                    f"echo device=$?; ls {STATE_DIR}"
                ),
            ]
        )
        assert codes(results) == ["OK", "OK", "sh", "OK", "sh", "OK", "OK", "sh"], said(results)
        assert results[4]["stdout"].strip() == "offline", results[4]
        print(f"unstage of an offline disk {results[5]['seconds']:.3f}s")
        left = results[7]["stdout"].split()
        assert "mounted=1" in left, results[7]  # nothing mounted at the staging path
        assert "device=1" in left, results[7]  # the SCSI device is gone
        assert f"{volume}.json" not in left  # the state file went
        assert lun.naa not in disks(kvm_guest)


@pytest.mark.timeout(900)
async def test_the_volume_condition_names_the_link_that_broke_in_the_guest(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, node: Node
) -> None:
    """Issue 19: each link broken by hand in the guest shows in NodeGetVolumeStats as an
    abnormal condition that names it, with a usage beside it (the kubelet drops a condition
    without one); put back, the condition is normal again."""
    async with attached(kvm, kvm_guest, masked_lun, lab) as (lun, attachment, base):
        volume = f"vd-{lun.name}"
        staging, target = f"{base}/staging", f"{base}/pod/mount"
        ctx = context(attachment, lun.naa)
        stats = call("NodeGetVolumeStats", volumeId=volume, volumePath=target)
        state = f"/sys/block/$(basename $(findmnt -n -o SOURCE {staging}))/device/state"
        results = node(
            [
                stage_call(volume, staging, ctx, MOUNT),
                publish_call(volume, staging, target, ctx, MOUNT),
                stats,
                sh(f"mount -o remount,ro {staging}"),  # as ext4's errors=remount-ro does
                stats,
                sh(f"mount -o remount,rw {staging}"),
                stats,
                sh(f"echo offline > {state}"),  # the path to the LUN is down
                stats,
                sh(f"echo running > {state}"),
                stats,
                sh(f"echo 1 > $(dirname {state})/delete"),  # the disk deleted in the guest
                stats,
                call("NodeUnpublishVolume", volumeId=volume, targetPath=target),
                call("NodeUnstageVolume", volumeId=volume, stagingTargetPath=staging),
            ]
        )
        expected = ["OK", "OK", "OK", *(["sh", "OK"] * 5), "OK", "OK"]
        assert codes(results) == expected, said(results)
        for step in (3, 5, 7, 9, 11):
            assert results[step]["rc"] == 0, results[step]
        conditions = [results[step]["response"].get("volumeCondition", {}) for step in (2, 4, 6, 8, 10, 12)]
        for number, found in enumerate(conditions):
            print(f"condition {number}: {found}")
        abnormal = [bool(found.get("abnormal")) for found in conditions]
        assert abnormal == [False, True, False, True, False, True], conditions
        assert lun.naa in conditions[0]["message"]
        assert conditions[1]["message"].startswith("FilesystemReadOnly: "), conditions[1]
        assert conditions[3]["message"].startswith("DeviceNotRunning: "), conditions[3]
        assert "offline" in conditions[3]["message"]
        assert conditions[5]["message"].startswith("DeviceMissing: "), conditions[5]
        assert lun.naa in conditions[5]["message"]
        for step in (2, 4, 6, 8, 10, 12):
            assert results[step]["response"].get("usage"), results[step]
        assert lun.naa not in disks(kvm_guest)
