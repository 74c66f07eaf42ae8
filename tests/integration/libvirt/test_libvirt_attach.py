"""LUNs from the tgt backend, masked to the KVM host's IQN, passed through to the lab's
libvirt guest: the guest finds the disk by its NAA after a targeted rescan of the address the
layer returned; tgtd holds a session from the host's IQN exactly while the disk is attached;
a LUN masked elsewhere is refused and nothing is attached; controllers are added when full,
up to the limit."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lunbridge.errors import Conflict, LimitExceeded
from lunbridge.hypervisor.libvirt import Libvirt, LibvirtConfig
from lunbridge.hypervisor.libvirt.domain import parse_domain
from lunbridge.hypervisor.libvirt.slots import Limits, free_count
from lunbridge.hypervisor.libvirt.slots import PassthroughAttachment as Attachment
from tests.integration.libvirt.conftest import MakeLun
from tests.integration.libvirt.guestscsi import (
    delete_disk,
    disks,
    nexus_initiators,
    rescan,
    scsi_hosts,
    vpd83_hex,
)
from tests.lab import libvirt as libvirt_lab
from tests.lab import paths, procs
from tests.lab.lab import LabState
from tests.lab.libvirt import LibvirtGuest
from tests.lab.tgt import Tgt

OTHER_IQN = "iqn.2024-01.io.lunbridge.lab:some-other-host"


def live_disks(guest: LibvirtGuest) -> list[str]:
    """The aliases of the guest's SCSI disks, read from libvirtd by virsh."""
    return sorted(d.alias or "" for d in parse_domain(guest.domain_xml()).scsi)


def find_in_guest(guest: LibvirtGuest, attachment: Attachment) -> tuple[str, str]:
    """Rescan exactly the attachment's address on its controller's SCSI host; (sdX, H:C:T:L)."""
    assert attachment.pci_slot is not None
    deadline = time.monotonic() + 30
    while (host := scsi_hosts(guest).get(attachment.pci_slot)) is None:  # a hot-added controller
        assert time.monotonic() < deadline, f"no SCSI host in PCI slot {attachment.pci_slot}"
        time.sleep(0.2)
    rescan(guest, host, attachment.guest_address)
    found = disks(guest)
    assert attachment.naa in found, found
    sd, hctl = found[attachment.naa]
    channel, target, lun = attachment.guest_address
    assert hctl == f"{host.removeprefix('host')}:{channel}:{target}:{lun}"
    return sd, hctl


async def wait_no_session(tgt: Tgt, prefix: str) -> None:
    deadline = time.monotonic() + 10
    while nexus_initiators(tgt, prefix):
        assert time.monotonic() < deadline, nexus_initiators(tgt, prefix)
        await asyncio.sleep(0.1)


async def test_attach_rescan_and_detach_in_the_guest(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, tgt: Tgt, prefix: str
) -> None:
    lun = await masked_lun([lab.host_iqn])
    vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid.upper()}")
    await kvm.ensure_iscsi_portal([vm.host], lab.tgt.portal)
    assert nexus_initiators(tgt, prefix) == []

    started = time.monotonic()
    attachment = await kvm.attach_rdm(vm, lun.naa)
    attach_s = time.monotonic() - started
    assert (attachment.vm, attachment.naa, attachment.address.bus) == (vm.id, lun.naa, 0)
    assert attachment.address.target is not None
    assert attachment.pci_slot is not None
    assert f"ua-lunbridge-{lun.naa[4:]}" in live_disks(kvm_guest)
    assert nexus_initiators(tgt, prefix) == [lab.host_iqn]  # QEMU logged in as the host

    # controller 0 of the lab guest has hot-plug notifications off: nothing until the rescan
    assert attachment.address.controller == 0
    assert lun.naa not in disks(kvm_guest)
    started = time.monotonic()
    sd, hctl = find_in_guest(kvm_guest, attachment)
    rescan_s = time.monotonic() - started
    assert lun.naa[4:] in vpd83_hex(kvm_guest, sd)  # the LUN's own NAA designator, passed through
    size = kvm_guest.run(f"cat /sys/block/{sd}/size", timeout=30, check=True).stdout
    assert int(size) * 512 == lun.size_bytes
    print(f"attach {attach_s:.3f}s, targeted rescan + lookup {rescan_s:.3f}s ({sd} at {hctl})")

    assert await kvm.attach_rdm(vm, lun.naa) == attachment  # idempotent: the same disk

    delete_disk(kvm_guest, sd)  # what the node plugin does before a detach
    started = time.monotonic()
    await kvm.detach_rdm(vm, lun.naa)
    print(f"detach {time.monotonic() - started:.3f}s")
    assert f"ua-lunbridge-{lun.naa[4:]}" not in live_disks(kvm_guest)
    await wait_no_session(tgt, prefix)
    await kvm.detach_rdm(vm, lun.naa)  # a missing disk is success
    assert lun.naa not in disks(kvm_guest)


async def test_a_lun_masked_to_another_iqn_is_refused_and_nothing_is_attached(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, tgt: Tgt, prefix: str
) -> None:
    lun = await masked_lun([OTHER_IQN])
    vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid}")
    await kvm.ensure_iscsi_portal([vm.host], lab.tgt.portal)
    before = live_disks(kvm_guest)
    with pytest.raises(
        Conflict, match=f"LUN {lun.naa} is not visible to host {vm.host.name} .* does not hold|igroup"
    ) as refused:
        await kvm.attach_rdm(vm, lun.naa)
    assert lab.host_iqn in str(refused.value)
    assert live_disks(kvm_guest) == before
    assert nexus_initiators(tgt, prefix) == []
    await kvm.detach_rdm(vm, lun.naa)  # never attached: detaching is success


