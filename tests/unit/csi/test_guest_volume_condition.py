"""NodeGetVolumeStats' volume condition on a fixture guest (sysfs and mountinfo under a folder):
normal for a staged and published volume; abnormal, naming the link, when its disk is gone,
its SCSI path is down, its filesystem turned read-only or recorded errors; a volume mounted
read-only on purpose is not abnormal for it. The usage comes with every condition (the kubelet
drops a condition that comes without one)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.guest import health
from lunbridge_csi.node import NodeService
from tests.unit.csi.sysfs import NAA
from tests.unit.csi.test_guest_node_service import MOUNT, Context, Runner, service, stage

Rpc = csi_pb2.NodeServiceCapability.RPC


async def published(tree: Path, flags: tuple[str, ...] = ()) -> tuple[NodeService, str]:
    """vd-1 staged on sdb (mount `flags`) and bind-mounted at its target; (service, target)."""
    node = service(tree, Runner(tree))
    staging, target = tree.parent / "s", tree.parent / "pod"
    request = stage(NAA, str(staging))
    request.volume_capability.mount.mount_flags[:] = list(flags)
    await node.NodeStageVolume(request, Context())  # type: ignore[arg-type]
    publish = csi_pb2.NodePublishVolumeRequest(
        volume_id="vd-1", staging_target_path=str(staging), target_path=str(target), volume_capability=MOUNT
    )
    await node.NodePublishVolume(publish, Context())  # type: ignore[arg-type]
    return node, str(target)


async def stats(node: NodeService, target: str) -> csi_pb2.NodeGetVolumeStatsResponse:
    request = csi_pb2.NodeGetVolumeStatsRequest(volume_id="vd-1", volume_path=target)
    answer: csi_pb2.NodeGetVolumeStatsResponse = await node.NodeGetVolumeStats(request, Context())  # type: ignore[arg-type]
    return answer


def superblock_read_only(tree: Path) -> None:
    """The kernel remounted the filesystem read-only (errors=remount-ro): every mount of it
    shows `ro` among its super options."""
    info = tree / "proc/self/mountinfo"
    lines = [line.split() for line in info.read_text().splitlines()]
    for fields in lines:
        if fields[-2] == "/dev/sdb" or fields[-2].endswith("/s"):
            fields[-1] = "ro"
    info.write_text("".join(" ".join(fields) + "\n" for fields in lines))


def ext4_errors(tree: Path) -> None:
    (tree / "sys/fs/ext4/sdb").mkdir(parents=True)
    (tree / "sys/fs/ext4/sdb/errors_count").write_text("3\n")


def offline(tree: Path) -> None:
    (tree / "sys/devices/scsi/2:0:3:0/state").write_text("offline\n")


def deleted(tree: Path) -> None:
    shutil.rmtree(tree / "sys/block/sdb")


async def test_node_advertises_volume_condition(tree: Path) -> None:
    node = service(tree, Runner(tree))
    answer = await node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), Context())  # type: ignore[arg-type]
    assert Rpc.VOLUME_CONDITION in {c.rpc.type for c in answer.capabilities}


async def test_a_published_volume_is_normal_and_says_what_was_checked(tree: Path) -> None:
    node, target = await published(tree)
    answer = await stats(node, target)
    assert not answer.volume_condition.abnormal
    assert NAA in answer.volume_condition.message
    assert answer.usage[0].total > 0


@pytest.mark.parametrize(
    ("break_link", "link"),
    [
        (deleted, health.DEVICE_MISSING),
        (offline, health.DEVICE_NOT_RUNNING),
        (superblock_read_only, health.FILESYSTEM_READ_ONLY),
        (ext4_errors, health.FILESYSTEM_ERRORS),
    ],
    ids=["device deleted", "device offline", "filesystem forced read-only", "ext4 errors recorded"],
)
async def test_a_broken_link_in_the_guest_is_abnormal_and_named(
    tree: Path, break_link: Callable[[Path], None], link: str
) -> None:
    node, target = await published(tree)
    break_link(tree)
    answer = await stats(node, target)
    assert answer.volume_condition.abnormal
    assert answer.volume_condition.message.startswith(f"{link}: ")
    assert answer.usage  # the kubelet reports a condition only with a usage


async def test_a_volume_mounted_read_only_on_purpose_is_normal(tree: Path) -> None:
    node, target = await published(tree, flags=("ro",))
    superblock_read_only(tree)
    answer = await stats(node, target)
    assert not answer.volume_condition.abnormal, answer.volume_condition.message
