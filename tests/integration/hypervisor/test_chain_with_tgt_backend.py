"""Both layers together, as the operator will drive them: the hypervisor names the VM's host
initiators, the tgt backend masks a LUN to exactly those, and the hypervisor attaches it as
an RDM with the NAA the backend gave it. A LUN masked to the wrong igroup never attaches."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.errors import Conflict
from lunbridge.hypervisor.base import Scope
from lunbridge.hypervisor.vsphere import VSphere
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.integration.hypervisor.vcenter import find, rdm_disks, vim
from tests.lab import tgt as tgt_lab
from tests.lab import vcsim as vcsim_lab

MiB = 1 << 20


@pytest.fixture
async def backend(tgt: tgt_lab.Tgt, tmp_path: Path) -> AsyncIterator[TgtBackend]:
    prefix = f"iqn.2024-01.io.lunbridge.chain{uuid.uuid4().hex[:8]}:"
    made = TgtBackend(
        TgtConfig(
            control=tgt.control,
            portal=tgt.portal,
            pools={"default": tmp_path / "pool"},
            state_file=tmp_path / "tgt.json",
            iqn_prefix=prefix,
        )
    )
    yield made
    for mapping in await made.list_mappings():
        await made.unmap_lun(mapping.lun, mapping.igroup)
    for igroup in await made.list_igroups():
        await made.delete_igroup(igroup.name)
    for lun in await made.list_luns():
        await made.delete_lun(lun.name)
    await made.close()


async def test_lun_masked_to_the_vms_host_initiators_attaches_with_the_backends_naa(
    vsphere: VSphere, backend: TgtBackend, vcsim: vcsim_lab.VcsimPeer, si: Any
) -> None:
    info = next(vm for vm in vcsim.inventory.vms if vm.host == vcsim.inventory.hosts[1].name)
    vm = await vsphere.find_vm(f"vsphere://{info.bios_uuid.upper()}")
    initiators = await vsphere.vm_initiators(vm, Scope.HOST)
    iqns = [i.address for i in initiators if i.transport is Transport.ISCSI]
    assert iqns == [vcsim.inventory.host(info.host).iqn]

    igroup = await backend.create_igroup(f"host-{uuid.uuid4().hex[:6]}", Transport.ISCSI, iqns)
    lun = await backend.create_lun(f"vd-{uuid.uuid4().hex[:8]}", 32 * MiB)
    mapping = await backend.map_lun(lun.name, igroup.name)
    portal = (await backend.portals())[0].address
    await vsphere.ensure_iscsi_portal([vm.host], portal)

    attachment = await vsphere.attach_rdm(vm, lun.naa)
    try:
        assert attachment.naa == lun.naa
        disk = next(
            d for d in rdm_disks(find(si, vim.VirtualMachine, info.name)) if d.key == attachment.disk_key
        )
        assert (disk.controllerKey, disk.unitNumber) == (attachment.controller_key, attachment.unit_number)
        assert disk.backing.deviceName == f"/vmfs/devices/disks/{lun.naa}"
        assert mapping.lun_id >= 1
    finally:
        await vsphere.detach_rdm(vm, lun.naa)
    assert all(d.key != attachment.disk_key for d in rdm_disks(find(si, vim.VirtualMachine, info.name)))


async def test_lun_in_another_hosts_igroup_is_refused_with_the_reason(
    vsphere: VSphere, backend: TgtBackend, vcsim: vcsim_lab.VcsimPeer, si: Any
) -> None:
    here, elsewhere = vcsim.inventory.hosts[2], vcsim.inventory.hosts[3]
    info = next(vm for vm in vcsim.inventory.vms if vm.host == here.name)
    vm = await vsphere.find_vm(info.name)
    wrong = await backend.create_igroup(f"host-{uuid.uuid4().hex[:6]}", Transport.ISCSI, [elsewhere.iqn])
    lun = await backend.create_lun(f"vd-{uuid.uuid4().hex[:8]}", 32 * MiB)
    await backend.map_lun(lun.name, wrong.name)
    await vsphere.ensure_iscsi_portal([vm.host], (await backend.portals())[0].address)
    before = len(rdm_disks(find(si, vim.VirtualMachine, info.name)))

    with pytest.raises(Conflict, match=f"LUN {lun.naa} is not visible to host {here.name}"):
        await vsphere.attach_rdm(vm, lun.naa)
    assert len(rdm_disks(find(si, vim.VirtualMachine, info.name))) == before
