"""NodeService on a fixture sysfs tree with a fake runner: a disk carrying another NAA at the
published address is FAILED_PRECONDITION with nothing run against it; a blank disk is
formatted and mounted; requests are validated; a busy volume is ABORTED; a command that
overruns its limit fails the call UNAVAILABLE and leaves the volume free for the retry."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest

from lunbridge.command import Result, run
from lunbridge.errors import InvalidArgument
from lunbridge.models import AttachMode, PublishContext
from lunbridge.san import ScsiAddress
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.guest.limits import DEFAULT_LIMITS, Limits
from lunbridge_csi.node import NodeService
from tests.unit.csi.test_guest_scsi import NAA, add_disk, add_host

MOUNT = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4", mount_flags=["noatime"]),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Context:
    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)


class Runner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[list[str]] = []
        self.hang: set[str] = set()  # programs that hang once (a real command that ignores SIGTERM)

    async def __call__(self, argv: Sequence[str], time_limit: float) -> Result:
        self.calls.append(list(argv))
        if argv[0] in self.hang:
            self.hang.discard(argv[0])
            return await run(["sh", "-c", 'trap "" TERM; sleep 30'], time_limit, grace=0.2)
        if argv[0] == "blkid":
            return Result(tuple(argv), 2, "", "")
        if argv[0] == "mount":  # the fake kernel records the mount
            info = self.root / "proc/self/mountinfo"
            info.write_text(info.read_text() + f"50 1 8:16 / {argv[-1]} rw - ext4 {argv[-2]} rw\n")
        return Result(tuple(argv), 0, "", "")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    add_host(root, "host2", "0000:00:05.0")
    add_disk(root, "2:0:3:0", "sdb")
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text("22 1 0:21 / / ro - 9p hostroot ro\n")
    return root


def service(tree: Path, runner: Runner, limits: Limits = DEFAULT_LIMITS) -> NodeService:
    return NodeService(
        root=tree,
        runner=runner,
        limits=limits,
        node_id="libvirt://x",
        state_dir=tree.parent / "state",
        device_timeout=0.3,
    )


def stage(naa: str, staging: str, **bad: Any) -> csi_pb2.NodeStageVolumeRequest:
    """A stage request with the context ControllerPublishVolume writes (`bad` overrides keys)."""
    context = PublishContext(AttachMode.HYPERVISOR, naa, pci_slot=5, guest_address=ScsiAddress(0, 3, 0))
    return csi_pb2.NodeStageVolumeRequest(
        volume_id="vd-1",
        staging_target_path=staging,
        volume_capability=MOUNT,
        publish_context={**context.to_dict(), **bad},
    )


async def test_another_naa_is_refused_and_nothing_runs(tree: Path) -> None:
    runner = Runner(tree)
    other = "naa.60014050000000000000000000000001"
    with pytest.raises(Aborted) as refused:
        await service(tree, runner).NodeStageVolume(stage(other, str(tree.parent / "s")), Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert NAA in refused.value.details
    assert runner.calls == []
    assert not (tree.parent / "state").exists() or not list((tree.parent / "state").iterdir())


async def test_a_blank_disk_is_formatted_and_mounted_then_stage_is_idempotent(tree: Path) -> None:
    runner = Runner(tree)
    node = service(tree, runner)
    staging = str(tree.parent / "s")
    await node.NodeStageVolume(stage(NAA, staging), Context())  # type: ignore[arg-type]
    assert [c[0] for c in runner.calls] == ["blkid", "mkfs.ext4", "mount"]
    assert runner.calls[-1] == ["mount", "-t", "ext4", "-o", "noatime", "/dev/sdb", staging]
    assert (tree / "sys/class/scsi_host/host2/scan").read_text() == ""  # already there: no scan
    runner.calls.clear()
    await node.NodeStageVolume(stage(NAA, staging), Context())  # type: ignore[arg-type]
    assert runner.calls == []  # already staged: nothing to do


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (csi_pb2.NodeStageVolumeRequest(), "volume_id is missing"),
        (stage(NAA, ""), "staging_target_path is missing"),
        (stage(NAA, "/s", pciSlot="five"), "pciSlot 'five' is not a number"),
        (stage("bogus", "/s"), "not an NAA id"),
        (stage(NAA, "/s", guestAddress="1:2"), "channel:target:lun"),
    ],
)
async def test_requests_are_validated(
    tree: Path, request_: csi_pb2.NodeStageVolumeRequest, message: str
) -> None:
    with pytest.raises(Aborted, match=message) as refused:
        await service(tree, Runner(tree)).NodeStageVolume(request_, Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_busy_volume_is_aborted(tree: Path) -> None:
    node = service(tree, Runner(tree))
    async with node.in_flight.hold("vd-1"):
        with pytest.raises(Aborted) as refused:
            await node.NodeStageVolume(stage(NAA, "/s"), Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.ABORTED


async def test_node_info_and_unstage_deletes_the_device(tree: Path) -> None:
    runner = Runner(tree)
    node = service(tree, runner)
    info = await node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), Context())  # type: ignore[arg-type]
    assert info.node_id == "libvirt://x"
    assert info.max_volumes_per_node == 256 - 1
    staging = str(tree.parent / "s")
    await node.NodeStageVolume(stage(NAA, staging), Context())  # type: ignore[arg-type]
    (tree / "proc/self/mountinfo").write_text("22 1 0:21 / / ro - 9p hostroot ro\n")  # as if umount ran
    runner.calls.clear()
    await node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id="vd-1", staging_target_path=staging),
        Context(),  # type: ignore[arg-type]
    )
    assert runner.calls == [["blockdev", "--flushbufs", "/dev/sdb"]]
    assert (tree / "sys/devices/scsi/2:0:3:0/delete").read_text() == "1"


async def test_a_hung_mkfs_fails_unavailable_within_its_limit_and_the_retry_runs(tree: Path) -> None:
    runner = Runner(tree)
    runner.hang.add("mkfs.ext4")
    node = service(tree, runner, Limits(mkfs=0.5))
    staging = str(tree.parent / "s")
    started = time.monotonic()
    with pytest.raises(Aborted) as failed:
        await node.NodeStageVolume(stage(NAA, staging), Context())  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.5 + 0.2 + 3  # the limit, the grace, a busy machine
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert "did not finish within 0.5s" in failed.value.details
    runner.calls.clear()
    await node.NodeStageVolume(stage(NAA, staging), Context())  # type: ignore[arg-type]
    assert [c[0] for c in runner.calls] == ["blkid", "mkfs.ext4", "mount"]  # not ABORTED: it ran


def test_limits_are_positive() -> None:
    with pytest.raises(InvalidArgument, match="mkfs=0"):
        Limits(mkfs=0)
