"""Issue 12 on the node service (fixture sysfs, fake runner).

Case 2: NodeGetInfo's max_volumes_per_node is how many lunbridge disks the VM can hold in all
(the CO reads it once and subtracts attached volumes itself): 59 on the lab simulator's VM
layout whatever is staged, the configured cap on a KVM guest (--kvm-max-volumes), and
--max-volumes above both.
Case 7: NodeUnstageVolume of a dead disk (SCSI device offline, or I/O that fails or hangs
because its LUN went) unmounts (lazily when a plain unmount fails on the dead disk), flushes
best effort within its limit, deletes the SCSI device, removes the state file and answers OK,
and OK again on a retry; a busy filesystem on a live disk keeps its mount (UNAVAILABLE)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from lunbridge_csi.__main__ import build_parser
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.guest import mount
from lunbridge_csi.guest.limits import DEFAULT_LIMITS, Limits
from lunbridge_csi.node import NodeService
from lunbridge_csi.server import Settings, node_service
from tests.unit.csi.sysfs import NAA, TGT_PAGE, add_disk, pvscsi_guest
from tests.unit.csi.test_guest_node_service import Aborted, Context, Runner, service, stage

DEVICE = "sys/devices/scsi/2:0:3:0"  # sdb of the `tree` fixture


async def info(node: NodeService) -> int:
    answer = await node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), Context())  # type: ignore[arg-type]
    return answer.max_volumes_per_node


async def staged(
    tree: Path, runner: Runner, limits: Limits = DEFAULT_LIMITS, **bad: str
) -> tuple[NodeService, str]:
    node, staging = service(tree, runner, limits), str(tree.parent / "s")
    await node.NodeStageVolume(stage(NAA, staging, **bad), Context())  # type: ignore[arg-type]
    runner.calls.clear()
    return node, staging


async def unstage(node: NodeService, staging: str) -> None:
    request = csi_pb2.NodeUnstageVolumeRequest(volume_id="vd-1", staging_target_path=staging)
    await node.NodeUnstageVolume(request, Context())  # type: ignore[arg-type]


def state_files(tree: Path) -> list[Path]:
    return list((tree.parent / "state").glob("*.json"))


# --- case 2: the volume count -------------------------------------------------------------------
async def test_node_info_is_what_the_simulators_vm_holds_in_all_staged_or_not(tmp_path: Path) -> None:
    root = tmp_path / "root"
    pvscsi_guest(root, [{0}])  # PCI slot 160, the boot disk at unit 0
    add_disk(root, "0:0:3:0", "sdb", page=TGT_PAGE)  # our volume, attached at unit 3
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text("22 1 0:21 / / ro - 9p hostroot ro\n")
    runner = Runner(root)
    node, _ = await staged(root, runner, pciSlot="160")
    assert await info(node) == 59
    assert await info(service(root, runner, max_volumes=7)) == 7


async def test_node_info_of_a_kvm_guest_is_the_configured_cap(tree: Path) -> None:
    runner = Runner(tree)
    assert await info(service(tree, runner)) == 64
    assert await info(service(tree, runner, kvm_max_volumes=5)) == 5
    assert await info(service(tree, runner, kvm_max_volumes=5, max_volumes=3)) == 3


def test_the_count_flags_reach_the_node_service(monkeypatch: pytest.MonkeyPatch) -> None:
    def served(*argv: str) -> tuple[int | None, int]:
        args = build_parser().parse_args(["--mode", "node", *argv])
        settings = Settings(
            "node", "tcp://127.0.0.1:1", max_volumes=args.max_volumes, kvm_max_volumes=args.kvm_max_volumes
        )
        node = node_service(settings)
        return node.max_volumes, node.kvm_max_volumes

    assert served() == (None, 64)  # counted; the documented KVM default
    assert served("--max-volumes", "9", "--kvm-max-volumes", "12") == (9, 12)
    monkeypatch.setenv("LUNBRIDGE_CSI_MAX_VOLUMES", "5")
    monkeypatch.setenv("LUNBRIDGE_CSI_KVM_MAX_VOLUMES", "20")
    assert served() == (5, 20)


# --- case 7: unstage of a dead disk -------------------------------------------------------------
@pytest.mark.parametrize("umount_fails", [False, True], ids=["umount-works", "umount-fails"])
async def test_unstage_of_an_offline_disk_unmounts_deletes_it_and_answers_ok(
    tree: Path, umount_fails: bool
) -> None:
    runner = Runner(tree)
    node, staging = await staged(tree, runner)
    (tree / DEVICE / "state").write_text("offline\n")  # echo offline > /sys/block/sdb/device/state
    runner.fail["blockdev"] = "blockdev: cannot open /dev/sdb: No such device or address"
    if umount_fails:
        runner.fail["umount"] = f"umount: {staging}: I/O error"
    await unstage(node, staging)
    lazy = [["umount", "-l", staging]] if umount_fails else []
    assert runner.calls == [["umount", staging], *lazy, ["blockdev", "--flushbufs", "/dev/sdb"]]
    assert mount.mounted_at(tree, staging) is None
    assert (tree / DEVICE / "delete").read_text() == "1"
    assert state_files(tree) == []
    runner.calls.clear()
    await unstage(node, staging)  # the kubelet's retry
    assert runner.calls == []


@pytest.mark.parametrize("io", ["fails", "hangs"])
async def test_unstage_of_a_disk_whose_lun_went_is_bounded_and_ok(tree: Path, io: str) -> None:
    """The SCSI device still says `running`, but the LUN is gone: the unmount fails, a read
    fails or hangs, so the mount is detached lazily; the flush hangs until its short limit."""
    runner = Runner(tree)
    node, staging = await staged(tree, runner, Limits(flush=0.3, io_check=0.3))
    runner.fail["umount"] = f"umount: {staging}: I/O error"
    if io == "fails":
        runner.fail["dd"] = "dd: error reading '/dev/sdb': Input/output error"
    else:
        runner.hang.add("dd")
    runner.hang.add("blockdev")
    started = time.monotonic()
    await unstage(node, staging)
    assert time.monotonic() - started < 0.3 + 0.3 + 2 * 0.2 + 3  # the limits, the graces, a busy machine
    assert [call[:2] for call in runner.calls] == [
        ["umount", staging],
        ["dd", "if=/dev/sdb"],
        ["umount", "-l"],
        ["blockdev", "--flushbufs"],
    ]
    assert mount.mounted_at(tree, staging) is None
    assert (tree / DEVICE / "delete").read_text() == "1"
    assert state_files(tree) == []


async def test_a_busy_filesystem_on_a_live_disk_keeps_its_mount(tree: Path) -> None:
    runner = Runner(tree)
    node, staging = await staged(tree, runner)
    runner.fail["umount"] = f"umount: {staging}: target is busy."
    with pytest.raises(Aborted) as failed:
        await unstage(node, staging)
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert "target is busy" in failed.value.details
    assert [call[0] for call in runner.calls] == ["umount", "dd"]  # the disk reads fine: no lazy unmount
    assert mount.mounted_at(tree, staging) is not None
    assert (tree / DEVICE / "delete").read_text() == ""
    assert len(state_files(tree)) == 1
