"""What an initiator sees, asked with libiscsi's own tools (`libiscsi-bin`) under a chosen IQN:
the targets and LUNs it may reach, a LUN's ids (VPD pages 0x80 and 0x83) and its size."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=30, check=False)


def visible_luns(portal: str, initiator: str) -> dict[str, list[int]]:
    """Target IQN → LUN numbers (without the controller LUN 0) that `initiator` may use. The
    discovery must succeed: a failed one lists nothing, which would pass for "not visible".
    (tgtd resets discoveries while it has no target at all: ask only while one exists.)"""
    result = _run(["iscsi-ls", "-s", "-i", initiator, f"iscsi://{portal}/"])
    assert result.returncode == 0, result.stdout + result.stderr
    seen: dict[str, list[int]] = {}
    current: list[int] | None = None
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("Target:"):
            current = seen.setdefault(line.split()[0].removeprefix("Target:"), [])
        elif line.startswith("Lun:") and current is not None:
            lun = int(line.split()[0].removeprefix("Lun:"))
            if "DIRECT_ACCESS" in line:
                current.append(lun)
    return seen


@dataclass(frozen=True)
class Identity:
    naa: str  # from the binary NAA designator of VPD page 0x83
    vendor_id: str  # the T10 vendor designator (tgt puts scsi_id there as text)
    serial: str  # VPD page 0x80


_NAA_MARK = b"Designator Type:(3) NAA\nDesignator:["
_T10_MARK = b"Designator Type:(1) T10_VENDORT_ID\nDesignator:["


def identity(portal: str, initiator: str, target: str, lun: int) -> Identity:
    """The LUN's ids as `initiator` reads them. iscsi-inq prints the binary NAA designator raw
    (and would stop at a zero byte, which lunbridge ids never hold): read 16 bytes of it."""
    url = f"iscsi://{portal}/{target}/{lun}"
    page83 = _run(["iscsi-inq", "-i", initiator, "--evpd=1", "--pagecode=131", url])
    assert page83.returncode == 0, page83.stdout + page83.stderr
    raw = page83.stdout.split(_NAA_MARK, 1)[1]
    assert raw[16:18] == b"]\n", raw[:40]
    vendor = page83.stdout.split(_T10_MARK, 1)[1].split(b"]", 1)[0].decode()
    page80 = _run(["iscsi-inq", "-i", initiator, "--evpd=1", "--pagecode=128", url])
    assert page80.returncode == 0, page80.stdout + page80.stderr
    # a serial may hold "]" itself (ONTAP's do): the line's last one closes it
    line = page80.stdout.decode().split("Unit Serial Number:[", 1)[1].split("\n", 1)[0]
    serial = line.rsplit("]", 1)[0].strip()
    return Identity("naa." + raw[:16].hex(), vendor, serial)


def login_refused(portal: str, initiator: str, target: str, lun: int) -> bool:
    result = _run(["iscsi-inq", "-i", initiator, f"iscsi://{portal}/{target}/{lun}"])
    return result.returncode != 0 and b"Target not found(515)" in result.stdout + result.stderr


def capacity(portal: str, initiator: str, target: str, lun: int) -> int:
    """READ CAPACITY(16) in bytes."""
    result = _run(["iscsi-readcapacity16", "-i", initiator, f"iscsi://{portal}/{target}/{lun}"])
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.decode().split("Total size:", 1)[1].split()[0])


def write_pattern(
    portal: str, initiator: str, target: str, lun: int, byte: int, offset: int, length: int
) -> None:
    """Write `length` bytes of `byte` at `offset` through iSCSI (QEMU's initiator)."""
    _qemu_io(portal, initiator, target, lun, f"write -P {byte:#x} {offset} {length}")


def has_pattern(
    portal: str, initiator: str, target: str, lun: int, byte: int, offset: int, length: int
) -> bool:
    """True if the LUN holds `length` bytes of `byte` at `offset`, read through iSCSI."""
    result = _qemu_io(portal, initiator, target, lun, f"read -P {byte:#x} {offset} {length}", check=False)
    return result.returncode == 0 and b"Pattern verification failed" not in result.stdout


def _qemu_io(
    portal: str, initiator: str, target: str, lun: int, command: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    image = f"driver=iscsi,transport=tcp,portal={portal},target={target},lun={lun},initiator-name={initiator}"
    result = _run(["qemu-io", "--image-opts", image, "-c", command])
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
        assert b"failed" not in result.stdout.lower(), result.stdout
    return result


@contextlib.contextmanager
def session(portal: str, initiator: str, target: str, lun: int) -> Iterator[subprocess.Popen[bytes]]:
    """An iSCSI session held open (an idle `qemu-io` logged in) for the `with` block."""
    image = f"driver=iscsi,transport=tcp,portal={portal},target={target},lun={lun},initiator-name={initiator}"
    proc = subprocess.Popen(
        ["qemu-io", "--image-opts", image],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _established(portal):
            assert proc.poll() is None, "qemu-io could not log in"
            assert time.monotonic() < deadline, "no iSCSI session after 10s"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _established(portal: str) -> bool:
    port = portal.rsplit(":", 1)[1]
    result = subprocess.run(
        ["ss", "-Htn", "state", "established", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(result.stdout.strip())
