"""Raw device mappings through the real simulator and tgtd: a LUN masked to the VM's host
attaches (idempotently) where the Attachment says and detaches without losing its data; a
LUN masked to another host is refused with a clear error; concurrent attaches never share a
unit and go in together (a few reconfigures); one LUN that vCenter refuses in such a
reconfigure fails only its own attach, and one whose caller went away is not made; a VM
holds 60 RDMs on 4 PVSCSI controllers and refuses the 61st, whether they come one by one or
at once; a host sees a LUN (by its SCSI topology) once masked to it and rescanned, and no
longer once unmasked and rescanned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lunbridge.errors import Conflict, LimitExceeded, LunbridgeError, NotFound
from lunbridge.hypervisor.base import Vm
from lunbridge.hypervisor.vsphere import VSphere
from lunbridge.hypervisor.vsphere.slots import RdmAttachment as Attachment
from tests.integration.hypervisor.vcenter import (
    LunSet,
    WaitForTask,
    find,
    new_naa,
    rdm_disks,
    reconfigures,
    send_targets,
    vim,
)
from tests.lab import tgt as tgt_lab
from tests.lab import vcsim as vcsim_lab

MARKER = b"lunbridge data that must survive a detach\n"


def disk_at(vm: Any, attachment: Attachment) -> Any:
    matches = [d for d in rdm_disks(vm) if d.key == attachment.disk_key]
    assert len(matches) == 1, [d.key for d in rdm_disks(vm)]
    return matches[0]


async def test_attach_and_detach_a_lun_masked_to_the_vms_host(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    make_lun: Callable[..., tgt_lab.LabLun],
    tmp_path: Path,
) -> None:
    info = vcsim.inventory.vms[0]
    host = vcsim.inventory.host(info.host)
    naa = new_naa()
    lun = make_lun([host.iqn], naa=naa.removeprefix("naa."))
    backing = tmp_path / f"{lun.target.rsplit(':', 1)[1]}.img"
    with backing.open("r+b") as handle:
        handle.write(MARKER)

    vm = await vsphere.find_vm(f"vsphere://{info.bios_uuid}")
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    assert send_targets(si, host.name).count(("127.0.0.1", tgt.port)) == 1
    await vsphere.rescan(vm.host)

    attachment = await vsphere.attach_rdm(vm, naa)
    assert (attachment.vm, attachment.naa) == (info.moref, naa)
    pv0 = info.scsi_controllers[0]
    assert (attachment.controller_key, attachment.bus_number) == (pv0.key, pv0.bus_number)
    assert attachment.unit_number == 1  # unit 0 holds the boot disk
    assert attachment.pci_slot == 160  # the lab gives the first PVSCSI controller slot 160, as vCenter does

    vm_obj = find(si, vim.VirtualMachine, info.name)
    disk = disk_at(vm_obj, attachment)
    assert (disk.controllerKey, disk.unitNumber) == (attachment.controller_key, attachment.unit_number)
    host_lun = next(
        x for x in find(si, vim.HostSystem, host.name).config.storageDevice.scsiLun if x.canonicalName == naa
    )
    assert disk.backing.compatibilityMode == "physicalMode"
    assert disk.backing.deviceName == host_lun.devicePath == f"/vmfs/devices/disks/{naa}"
    assert disk.backing.lunUuid == host_lun.uuid

    assert await vsphere.attach_rdm(vm, naa.upper()) == attachment
    assert len(rdm_disks(vm_obj)) == 1

    await vsphere.detach_rdm(vm, naa)
    assert rdm_disks(vm_obj) == []
    await vsphere.detach_rdm(vm, naa)  # already gone: success

    # the mapping file went, the LUN and its data did not
    assert backing.read_bytes()[: len(MARKER)] == MARKER
    assert lun.target in tgt.adm("--op", "show", "--mode", "target").stdout
    host_luns = find(si, vim.HostSystem, host.name).config.storageDevice.scsiLun
    assert naa in {x.canonicalName for x in host_luns}


async def test_lun_masked_to_another_host_is_refused(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    make_lun: Callable[..., tgt_lab.LabLun],
) -> None:
    info = vcsim.inventory.vms[2]
    here = vcsim.inventory.host(info.host)
    elsewhere = next(h for h in vcsim.inventory.hosts if h.name != here.name)
    naa = new_naa()
    make_lun([elsewhere.iqn], naa=naa.removeprefix("naa."))
    vm = await vsphere.find_vm(info.name)
    other_vm = await vsphere.find_vm(next(v.name for v in vcsim.inventory.vms if v.host == elsewhere.name))
    await vsphere.ensure_iscsi_portal([vm.host, other_vm.host], tgt.portal)
    await vsphere.rescan(vm.host)
    await vsphere.rescan(other_vm.host)
    names = {x.canonicalName for x in find(si, vim.HostSystem, elsewhere.name).config.storageDevice.scsiLun}
    assert naa in names, "the other host must see it, or the test proves nothing"

    assert await vsphere.sees_lun(other_vm.host, naa)
    assert not await vsphere.sees_lun(vm.host, naa)
    devices_before = len(find(si, vim.VirtualMachine, info.name).config.hardware.device)
    with pytest.raises(Conflict, match=rf"LUN {naa} is not visible to host {here.name} even after a rescan"):
        await vsphere.attach_rdm(vm, naa)
    vm_obj = find(si, vim.VirtualMachine, info.name)
    assert rdm_disks(vm_obj) == []
    assert len(vm_obj.config.hardware.device) == devices_before


async def test_a_host_sees_a_lun_until_it_is_unmapped_and_the_host_rescanned(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    make_lun: Callable[..., tgt_lab.LabLun],
) -> None:
    info = vcsim.inventory.vms[1]
    host_info = vcsim.inventory.host(info.host)
    naa = new_naa()
    lun = make_lun([host_info.iqn], naa=naa.removeprefix("naa."))
    vm = await vsphere.find_vm(info.name)
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    assert not await vsphere.sees_lun(vm.host, naa)
    await vsphere.rescan(vm.host)
    assert await vsphere.sees_lun(vm.host, naa)
    assert await vsphere.sees_lun(vm.host, naa.upper(), within=60)  # the last read answers
    scsi_luns = find(si, vim.HostSystem, host_info.name).config.storageDevice.scsiLun
    assert naa in {x.canonicalName for x in scsi_luns}, "vCenter's own list agrees"

    tgt.adm("--op", "unbind", "--mode", "target", "--tid", str(lun.tid), "--initiator-name", host_info.iqn)
    await vsphere.rescan(vm.host)
    assert not await vsphere.sees_lun(vm.host, naa)
    scsi_luns = find(si, vim.HostSystem, host_info.name).config.storageDevice.scsiLun
    assert naa not in {x.canonicalName for x in scsi_luns}, "vCenter's own list agrees"


async def test_rescan_one_adapter_and_an_unknown_one(vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer) -> None:
    vm = await vsphere.find_vm(vcsim.inventory.vms[0].name)
    await vsphere.rescan(vm.host, "vmhba64")
    with pytest.raises(NotFound, match=rf"host {vm.host.name} has no storage adapter 'vmhba99'"):
        await vsphere.rescan(vm.host, "vmhba99")


async def test_a_deleted_vm_is_not_found_for_attach_and_detach_is_done(
    vsphere: VSphere, vcsim: vcsim_lab.VcsimPeer, si: Any, scratch_vm: Callable[..., str]
) -> None:
    vm = await vsphere.find_vm(scratch_vm(vcsim.inventory.hosts[0].name))
    WaitForTask(find(si, vim.VirtualMachine, vm.name).Destroy_Task())
    # the attach reads the VM's host and its devices at once: either read may say so first
    gone = rf"cannot read (the devices of )?VM {vm.name}: the object no longer exists"
    with pytest.raises(NotFound, match=gone):
        await vsphere.attach_rdm(vm, new_naa())
    await vsphere.detach_rdm(vm, new_naa())
    with pytest.raises(NotFound):
        await vsphere.find_vm(vm.name)


async def test_twenty_concurrent_attaches_get_distinct_units_in_a_few_reconfigures(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    scratch_vm: Callable[..., str],
    make_luns: Callable[..., LunSet],
) -> None:
    host = vcsim.inventory.hosts[1]
    vm = await vsphere.find_vm(scratch_vm(host.name, pci_slot=160))
    luns = make_luns([host.iqn], 20)
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    await vsphere.rescan(vm.host)
    before = reconfigures(si, find(si, vim.VirtualMachine, vm.name))

    started = time.monotonic()
    attachments = await asyncio.gather(*(vsphere.attach_rdm(vm, naa) for naa in luns.naas))
    elapsed = time.monotonic() - started
    # the attaches that queue on the VM go in together: vCenter's task list shows a few
    # reconfigures, not twenty
    tasks = reconfigures(si, find(si, vim.VirtualMachine, vm.name)) - before
    assert 1 <= tasks <= 5, f"{tasks} reconfigures for 20 attaches"
    places = {(a.controller_key, a.unit_number) for a in attachments}
    assert len(places) == 20, sorted(places)
    assert all(a.unit_number != 7 and 0 <= a.unit_number <= 15 for a in attachments)
    assert {a.naa for a in attachments} == set(luns.naas)
    assert {a.bus_number for a in attachments} == {0, 1}  # 14 units left on bus 0, then a new controller
    # the PCI slot is the controller's: set on bus 0's, unset on the controller added for bus 1
    assert {(a.bus_number, a.pci_slot) for a in attachments} == {(0, 160), (1, None)}

    vm_obj = find(si, vim.VirtualMachine, vm.name)
    assert {(d.controllerKey, d.unitNumber) for d in rdm_disks(vm_obj)} == places
    print(f"20 concurrent attaches: {elapsed:.2f}s in {tasks} reconfigures")

    await asyncio.gather(*(vsphere.detach_rdm(vm, naa) for naa in luns.naas))
    assert rdm_disks(find(si, vim.VirtualMachine, vm.name)) == []


async def queue_attaches(vsphere: VSphere, vm: Vm, naas: Sequence[str]) -> list[asyncio.Task[Attachment]]:
    """Start an attach of each LUN while the caller holds the VM's lock; return once all of
    them found their LUN on the host and wait for the VM."""
    queued = [asyncio.create_task(vsphere.attach_rdm(vm, naa)) for naa in naas]
    for _ in range(1000):
        if len(vsphere._attaches.get(vm.id, [])) == len(naas):
            break
        await asyncio.sleep(0.01)
    assert len(vsphere._attaches.get(vm.id, [])) == len(naas)
    return queued


async def test_a_lun_vcenter_refuses_fails_only_its_own_attach_among_queued_ones(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    scratch_vm: Callable[..., str],
    make_luns: Callable[..., LunSet],
) -> None:
    host = vcsim.inventory.hosts[2]
    vm = await vsphere.find_vm(scratch_vm(host.name))
    luns = make_luns([host.iqn], 4)
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    await vsphere.rescan(vm.host)
    gone = luns.naas[1]

    async with vsphere._lock(vm):  # as when another change of the VM runs: the four queue
        queued = await queue_attaches(vsphere, vm, luns.naas)
        # the host stops seeing one of them after lunbridge found it there
        tgt.adm("--op", "delete", "--mode", "logicalunit", "--tid", str(luns.tid), "--lun", "2")
        find(si, vim.HostSystem, host.name).configManager.storageSystem.RescanAllHba()
    done = await asyncio.gather(*queued, return_exceptions=True)

    by_naa = dict(zip(luns.naas, done, strict=True))
    assert isinstance(by_naa[gone], LunbridgeError), by_naa[gone]
    assert gone in str(by_naa[gone])
    attached = {naa: a for naa, a in by_naa.items() if naa != gone}
    assert all(isinstance(a, Attachment) for a in attached.values()), attached
    vm_obj = find(si, vim.VirtualMachine, vm.name)
    assert {d.backing.deviceName.rsplit("/", 1)[1] for d in rdm_disks(vm_obj)} == set(attached)
    await asyncio.gather(*(vsphere.detach_rdm(vm, naa) for naa in attached))


async def test_an_attach_cancelled_while_it_waits_for_its_vm_is_not_made(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    scratch_vm: Callable[..., str],
    make_luns: Callable[..., LunSet],
) -> None:
    host = vcsim.inventory.hosts[2]
    vm = await vsphere.find_vm(scratch_vm(host.name))
    luns = make_luns([host.iqn], 3)
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    await vsphere.rescan(vm.host)

    async with vsphere._lock(vm):
        queued = await queue_attaches(vsphere, vm, luns.naas)
        queued[0].cancel()  # its caller went away (a reconcile cancelled at shutdown)
        with pytest.raises(asyncio.CancelledError):
            await queued[0]
    attached = await asyncio.gather(*queued[1:])

    assert {a.naa for a in attached} == set(luns.naas[1:])
    vm_obj = find(si, vim.VirtualMachine, vm.name)
    assert {d.backing.deviceName.rsplit("/", 1)[1] for d in rdm_disks(vm_obj)} == set(luns.naas[1:])
    await asyncio.gather(*(vsphere.detach_rdm(vm, naa) for naa in luns.naas[1:]))


async def test_sixty_rdms_fill_four_controllers_and_the_61st_is_refused_alone_or_at_once(
    vsphere: VSphere,
    vcsim: vcsim_lab.VcsimPeer,
    tgt: tgt_lab.Tgt,
    si: Any,
    scratch_vm: Callable[..., str],
    make_luns: Callable[..., LunSet],
) -> None:
    host = vcsim.inventory.hosts[3]
    vm = await vsphere.find_vm(scratch_vm(host.name, boot_disk=False))
    luns = make_luns([host.iqn], 61)
    await vsphere.ensure_iscsi_portal([vm.host], tgt.portal)
    await vsphere.rescan(vm.host)

    started = time.monotonic()
    attachments = [await vsphere.attach_rdm(vm, naa) for naa in luns.naas[:30]]
    at_once = await asyncio.gather(
        *(vsphere.attach_rdm(vm, naa) for naa in luns.naas[30:]), return_exceptions=True
    )
    elapsed = time.monotonic() - started
    refused = [r for r in at_once if isinstance(r, BaseException)]
    assert len(refused) == 1, refused
    assert isinstance(refused[0], LimitExceeded), refused
    assert str(refused[0]).startswith(f"VM {vm.name} has no free SCSI unit"), refused
    attachments += [a for a in at_once if isinstance(a, Attachment)]
    assert len({(a.controller_key, a.unit_number) for a in attachments}) == 60
    vm_obj = find(si, vim.VirtualMachine, vm.name)
    controllers = [
        d for d in vm_obj.config.hardware.device if isinstance(d, vim.vm.device.VirtualSCSIController)
    ]
    assert sorted(c.busNumber for c in controllers) == [0, 1, 2, 3]
    assert all(isinstance(c, vim.vm.device.ParaVirtualSCSIController) for c in controllers)
    assert len(rdm_disks(vm_obj)) == 60
    print(f"30 attaches one by one, then 31 at once: {elapsed:.2f}s")

    attached = {a.naa for a in attachments}
    left_out = next(naa for naa in luns.naas if naa not in attached)
    with pytest.raises(LimitExceeded, match=rf"VM {vm.name} has no free SCSI unit"):
        await vsphere.attach_rdm(vm, left_out)
    assert len(rdm_disks(find(si, vim.VirtualMachine, vm.name))) == 60

    await asyncio.gather(*(vsphere.detach_rdm(vm, naa) for naa in luns.naas))
    assert rdm_disks(find(si, vim.VirtualMachine, vm.name)) == []
