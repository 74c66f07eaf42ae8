"""NodeService on a fixture sysfs tree with a fake runner: a disk carrying another NAA at the
published address is FAILED_PRECONDITION with nothing run against it; a blank disk is
formatted and mounted; requests are validated; a busy volume is ABORTED; a command that
overruns its limit fails the call UNAVAILABLE and leaves the volume free for the retry; a
publish at a target that already has a mount is OK only if it is that very publication (issue
12, case 3), else ALREADY_EXISTS."""

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
from lunbridge_csi.guest import mount, scsi
from lunbridge_csi.guest.limits import DEFAULT_LIMITS, Limits
from lunbridge_csi.node import NodeService
from tests.unit.csi.sysfs import NAA

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
        self.fail: dict[str, str] = {}  # program -> the stderr it exits 1 with (a lazy umount works)

    async def __call__(self, argv: Sequence[str], time_limit: float) -> Result:
        self.calls.append(list(argv))
        if argv[0] in self.hang:
            self.hang.discard(argv[0])
            return await run(["sh", "-c", 'trap "" TERM; sleep 30'], time_limit, grace=0.2)
        if argv[0] in self.fail and argv[1] != "-l":
            return Result(tuple(argv), 1, "", self.fail[argv[0]])
        if argv[0] == "blkid":
            return Result(tuple(argv), 2, "", "")
        if argv[0] == "mount":
            self._mount(list(argv))
        if argv[0] == "umount":  # the fake kernel drops the topmost mount at the target
            info = self.root / "proc/self/mountinfo"
            lines = info.read_text().splitlines()
            top = max(i for i, line in enumerate(lines) if line.split()[4] == argv[-1])
            info.write_text("".join(f"{line}\n" for i, line in enumerate(lines) if i != top))
        return Result(tuple(argv), 0, "", "")

    def _mount(self, argv: list[str]) -> None:
        """The fake kernel records the mount in mountinfo."""
        info = self.root / "proc/self/mountinfo"
        lines = info.read_text().splitlines()
        target = argv[-1]
        if "remount,bind,ro" in argv:  # the topmost mount at target turns read-only
            top = max(i for i, line in enumerate(lines) if line.split()[4] == target)
            fields = lines[top].split()
            fields[5] = "ro"
            lines[top] = " ".join(fields)
        elif argv[1] == "--bind":  # shows the filesystem that holds the source (checked on its own)
            major_minor, folder = mount.bind_origin(self.root, argv[2])
            lines.append(f"51 1 {major_minor} {folder} {target} rw - ext4 {argv[2]} rw")
        else:
            lines.append(f"50 1 8:16 / {target} rw - ext4 {argv[-2]} rw")
        info.write_text("\n".join(lines) + "\n")


def service(tree: Path, runner: Runner, limits: Limits = DEFAULT_LIMITS, **options: Any) -> NodeService:
    return NodeService(
        root=tree,
        runner=runner,
        limits=limits,
        node_id="libvirt://x",
        state_dir=tree.parent / "state",
        device_timeout=0.3,
        **options,
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
    assert info.max_volumes_per_node == scsi.DEFAULT_KVM_MAX_VOLUMES  # a virtio-scsi guest
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


# --- publish at a target that has a mount already (issue 12, case 3) ----------------------------
BLOCK = csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=MOUNT.access_mode)


def publish(
    staging: str, target: str, capability: csi_pb2.VolumeCapability = MOUNT, **kw: Any
) -> csi_pb2.NodePublishVolumeRequest:
    return csi_pb2.NodePublishVolumeRequest(
        volume_id="vd-1", staging_target_path=staging, target_path=target, volume_capability=capability, **kw
    )


async def published(node: NodeService, request: csi_pb2.NodePublishVolumeRequest) -> None:
    await node.NodePublishVolume(request, Context())  # type: ignore[arg-type]


async def refused(node: NodeService, request: csi_pb2.NodePublishVolumeRequest) -> str:
    with pytest.raises(Aborted) as caught:
        await published(node, request)
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    return caught.value.details


def mounted_elsewhere(tree: Path, line: str) -> None:
    """Something this volume did not put there (another volume, another device)."""
    info = tree / "proc/self/mountinfo"
    info.write_text(info.read_text() + line + "\n")


@pytest.mark.parametrize("block", [False, True], ids=["mount", "block"])
async def test_a_target_with_this_publication_is_ok_and_with_anything_else_already_exists(
    tree: Path, block: bool
) -> None:
    runner = Runner(tree)
    node = service(tree, runner)
    capability = BLOCK if block else MOUNT
    staging, base = str(tree.parent / "s"), tree.parent / "pod"
    staged = stage(NAA, staging)
    staged.volume_capability.CopyFrom(capability)
    await node.NodeStageVolume(staged, Context())  # type: ignore[arg-type]
    rw, ro = str(base / "rw"), str(base / "ro")
    publications = [publish(staging, rw, capability), publish(staging, ro, capability, readonly=True)]
    for request in publications:
        await published(node, request)
    runner.calls.clear()
    for request in publications:  # the same publications again: OK, and nothing runs
        await published(node, request)
    assert runner.calls == []
    # another read-only state: asked with the flag or with a read-only access mode
    assert "is mounted read-write, not read-only" in await refused(
        node, publish(staging, rw, capability, readonly=True)
    )
    reader = csi_pb2.VolumeCapability()
    reader.CopyFrom(capability)
    reader.access_mode.mode = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY
    assert "read-write, not read-only" in await refused(node, publish(staging, rw, reader))
    assert "is mounted read-only, not read-write" in await refused(node, publish(staging, ro, capability))
    # another source at the target: another volume's filesystem, or another device node
    other = str(base / "other")
    if block:
        mounted_elsewhere(tree, f"61 1 0:5 /sdc {other} rw - devtmpfs devtmpfs rw")
        shown = "/sdc of devtmpfs (0:5)"
    else:
        mounted_elsewhere(tree, f"60 1 8:32 / {other} rw - ext4 /dev/sdc rw")
        shown = "/ of /dev/sdc (8:32)"
    details = await refused(node, publish(staging, other, capability))
    assert f"{other} shows {shown}, not a bind mount of {'/dev/sdb' if block else staging}" in details
    assert runner.calls == []
    ours = mount.mounted_at(tree, rw)
    assert ours is not None  # what the fake kernel shows for the bind mounts that publish made
    assert (ours.major_minor, ours.root) == (("0:5", "/sdb") if block else ("8:16", "/"))