async def test_concurrent_attaches_take_distinct_addresses_and_one_discovery_serves_many(
    kvm: Libvirt, kvm_guest: LibvirtGuest, masked_lun: MakeLun, lab: LabState, tgt: Tgt, prefix: str
) -> None:
    luns = [await masked_lun([lab.host_iqn]) for _ in range(3)]
    vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid}")
    await kvm.ensure_iscsi_portal([vm.host], lab.tgt.portal)
    attachments = await asyncio.gather(*(kvm.attach_rdm(vm, lun.naa) for lun in luns))
    try:
        places = {
            (a.address.controller, a.address.bus, a.address.target, a.address.unit) for a in attachments
        }
        assert len(places) == 3
        assert kvm.discoveries <= 2  # the callers queued behind one discovery share the next
        for attachment in attachments:
            find_in_guest(kvm_guest, attachment)
    finally:
        found = disks(kvm_guest)
        for lun in luns:
            if lun.naa in found:
                delete_disk(kvm_guest, found[lun.naa][0])
        await asyncio.gather(*(kvm.detach_rdm(vm, lun.naa) for lun in luns))
    await wait_no_session(tgt, prefix)


async def test_a_full_controller_brings_a_new_one_then_the_limit(
    kvm_config: LibvirtConfig,
    kvm_guest: LibvirtGuest,
    masked_lun: MakeLun,
    lab: LabState,
    tgt: Tgt,
    prefix: str,
) -> None:
    """One LUN per controller (a small limit stands for a full controller): the LUN after the
    free ones goes on a virtio-scsi controller hot-plugged into the guest, and the guest finds
    it there; one more is LimitExceeded and changes nothing."""
    devices = parse_domain(kvm_guest.domain_xml())
    controllers = len(devices.controllers)
    config = LibvirtConfig(
        uri=kvm_config.uri,
        host_iqn=kvm_config.host_iqn,
        max_controllers=controllers + 1,
        targets_per_controller=1,
    )
    limits = Limits(config.max_controllers, config.targets_per_controller, config.units_per_target)
    room = free_count(devices, limits)
    luns = [await masked_lun([lab.host_iqn]) for _ in range(room + 1)]
    async with await Libvirt.connect(config) as kvm:
        vm = await kvm.find_vm(f"libvirt://{lab.guest_uuid}")
        await kvm.ensure_iscsi_portal([vm.host], lab.tgt.portal)
        attachments = []
        try:
            for lun in luns[:room]:
                attachments.append(await kvm.attach_rdm(vm, lun.naa))
            last = attachments[-1]
            assert last.address.controller not in {c.index for c in devices.controllers}  # a new controller
            assert (last.address.target, last.address.unit) == (0, 0)
            assert last.pci_slot not in {c.pci_slot for c in devices.controllers}
            for attachment in attachments:
                find_in_guest(kvm_guest, attachment)
            before = live_disks(kvm_guest)
            with pytest.raises(LimitExceeded, match=f"VM {vm.name} has no free SCSI address"):
                await kvm.attach_rdm(vm, luns[room].naa)
            assert live_disks(kvm_guest) == before
        finally:
            found = disks(kvm_guest)
            for lun in luns:
                if lun.naa in found:
                    delete_disk(kvm_guest, found[lun.naa][0])
                await kvm.detach_rdm(vm, lun.naa)
    await wait_no_session(tgt, prefix)


async def test_a_defined_domain_that_is_shut_off_gets_the_disk_in_its_definition(
    kvm: Libvirt, masked_lun: MakeLun, lab: LabState, tmp_path: Path
) -> None:
    """Like an RDM on a powered-off VM: the disk goes into the persistent definition, so the
    guest has it at its next boot; detach takes it out again."""
    lab_dir = Path(lab.lab_dir)
    root = ET.fromstring(libvirt_lab.domain_xml(lab_dir, paths.cache_dir(), procs.free_port()))
    name, domain_uuid = f"kvm-test-{tmp_path.name[-8:]}", "5e6f7a8b-0000-4000-8000-00000000ab01"
    root.find("name").text = name  # type: ignore[union-attr]
    root.find("uuid").text = domain_uuid  # type: ignore[union-attr]
    definition = tmp_path / "domain.xml"
    definition.write_text(ET.tostring(root, encoding="unicode"))
    libvirt_lab.virsh(lab_dir, "define", str(definition))
    try:
        lun = await masked_lun([lab.host_iqn])
        vm = await kvm.find_vm(f"libvirt://{domain_uuid}")
        await kvm.ensure_iscsi_portal([vm.host], lab.tgt.portal)
        attachment = await kvm.attach_rdm(vm, lun.naa)
        inactive = parse_domain(libvirt_lab.virsh(lab_dir, "dumpxml", "--inactive", name).stdout)
        (disk,) = [d for d in inactive.scsi if d.naa == lun.naa]
        assert disk.address is not None
        assert (disk.address.controller, disk.address.target) == (
            attachment.address.controller,
            attachment.address.target,
        )
        assert libvirt_lab.virsh(lab_dir, "domstate", name).stdout.strip() == "shut off"
        await kvm.detach_rdm(vm, lun.naa)
        inactive = parse_domain(libvirt_lab.virsh(lab_dir, "dumpxml", "--inactive", name).stdout)
        assert all(d.naa != lun.naa for d in inactive.scsi)
    finally:
        libvirt_lab.virsh(lab_dir, "undefine", name, check=False)
