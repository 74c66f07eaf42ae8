"""The guest's SCSI helpers on fixture sysfs trees: host by PCI slot, VPD page 0x83 parsing,
targeted rescan and the bounded wait, the waits' looks (5 ms apart for the first 200 ms, then
backing off to each wait's ceiling), device deletion (bounded also when the kernel's write
hangs), and how many lunbridge disks the VM can hold in all (issue 12, case 2): the lab
simulator's VM layout, one with another kind of SCSI controller, a KVM guest."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lunbridge.errors import InvalidArgument, NotFound
from lunbridge_csi.guest import scsi
from tests.unit.csi.sysfs import NAA, TGT_PAGE, add_disk, add_host, naa_page, pvscsi_guest, vpd83

OTHER_NAA = "naa.60014050000000000000000000000002"


def test_vpd83_yields_the_naa_of_the_logical_unit_only() -> None:
    designators = scsi.parse_vpd83(TGT_PAGE)
    assert [(d.type, d.association) for d in designators] == [(1, 0), (3, 0), (4, 1)]
    assert scsi.naas_in_vpd83(TGT_PAGE) == [NAA]
    # an NAA of the target port (association 1) is not the LU's
    port_naa = vpd83((1, 1, 3, bytes.fromhex("5" + "0" * 15)))
    assert scsi.naas_in_vpd83(port_naa) == []
    # a registered-extended (16 byte) and a registered (8 byte) NAA
    short = vpd83((1, 0, 3, bytes.fromhex("5000c50012345678")))
    assert scsi.naas_in_vpd83(short) == ["naa.5000c50012345678"]


def test_vpd83_ignores_a_truncated_descriptor_and_refuses_another_page() -> None:
    page = TGT_PAGE[:-2]  # the last descriptor cut short
    assert scsi.naas_in_vpd83(page) == [NAA]
    with pytest.raises(InvalidArgument, match="not a VPD page 0x83"):
        scsi.parse_vpd83(bytes([0, 0x80, 0, 0]))


def test_host_by_pci_slot_from_the_sysfs_symlinks(tmp_path: Path) -> None:
    add_host(tmp_path, "host0", "0000:00:01.1")
    add_host(tmp_path, "host2", "0000:00:05.0")
    add_host(tmp_path, "host10", "0000:00:1c.0")
    assert scsi.hosts_by_pci_slot(tmp_path) == {1: "host0", 5: "host2", 0x1C: "host10"}
    assert scsi.host_for_pci_slot(tmp_path, 5) == "host2"
    assert scsi.host_for_pci_slot(tmp_path, 6) is None
    assert scsi.hosts_by_pci_slot(tmp_path / "nothing") == {}


def test_a_hosts_link_is_read_once_and_resolved_only_when_its_text_names_no_pci_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_host(tmp_path, "host2", "0000:00:05.0")  # as sysfs writes it: ../../devices/pci0000:00/...
    real = tmp_path / "sys/devices/pci0000:00/0000:00:07.0/virtio3/host3/scsi_host/host3"
    real.mkdir(parents=True)
    alias = tmp_path / "sys/alias-of-host3"  # a link through another link: only resolving finds it
    alias.symlink_to(real)
    (tmp_path / scsi.SCSI_HOSTS / "host3").symlink_to(alias)
    resolved: list[str] = []
    original = Path.resolve

    def resolve(self: Path, strict: bool = False) -> Path:
        resolved.append(self.name)
        return original(self, strict)

    monkeypatch.setattr(Path, "resolve", resolve)
    assert scsi.hosts_by_pci_slot(tmp_path) == {5: "host2", 7: "host3"}
    assert resolved == ["host3"]


async def test_wait_for_host_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no SCSI host in PCI slot 7"):
        await scsi.wait_for_host(tmp_path, 7, within=0.2)


async def test_targeted_rescan_writes_exactly_one_address_and_finds_the_disk(tmp_path: Path) -> None:
    add_host(tmp_path, "host2", "0000:00:05.0")
    address = scsi.Address.parse("0:3:0")
    scan = tmp_path / scsi.SCSI_HOSTS / "host2" / "scan"

    async def kernel() -> None:  # the disk appears a moment after the scan
        for _ in range(500):
            if scan.read_text():
                break
            await asyncio.sleep(0.01)
        add_disk(tmp_path, "2:0:3:0", "sdb")

    appear = asyncio.create_task(kernel())
    found = await scsi.wait_for_device(tmp_path, "host2", address, within=5)
    await appear
    assert found == "sdb"
    assert scan.read_text() == "0 3 0"
    assert scsi.device_naas(tmp_path, "sdb") == [NAA]
    assert scsi.devices_with_naa(tmp_path, NAA.upper()) == ["sdb"]


async def test_wait_for_device_is_bounded_and_says_where_it_looked(tmp_path: Path) -> None:
    add_host(tmp_path, "host2", "0000:00:05.0")
    with pytest.raises(NotFound, match=r"no disk at 2:0:4:0 .* after a targeted rescan"):
        await scsi.wait_for_device(tmp_path, "host2", scsi.Address(0, 4, 0), within=0.2)


def test_guest_address_is_three_integers() -> None:
    assert scsi.Address.parse("0:12:0") == scsi.Address(0, 12, 0)
    for bad in ("0:1", "a:b:c", "0:1:2:3", ""):
        with pytest.raises(InvalidArgument):
            scsi.Address.parse(bad)


async def test_delete_size_rescan_and_wwid_fallback(tmp_path: Path) -> None:
    add_disk(tmp_path, "2:0:1:0", "sdc", page=None)
    (tmp_path / "sys/devices/scsi/2:0:1:0/wwid").write_text(NAA + "\n")
    assert scsi.device_naas(tmp_path, "sdc") == [NAA]
    assert await scsi.rescan_size(tmp_path, "sdc") == 65536 * 512
    assert await scsi.delete_device(tmp_path, "sdc", within=0.1)
    assert (tmp_path / "sys/devices/scsi/2:0:1:0/delete").read_text() == "1"
    assert not await scsi.delete_device(tmp_path, "sdz")


async def test_a_delete_the_kernel_does_not_finish_returns_within_its_bound(tmp_path: Path) -> None:
    """Deleting a disk whose I/O hangs: the kernel's cache flush holds the write to `delete`."""
    add_disk(tmp_path, "2:0:1:0", "sdc")

    async def hung(path: Path, text: str) -> None:
        await asyncio.sleep(30)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scsi, "_write", hung)
        started = time.monotonic()
        assert await scsi.delete_device(tmp_path, "sdc", within=0.1)
    assert time.monotonic() - started < 2


