"""Which target/LUN carries an NAA: libiscsi's listing and VPD 0x83 output parsed, including
the raw binary designator `iscsi-inq` prints (it may hold `]` and newlines, and stops at a
zero byte), and the discovery run through stand-in tools."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from lunbridge.errors import Unavailable
from lunbridge.hypervisor.libvirt.discovery import (
    Libiscsi,
    LunAddress,
    TargetLuns,
    parse_designators,
    parse_ls,
)
from lunbridge.hypervisor.libvirt.refs import Portal

LS = """\
Target:iqn.2024-01.io.lunbridge:host1 Portal:127.0.0.1:3260,1
Lun:0    Type:STORAGE_ARRAY_CONTROLLER
Lun:1    Type:DIRECT_ACCESS (Size:63M)
Lun:3    Type:DIRECT_ACCESS (Size:1G)
Target:iqn.2024-01.io.lunbridge:host1 Portal:10.0.0.5:3260,1
Lun:1    Type:DIRECT_ACCESS (Size:63M)
Target:iqn.2024-01.io.lunbridge:empty Portal:127.0.0.1:3260,1
Lun:0    Type:STORAGE_ARRAY_CONTROLLER
"""


def inq(*designators: tuple[int, int, bytes]) -> bytes:
    """iscsi-inq --evpd=1 --pagecode=131 output for (code set, designator type, raw value)."""
    out = b"Peripheral Qualifier:CONNECTED\nPeripheral Device Type:DIRECT_ACCESS\n"
    out += b"Page Code:(0x83) DEVICE_IDENTIFICATION\n"
    for number, (code, kind, value) in enumerate(designators):
        out += b"DEVICE DESIGNATOR #%d\nCode Set:(%d) X\nPIV:0\nAssociation:(0) LOGICAL_UNIT\n" % (
            number,
            code,
        )
        out += b"Designator Type:(%d) X\nDesignator:[" % kind + value.split(b"\0")[0] + b"]\n"
    return out


# A real tgt NAA whose binary form holds a newline (0x0a) and a `\` — what tgt printed here.
TGT_NAA = "6001405c790a01d57d54736afd6bbc37"


def test_listing_gives_each_target_once_with_its_disks() -> None:
    assert parse_ls(LS) == [
        TargetLuns("iqn.2024-01.io.lunbridge:host1", (1, 3)),
        TargetLuns("iqn.2024-01.io.lunbridge:empty", ()),
    ]
    assert parse_ls("") == []


def test_binary_naa_with_newline_and_bracket_bytes() -> None:
    raw = bytes.fromhex(TGT_NAA)
    assert b"\n" in raw
    out = inq((1, 3, raw), (1, 3, b"0"), (2, 1, TGT_NAA.encode()))  # tgt: binary, a stray "0", T10
    assert parse_designators(out) == {f"naa.{TGT_NAA}"}
    with_bracket = bytes.fromhex("60014055d231e05d0fca44f3990599ff")  # 0x5d is "]"
    assert parse_designators(inq((1, 3, with_bracket))) == {"naa." + with_bracket.hex()}


def test_an_naa_cut_short_at_a_zero_byte_is_dropped_and_the_ascii_one_used() -> None:
    naa = "6001405000112233445566778899aabb"
    binary_only = inq((1, 3, bytes.fromhex(naa)))
    assert parse_designators(binary_only) == set()
    assert parse_designators(inq((1, 3, bytes.fromhex(naa)), (2, 1, naa.encode()))) == {f"naa.{naa}"}


def test_eight_byte_naa_and_scsi_name_strings() -> None:
    assert parse_designators(inq((1, 3, bytes.fromhex("5001c501a1b2c3d4")))) == {"naa.5001c501a1b2c3d4"}
    assert parse_designators(inq((3, 8, b"naa.5000C500A1B2C3D4"))) == {"naa.5000c500a1b2c3d4"}
    # a T10 id that is not an NAA (a vendor string, a wrong length for its type) is ignored
    assert parse_designators(inq((2, 1, b"IET     00010000"), (2, 1, b"6001405c790a01d5"))) == set()


def tool(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


async def test_discovery_through_the_tools(tmp_path: Path) -> None:
    (tmp_path / "ls.out").write_text(LS)
    (tmp_path / "lun1.out").write_bytes(inq((1, 3, bytes.fromhex(TGT_NAA))))
    (tmp_path / "lun3.out").write_bytes(inq((2, 1, b"600140512345678901234567890abcde")))
    ls = tool(tmp_path, "iscsi-ls", f'echo "$@" >> {tmp_path}/calls; cat {tmp_path}/ls.out\n')
    inq_tool = tool(
        tmp_path,
        "iscsi-inq",
        f'echo "$@" >> {tmp_path}/calls\n'
        'case "$5" in\n'
        f"  *:host1/1) cat {tmp_path}/lun1.out ;;\n"
        f"  *:host1/3) cat {tmp_path}/lun3.out ;;\n"
        '  *) echo "Login Failed" >&2; exit 10 ;;\n'
        "esac\n",
    )
    iscsi = Libiscsi("iqn.2024-01.io.lunbridge.lab:kvm-host", 10.0, ls=ls, inq=inq_tool)
    portal = Portal("127.0.0.1", 3260)
    found = await iscsi.discover(portal)
    assert found == {
        f"naa.{TGT_NAA}": LunAddress(portal, "iqn.2024-01.io.lunbridge:host1", 1),
        "naa.600140512345678901234567890abcde": LunAddress(portal, "iqn.2024-01.io.lunbridge:host1", 3),
    }
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "-s -i iqn.2024-01.io.lunbridge.lab:kvm-host iscsi://127.0.0.1:3260/"
    assert calls[1] == (
        "--evpd=1 --pagecode=131 -i iqn.2024-01.io.lunbridge.lab:kvm-host "
        "iscsi://127.0.0.1:3260/iqn.2024-01.io.lunbridge:host1/1"
    )
    assert await iscsi.holds(found[f"naa.{TGT_NAA}"], f"naa.{TGT_NAA}")
    assert not await iscsi.holds(LunAddress(portal, "iqn.2024-01.io.lunbridge:host1", 9), f"naa.{TGT_NAA}")


async def test_an_unreachable_portal_or_a_missing_tool_is_unavailable(tmp_path: Path) -> None:
    failing = tool(
        tmp_path, "iscsi-ls", 'echo "iscsi_service: socket error Connection refused(111)." >&2; exit 10\n'
    )
    iscsi = Libiscsi("iqn.2024-01.io.example:h", 10.0, ls=failing)
    with pytest.raises(Unavailable, match=r"portal 127\.0\.0\.1:1 .*Connection refused"):
        await iscsi.targets(Portal("127.0.0.1", 1))
    missing = Libiscsi("iqn.2024-01.io.example:h", 10.0, ls=str(tmp_path / "nope"))
    with pytest.raises(Unavailable, match="install libiscsi's tools"):
        await missing.targets(Portal("127.0.0.1", 3260))
    slow = Libiscsi("iqn.2024-01.io.example:h", 0.2, ls=tool(tmp_path, "slow", "sleep 5\n"))
    with pytest.raises(Unavailable, match=r"slow -s -i .* did not finish within 0\.2s"):
        await slow.targets(Portal("127.0.0.1", 3260))


async def test_a_portal_check_is_a_connection(tmp_path: Path) -> None:
    iscsi = Libiscsi("iqn.2024-01.io.example:h", 5.0)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        await iscsi.check_portal(Portal("127.0.0.1", listening.getsockname()[1]))
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
    with pytest.raises(Unavailable, match=f"portal 127.0.0.1:{port} cannot be reached"):
        await iscsi.check_portal(Portal("127.0.0.1", port))
