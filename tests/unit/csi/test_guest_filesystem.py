"""Format only when blkid says there is no signature at all; mount state from mountinfo (and
what a bind mount shows there); the commands the mount helpers run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from lunbridge.command import CommandFailed, Result
from lunbridge.errors import Conflict, InvalidArgument
from lunbridge_csi.guest import filesystem, mount
from lunbridge_csi.guest.limits import Limits

LIMITS = Limits(mount=1, umount=2, probe=3, flush=4, mkfs=5, grow=6)


class FakeRunner:
    """Answers blkid with a fixed result; records every command and its time limit."""

    def __init__(self, blkid: Result) -> None:
        self.blkid = blkid
        self.calls: list[list[str]] = []
        self.limits: list[float] = []

    async def __call__(self, argv: Sequence[str], time_limit: float) -> Result:
        self.calls.append(list(argv))
        self.limits.append(time_limit)
        if argv[0] == "blkid":
            return self.blkid
        return Result(tuple(argv), 0, "", "")

    def ran(self, program: str) -> bool:
        return any(call[0] == program for call in self.calls)


EXT4 = Result((), 0, "DEVNAME=/dev/sdb\nUUID=1b2c\nVERSION=1.0\nTYPE=ext4\nUSAGE=filesystem\n", "")
BLANK = Result((), 2, "", "")


async def test_a_blank_disk_is_formatted() -> None:
    runner = FakeRunner(BLANK)
    assert await filesystem.ensure_filesystem(runner, LIMITS, "/dev/sdb", "ext4")
    assert runner.calls[0] == ["blkid", "-p", "-o", "export", "/dev/sdb"]
    assert runner.calls[1][0] == "mkfs.ext4"
    assert runner.calls[1][-1] == "/dev/sdb"
    assert runner.limits == [LIMITS.probe, LIMITS.mkfs]


async def test_a_disk_with_the_filesystem_is_not_formatted() -> None:
    runner = FakeRunner(EXT4)
    assert not await filesystem.ensure_filesystem(runner, LIMITS, "/dev/sdb", "ext4")
    assert not runner.ran("mkfs.ext4")


@pytest.mark.parametrize(
    "found",
    [
        Result((), 0, "PTUUID=abcd\nPTTYPE=gpt\n", ""),  # a partition table
        Result((), 0, "TYPE=LVM2_member\nUSAGE=raid\n", ""),
        Result((), 0, "UUID=1\nTYPE=xfs\n", ""),  # another filesystem
    ],
)
async def test_any_other_signature_is_refused_and_nothing_is_written(found: Result) -> None:
    runner = FakeRunner(found)
    with pytest.raises(Conflict, match="not blank"):
        await filesystem.ensure_filesystem(runner, LIMITS, "/dev/sdb", "ext4")
    assert [call[0] for call in runner.calls] == ["blkid"]


async def test_a_failing_probe_never_formats() -> None:
    argv = ("blkid", "-p", "-o", "export", "/dev/sdb")
    runner = FakeRunner(Result(argv, 4, "", "blkid: error: /dev/sdb: Input/output error"))
    with pytest.raises(CommandFailed, match=r"`blkid -p -o export /dev/sdb` exited 4: .*Input/output error"):
        await filesystem.ensure_filesystem(runner, LIMITS, "/dev/sdb", "xfs")
    assert not runner.ran("mkfs.xfs")


def test_fs_types_and_grow_commands() -> None:
    assert filesystem.fs_type("") == "ext4"
    assert filesystem.fs_type("XFS") == "xfs"
    with pytest.raises(InvalidArgument, match="not supported"):
        filesystem.fs_type("btrfs")
    assert filesystem.grow_argv("ext4", "/dev/sdb", "/mnt/x") == ["resize2fs", "/dev/sdb"]
    assert filesystem.grow_argv("xfs", "/dev/sdb", "/mnt/x") == ["xfs_growfs", "/mnt/x"]


MOUNTINFO = """\
22 1 0:21 / / ro,relatime shared:1 - 9p hostroot ro,trans=virtio
30 22 0:25 / /mnt rw,relatime shared:5 - tmpfs tmpfs rw
41 30 8:16 / /mnt/staging/pv\\0401 rw,noatime shared:20 - ext4 /dev/sdb rw
42 30 8:16 / /mnt/pod/mount ro,noatime shared:20 - ext4 /dev/sdb rw
43 42 8:16 / /mnt/pod/mount rw,noatime shared:20 - ext4 /dev/sdb rw
"""


def test_mountinfo_is_parsed_with_escapes_and_stacking(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    staged = mount.mounted_at(tmp_path, "/mnt/staging/pv 1/")
    assert staged is not None
    assert (staged.source, staged.fs_type, staged.read_only) == ("/dev/sdb", "ext4", False)
    top = mount.mounted_at(tmp_path, "/mnt/pod/mount")
    assert top is not None
    assert top.major_minor == "8:16"
    assert not top.read_only  # the topmost of the two
    assert mount.mounted_at(tmp_path, "/mnt/pod") is None


def test_a_bind_mount_shows_the_filesystem_holding_its_source_and_the_folder_in_it(tmp_path: Path) -> None:
    """As the kernel writes mountinfo: a bound device node shows its devtmpfs and its name in it
    (findmnt: `udev[/sdb]`); a bound mount point shows that mount's filesystem and folder."""
    (tmp_path / "proc/self").mkdir(parents=True)
    bound = "44 30 0:5 /sdb /mnt/pod/dev rw,nosuid - devtmpfs udev rw\n"
    (tmp_path / "proc/self/mountinfo").write_text(
        MOUNTINFO + "23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n" + bound
    )
    assert mount.bind_origin(tmp_path, "/dev/sdb") == ("0:5", "/sdb")
    assert mount.bind_origin(tmp_path, "/mnt/staging/pv 1/") == ("8:16", "/")
    assert mount.bind_origin(tmp_path, "/mnt/staging/pv 1/data") == ("8:16", "/data")
    assert mount.bind_origin(tmp_path, "/mnt/other") == ("0:25", "/other")
    assert mount.bind_origin(tmp_path, "/etc/hosts") == ("0:21", "/etc/hosts")
    device = mount.mounted_at(tmp_path, "/mnt/pod/dev")
    assert device is not None
    assert mount.bind_mismatch(tmp_path, device, "/dev/sdb", read_only=False) is None
    assert mount.bind_mismatch(tmp_path, device, "/dev/sdc", read_only=False) == (
        "/mnt/pod/dev shows /sdb of udev (0:5), not a bind mount of /dev/sdc"
    )
    assert mount.bind_mismatch(tmp_path, device, "/dev/sdb", read_only=True) == (
        "/mnt/pod/dev is mounted read-write, not read-only"
    )
    top = mount.mounted_at(tmp_path, "/mnt/pod/mount")
    assert top is not None
    assert mount.bind_mismatch(tmp_path, top, "/mnt/staging/pv 1", read_only=False) is None


async def test_mount_commands() -> None:
    runner = FakeRunner(BLANK)
    await mount.mount(runner, LIMITS, "/dev/sdb", "/s", "ext4", ["noatime", "discard"])
    await mount.bind_mount(runner, LIMITS, "/s", "/t", read_only=True)
    await mount.flush(runner, LIMITS, "/dev/sdb")
    await filesystem.grow(runner, LIMITS, "/dev/sdb", "xfs", "/s")
    assert runner.calls == [
        ["mount", "-t", "ext4", "-o", "noatime,discard", "/dev/sdb", "/s"],
        ["mount", "--bind", "/s", "/t"],
        ["mount", "-o", "remount,bind,ro", "/t"],
        ["blockdev", "--flushbufs", "/dev/sdb"],
        ["xfs_growfs", "/s"],
    ]
    assert runner.limits == [LIMITS.mount, LIMITS.mount, LIMITS.mount, LIMITS.flush, LIMITS.grow]