def test_the_simulators_vm_holds_59_lunbridge_disks_whatever_is_attached_now(tmp_path: Path) -> None:
    """The lab's VMs: one PVSCSI controller in PCI slot 160 with the boot disk at unit 0 (and an
    IDE CD-ROM): four controllers of 15 units, one of them the boot disk's."""
    pvscsi_guest(tmp_path, [{0}])
    add_host(tmp_path, "host5", "0000:00:07.1", driver="ata_piix")
    add_disk(tmp_path, "5:0:0:0", "sr0", page=None)
    assert scsi.volume_capacity(tmp_path, managed=()) == 4 * 15 - 1 == 59
    # a lunbridge disk at unit 1, then on a controller lunbridge added: the count stays
    add_disk(tmp_path, "0:0:1:0", "sdb", page=TGT_PAGE)
    assert scsi.volume_capacity(tmp_path, managed=[NAA]) == 59
    add_host(tmp_path, "host6", "0000:00:a1.0", driver=scsi.PVSCSI)
    add_disk(tmp_path, "6:0:0:0", "sdc", page=naa_page(OTHER_NAA))
    assert scsi.volume_capacity(tmp_path, managed=[NAA, OTHER_NAA]) == 59
    # a disk lunbridge does not manage (not a staged volume) holds its unit
    assert scsi.volume_capacity(tmp_path, managed=[NAA]) == 58


def test_other_vsphere_scsi_controllers_take_some_of_the_four(tmp_path: Path) -> None:
    """A VM that boots from an LSI Logic controller: lunbridge may add three PVSCSI controllers;
    a PVSCSI controller already there with two other disks."""
    add_host(tmp_path, "host0", "0000:00:10.0", driver="mptspi")
    add_disk(tmp_path, "0:0:0:0", "sda", page=None)
    assert scsi.volume_capacity(tmp_path, managed=()) == 3 * 15
    add_host(tmp_path, "host1", "0000:00:a0.0", driver=scsi.PVSCSI)
    add_disk(tmp_path, "1:0:0:0", "sdb", page=None)
    add_disk(tmp_path, "1:0:1:0", "sdc", page=None)
    assert scsi.volume_capacity(tmp_path, managed=()) == 3 * 15 - 2


def test_a_kvm_guest_holds_the_configured_cap_and_a_guest_without_such_controllers_none(
    tmp_path: Path,
) -> None:
    assert scsi.volume_capacity(tmp_path, managed=()) == 0  # CSI: the CO decides
    add_host(tmp_path, "host0", "0000:00:01.1", driver="ata_piix")
    assert scsi.volume_capacity(tmp_path, managed=()) == 0
    add_host(tmp_path, "host2", "0000:00:05.0", driver=scsi.VIRTIO_SCSI)
    add_disk(tmp_path, "2:0:0:0", "sda", page=None)  # a boot disk on virtio-scsi
    add_disk(tmp_path, "2:0:3:0", "sdb")
    assert scsi.volume_capacity(tmp_path, managed=()) == scsi.DEFAULT_KVM_MAX_VOLUMES == 64
    assert scsi.volume_capacity(tmp_path, managed=[NAA], kvm_max_volumes=10) == 10


