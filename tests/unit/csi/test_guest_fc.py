"""The FC helpers of a node that logs in with its own HBAs, on fixture sysfs trees: remote ports
read from the FC transport class, which of them lead to the storage server's target ports, the
targeted scan (`B T L` to exactly those ports' hosts), the disk found on each path, and the
errors a node admin reads when the fabric or the LUN mapping is wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from lunbridge.errors import Conflict, InvalidArgument, NotFound, Unavailable
from lunbridge_csi.guest import fc, scsi
from tests.unit.csi.sysfs import NAA, add_disk, add_fc_host, add_rport, naa_page

OTHER_NAA = "naa.60014050000000000000000000000002"
# the storage server's target ports, one on each fabric, and another array's
TARGET_A = "50:0a:09:80:00:00:00:01"
TARGET_B = "50:0a:09:80:00:00:00:02"
ELSEWHERE = "50:06:01:60:00:00:00:09"
LUN = 7


def two_fabrics(root: Path) -> None:
    """host1 and host2: one HBA on each fabric, each logged in to one port of the storage server
    (host1 as target 0, host2 as target 3); host2 also sees another array, host3 only that one."""
    add_fc_host(root, "host1", "0000:00:05.0", "10:00:00:00:c9:00:00:01")
    add_fc_host(root, "host2", "0000:00:06.0", "10:00:00:00:c9:00:00:02")
    add_fc_host(root, "host3", "0000:00:07.0", "10:00:00:00:c9:00:00:03")
    add_rport(root, "host1", 0, TARGET_A, target_id=0)
    add_rport(root, "host2", 0, ELSEWHERE, target_id=0)
    add_rport(root, "host2", 1, TARGET_B, target_id=3)
    add_rport(root, "host3", 0, ELSEWHERE, target_id=0)


def scan_file(root: Path, host: str) -> str:
    return (root / scsi.SCSI_HOSTS / host / "scan").read_text()


@asynccontextmanager
async def fake_kernel(
    root: Path, disks: Mapping[str, tuple[str, bytes]], slow: Mapping[str, float] | None = None
) -> AsyncIterator[None]:
    """While inside: a disk (name, VPD page 0x83) at each H:C:T:L of `disks`, once `C T L` has
    been written to hostH's scan file, as the kernel's scan of that LUN would add it; `slow`
    H:C:T:L seconds after the write."""

    async def add(hctl: str, name: str, page: bytes) -> None:
        await asyncio.sleep((slow or {}).get(hctl, 0))
        add_disk(root, hctl, name, page=page)

    async def watch() -> None:
        waiting = dict(disks)
        adding = []
        while waiting:
            for hctl, (name, page) in list(waiting.items()):
                host, channel, target, lun = hctl.split(":")
                if scan_file(root, f"host{host}") == f"{channel} {target} {lun}":
                    adding.append(asyncio.create_task(add(hctl, name, page)))
                    del waiting[hctl]
            await asyncio.sleep(0.01)
        await asyncio.gather(*adding)

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()


def test_remote_ports_are_read_from_the_fc_transport_class(tmp_path: Path) -> None:
    add_fc_host(tmp_path, "host1", "0000:00:05.0", "10:00:00:00:c9:00:00:01")
    add_fc_host(tmp_path, "host10", "0000:00:06.0", "10:00:00:00:c9:00:00:02")
    add_rport(tmp_path, "host10", 2, TARGET_B, target_id=4, state="Blocked", channel=1)
    add_rport(tmp_path, "host1", 0, TARGET_A.upper().replace(":", ""), target_id=0)
    add_rport(tmp_path, "host1", 1, "20:00:00:25:b5:00:00:07", target_id=-1, roles="FCP Initiator")
    broken = add_rport(tmp_path, "host1", 2, TARGET_A, target_id=1)
    (tmp_path / fc.FC_REMOTE_PORTS / broken / "port_name").write_text("0xnothex\n")

    ports = fc.remote_ports(tmp_path)

    assert [(p.name, p.host, p.channel, p.target_id, p.port_name, p.state, p.roles) for p in ports] == [
        ("rport-1:0-1", "host1", 0, -1, "20:00:00:25:b5:00:00:07", "Online", ("FCP Initiator",)),
        ("rport-1:0-0", "host1", 0, 0, TARGET_A, "Online", ("FCP Target",)),
        ("rport-10:1-2", "host10", 1, 4, TARGET_B, "Blocked", ("FCP Target",)),
    ]
    assert [port.hctl(LUN) for port in ports[1:]] == ["1:0:0:7", "10:1:4:7"]
    assert fc.remote_ports(tmp_path / "no-fc") == []


def test_only_usable_fcp_target_ports_with_a_wanted_wwpn_are_paths(tmp_path: Path) -> None:
    two_fabrics(tmp_path)
    add_rport(tmp_path, "host1", 1, TARGET_B, target_id=1, state="Blocked")
    add_rport(tmp_path, "host3", 1, TARGET_A, target_id=-1, roles="FCP Initiator")
    add_rport(tmp_path, "host3", 5, TARGET_B, target_id=-1)  # no SCSI target (yet): nothing to scan
    # a port that was a target once keeps its target id when its roles change
    add_rport(tmp_path, "host3", 4, TARGET_A, target_id=6, roles="FCP Initiator")
    add_rport(tmp_path, "host3", 2, TARGET_B, target_id=2, state="Marginal")  # the kernel scans it
    add_rport(tmp_path, "host3", 3, TARGET_A, target_id=5, roles="FCP Initiator, FCP Target")

    # the publish context may spell the WWPNs any way lunbridge.san.wwn takes
    found = fc.matching_ports(tmp_path, ["0x500A098000000001", "50-0a-09-80-00-00-00-02"])

    assert [port.name for port in found] == ["rport-1:0-0", "rport-2:0-1", "rport-3:0-2", "rport-3:0-3"]


async def test_wanted_wwpns_and_the_lun_id_are_checked(tmp_path: Path) -> None:
    two_fabrics(tmp_path)
    with pytest.raises(InvalidArgument, match="not a WWN"):
        fc.matching_ports(tmp_path, ["500a0980"])
    with pytest.raises(InvalidArgument, match="no FC target WWPN given"):
        fc.matching_ports(tmp_path, [])
    with pytest.raises(InvalidArgument, match="LUN id -1 is negative"):
        await fc.wait_for_devices(tmp_path, [TARGET_A], -1, within=5)
    assert scan_file(tmp_path, "host1") == ""


async def test_the_scan_writes_b_t_l_to_exactly_the_hosts_of_the_paths(tmp_path: Path) -> None:
    two_fabrics(tmp_path)

    await fc.scan(tmp_path, fc.matching_ports(tmp_path, [TARGET_A, TARGET_B]), LUN)

    assert scan_file(tmp_path, "host1") == "0 0 7"
    assert scan_file(tmp_path, "host2") == "0 3 7"  # target 3: the storage server's, not target 0
    assert scan_file(tmp_path, "host3") == ""  # sees only the other array


async def test_a_port_whose_scsi_host_is_gone_is_not_found(tmp_path: Path) -> None:
    two_fabrics(tmp_path)
    (tmp_path / scsi.SCSI_HOSTS / "host1" / "scan").unlink()
    with pytest.raises(NotFound, match="host1"):
        await fc.scan(tmp_path, fc.matching_ports(tmp_path, [TARGET_A]), LUN)


async def test_one_rport_one_path(tmp_path: Path) -> None:
    add_fc_host(tmp_path, "host4", "0000:00:05.0", "10:00:00:00:c9:00:00:01")
    add_rport(tmp_path, "host4", 3, TARGET_A, target_id=2)

    async with fake_kernel(tmp_path, {"4:0:2:5": ("sdb", naa_page(NAA))}):
        found = await fc.wait_for_devices(tmp_path, [TARGET_A], 5, within=5)

    assert found == ["sdb"]
    assert scan_file(tmp_path, "host4") == "0 2 5"
    assert scsi.device_naas(tmp_path, "sdb") == [NAA]


async def test_two_hbas_give_a_disk_on_each_path(tmp_path: Path) -> None:
    two_fabrics(tmp_path)
    disks = {"1:0:0:7": ("sdb", naa_page(NAA)), "2:0:3:7": ("sdc", naa_page(NAA))}

    async with fake_kernel(tmp_path, disks):
        found = await fc.wait_for_devices(tmp_path, [TARGET_A, TARGET_B], LUN, within=5)

    assert found == ["sdb", "sdc"]
    assert [scsi.device_naas(tmp_path, name) for name in found] == [[NAA], [NAA]]
    assert (scan_file(tmp_path, "host1"), scan_file(tmp_path, "host2")) == ("0 0 7", "0 3 7")
    assert scan_file(tmp_path, "host3") == ""


async def test_a_slower_path_is_waited_for(tmp_path: Path) -> None:
    two_fabrics(tmp_path)
    disks = {"1:0:0:7": ("sdb", naa_page(NAA)), "2:0:3:7": ("sdc", naa_page(NAA))}

    async with fake_kernel(tmp_path, disks, slow={"2:0:3:7": 0.3}):
        found = await fc.wait_for_devices(tmp_path, [TARGET_A, TARGET_B], LUN, within=5, settle=3)

    assert found == ["sdb", "sdc"]


async def test_disks_already_there_are_found_without_a_scan(tmp_path: Path) -> None:
    """A second NodeStage of the same volume: the paths show the disk already."""
    two_fabrics(tmp_path)
    add_disk(tmp_path, "1:0:0:7", "sdb", page=naa_page(NAA))
    add_disk(tmp_path, "2:0:3:7", "sdc", page=naa_page(NAA))

    assert await fc.wait_for_devices(tmp_path, [TARGET_A, TARGET_B], LUN, within=1) == ["sdb", "sdc"]
    assert scan_file(tmp_path, "host1") == scan_file(tmp_path, "host2") == ""


async def test_a_wanted_wwpn_without_a_usable_rport_is_a_clear_error(tmp_path: Path) -> None:
    """The node's HBAs are not zoned to the storage server (or its ports are Blocked): nothing is
    scanned, and the error names the wanted WWPNs and the remote ports the node does see."""
    two_fabrics(tmp_path)
    add_rport(tmp_path, "host1", 1, "50:0a:09:80:00:00:00:05", target_id=1, state="Blocked")

    with pytest.raises(Unavailable) as raised:
        await fc.wait_for_devices(tmp_path, ["50:0a:09:80:00:00:00:05", "500a098000000006"], LUN, within=0.2)

    message = str(raised.value)
    assert "no FC remote port online for 50:0a:09:80:00:00:00:05, 50:0a:09:80:00:00:00:06" in message
    assert "rport-1:0-1 (50:0a:09:80:00:00:00:05, Blocked, FCP Target)" in message
    assert f"rport-1:0-0 ({TARGET_A}, Online, FCP Target)" in message
    assert [scan_file(tmp_path, host) for host in ("host1", "host2", "host3")] == ["", "", ""]


async def test_no_disk_behind_the_ports_says_where_it_scanned(tmp_path: Path) -> None:
    """The ports are there but the LUN is not mapped to this node's WWPNs."""
    two_fabrics(tmp_path)

    with pytest.raises(Unavailable) as raised:
        await fc.wait_for_devices(tmp_path, [TARGET_A, TARGET_B], LUN, within=0.2)

    message = str(raised.value)
    assert f"no disk at LUN 7 behind {TARGET_A}, {TARGET_B} after a targeted scan of" in message
    assert f"1:0:0:7 (rport-1:0-0, {TARGET_A}), 2:0:3:7 (rport-2:0-1, {TARGET_B})" in message