async def test_a_disk_is_asked_again_for_its_vpd_page_until_it_shows_the_naa(tmp_path: Path) -> None:
    """A disk left by a detached LUN keeps its old page until `rescan`; the LUN now at that
    address answers with its own NAA (here: the fake kernel swaps the page on the third ask)."""
    old = vpd83((1, 0, 3, bytes.fromhex("60014050000000000000000000000001")))
    add_disk(tmp_path, "2:0:3:0", "sdb", page=old)
    device = tmp_path / "sys/devices/scsi/2:0:3:0"
    asked = 0
    real_reread = scsi.reread

    async def kernel(root: Path, name: str) -> None:
        nonlocal asked
        await real_reread(root, name)
        asked += 1
        if asked == 3:
            (device / "vpd_pg83").write_bytes(TGT_PAGE)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scsi, "reread", kernel)
        assert await scsi.recheck_naas(tmp_path, "sdb", NAA, within=5, interval=0.01) == [NAA]
        assert asked == 3
        # another LUN really is there: asked until the deadline, then its NAA is reported
        (device / "vpd_pg83").write_bytes(old)
        carried = await scsi.recheck_naas(tmp_path, "sdb", NAA, within=0.05, interval=0.01)
        assert carried == ["naa.60014050000000000000000000000001"]
    assert (device / "rescan").read_text() == "1"


def test_a_disk_counts_as_there_only_once_it_is_in_sys_block(tmp_path: Path) -> None:
    """The SCSI device's block/sdX shows a moment before /sys/block/sdX and its VPD pages:
    until then the disk is not there yet (NodeStage keeps waiting instead of misjudging it)."""
    add_disk(tmp_path, "2:0:3:0", "sdb")
    registered = tmp_path / scsi.BLOCK / "sdb"
    held = tmp_path / "held"
    registered.rename(held)
    assert scsi.block_device_at(tmp_path, "2:0:3:0") is None
    held.rename(registered)
    assert scsi.block_device_at(tmp_path, "2:0:3:0") == "sdb"


def test_the_waits_look_every_5ms_for_200ms_then_back_off_to_their_ceiling() -> None:
    delays = list(itertools.islice(scsi.poll_delays(0.05), 46))
    assert delays[:40] == [0.005] * 40  # 200 ms of sleeps
    assert delays[40:] == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05, 0.05])
    assert list(itertools.islice(scsi.poll_delays(0.2), 45))[-5:] == pytest.approx(
        [0.01, 0.02, 0.04, 0.08, 0.16]
    )
    assert list(itertools.islice(scsi.poll_delays(0.002), 3)) == [0.002] * 3  # a ceiling below 5 ms
    assert list(itertools.islice(scsi.poll_delays(1, fast=0.01, fast_for=0.02), 4)) == [
        0.01,
        0.01,
        0.02,
        0.04,
    ]


class Sleeps:
    """Records each sleep of the guest helpers (and sleeps none); `then(n, change)` makes the
    fake kernel's change after the n-th."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.slept: list[float] = []
        self.changes: dict[int, Callable[[], object]] = {}
        self._sleep = asyncio.sleep
        monkeypatch.setattr(asyncio, "sleep", self)  # the module scsi sleeps through

    def then(self, count: int, change: Callable[[], object]) -> Sleeps:
        self.changes[count] = change
        return self

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if (change := self.changes.get(len(self.slept))) is not None:
            change()
        await self._sleep(0)


async def test_a_disk_the_scan_finds_a_moment_later_is_looked_for_every_5ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_host(tmp_path, "host2", "0000:00:05.0")
    sleeps = Sleeps(monkeypatch).then(3, lambda: add_disk(tmp_path, "2:0:3:0", "sdb"))
    assert await scsi.wait_for_device(tmp_path, "host2", scsi.Address(0, 3, 0), within=5) == "sdb"
    assert sleeps.slept == [0.005] * 3


async def test_a_controller_hot_added_a_moment_later_is_looked_for_every_5ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = Sleeps(monkeypatch).then(2, lambda: add_host(tmp_path, "host2", "0000:00:05.0"))
    assert await scsi.wait_for_host(tmp_path, 5, within=5) == "host2"
    assert sleeps.slept == [0.005] * 2


async def test_the_first_asks_again_for_the_vpd_page_are_5ms_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_disk(tmp_path, "2:0:3:0", "sdb", page=None)
    page = tmp_path / "sys/devices/scsi/2:0:3:0/vpd_pg83"
    sleeps = Sleeps(monkeypatch).then(2, lambda: page.write_bytes(TGT_PAGE))
    assert await scsi.recheck_naas(tmp_path, "sdb", NAA, within=5) == [NAA]
    assert sleeps.slept == [0.005] * 2