async def test_a_port_that_comes_online_during_the_wait_is_scanned(tmp_path: Path) -> None:
    """The HBA logs in to the target while NodeStage waits (zoning just changed)."""
    add_fc_host(tmp_path, "host1", "0000:00:05.0", "10:00:00:00:c9:00:00:01")
    rport = add_rport(tmp_path, "host1", 0, TARGET_A, target_id=0, state="Blocked")

    async def log_in() -> None:
        await asyncio.sleep(0.1)
        (tmp_path / fc.FC_REMOTE_PORTS / rport / "port_state").write_text("Online\n")

    async with fake_kernel(tmp_path, {"1:0:0:7": ("sdb", naa_page(NAA))}):
        login = asyncio.create_task(log_in())
        found = await fc.wait_for_devices(tmp_path, [TARGET_A], LUN, within=5, rescan_every=60)
        await login

    assert found == ["sdb"]


async def test_a_path_that_never_shows_the_disk_is_not_waited_for_past_settle(tmp_path: Path) -> None:
    two_fabrics(tmp_path)
    started = time.monotonic()

    async with fake_kernel(tmp_path, {"1:0:0:7": ("sdb", naa_page(NAA))}):
        found = await fc.wait_for_devices(tmp_path, [TARGET_A, TARGET_B], LUN, within=30, settle=0.2)

    assert found == ["sdb"]
    assert time.monotonic() - started < 5
    assert scan_file(tmp_path, "host2") == "0 3 7"  # the other path was scanned all the same


async def test_paths_that_show_different_disks_are_refused(tmp_path: Path) -> None:
    """One path still shows another LUN at that number: neither disk is handed back."""
    two_fabrics(tmp_path)
    add_disk(tmp_path, "1:0:0:7", "sdb", page=naa_page(NAA))
    add_disk(tmp_path, "2:0:3:7", "sdc", page=naa_page(OTHER_NAA))

    with pytest.raises(Conflict, match=rf"sdb at 1:0:0:7 via {TARGET_A}: {NAA}; sdc at 2:0:3:7"):
        await fc.wait_for_devices(tmp_path, [TARGET_A, TARGET_B], LUN, within=1)
    # a disk that shows no NAA yet is not judged here (the caller asks it again)
    (tmp_path / "sys/devices/scsi/2:0:3:7/vpd_pg83").unlink()
    assert fc.devices_at(tmp_path, fc.matching_ports(tmp_path, [TARGET_A, TARGET_B]), LUN) == ["sdb", "sdc"]
