"""The lab's vCenter simulator is a real peer: pyvmomi logs in to it, every host has its own
FC WWPNs and iSCSI IQN, a rescan lists exactly the LUNs the real tgtd masks to the host's
IQN (by the NAA tgt derives from scsi_id), and an RDM of a LUN the VM's host cannot see, or a
relocation of a VM with an RDM to a host that cannot see its LUN, is refused like on a real
vCenter."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pyVim.connect
import pyVim.task
import pyVmomi

from tests.lab import paths, procs
from tests.lab import tgt as tgt_lab
from tests.lab import vcsim as vcsim_lab

# pyvmomi's stubs leave pyVim and the data object constructors untyped; use them dynamically.
vim: Any = pyVmomi.vim
SmartConnect: Any = pyVim.connect.SmartConnect
Disconnect: Any = pyVim.connect.Disconnect
WaitForTask: Any = pyVim.task.WaitForTask


# --- helpers ---
def connect(inventory: vcsim_lab.Inventory, user: str, password: str) -> Any:
    url = urlsplit(inventory.url)
    return SmartConnect(
        host=url.hostname, port=url.port, user=user, pwd=password, disableSslCertValidation=True
    )


@pytest.fixture(scope="module")
def si(vcsim: vcsim_lab.VcsimPeer) -> Iterator[Any]:
    service = connect(vcsim.inventory, vcsim.username, vcsim.password)
    yield service
    Disconnect(service)


def find(si: Any, kind: Any, name: str) -> Any:
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [kind], True)
    try:
        return next(obj for obj in view.view if obj.name == name)
    finally:
        view.Destroy()


def iscsi_hba(host: Any) -> Any:
    hbas = host.config.storageDevice.hostBusAdapter
    return next(h for h in hbas if isinstance(h, vim.host.InternetScsiHba))


def scsi_disks(host: Any) -> dict[str, Any]:
    luns = host.config.storageDevice.scsiLun or []
    return {lun.canonicalName: lun for lun in luns if isinstance(lun, vim.host.ScsiDisk)}


def send_target(tgt: tgt_lab.Tgt) -> Any:
    return vim.host.InternetScsiHba.SendTarget(address="127.0.0.1", port=tgt.port)


def new_scsi_id(zero_byte: bool = False) -> str:
    # tgt reads scsi_id as hex and serves it as the NAA (first nibble 6). With zero_byte the
    # value holds a 00 byte, which iscsi-inq cuts its raw output at (the simulator copes).
    return ("6001405000" + secrets.token_hex(11)) if zero_byte else ("6001405" + secrets.token_hex(13)[:25])


# --- tests ---
def test_login_with_lab_credentials_and_wrong_password_fails(vcsim: vcsim_lab.VcsimPeer) -> None:
    service = connect(vcsim.inventory, vcsim.username, vcsim.password)
    try:
        assert service.content.about.apiType == "VirtualCenter"
    finally:
        Disconnect(service)
    with pytest.raises(vim.fault.InvalidLogin):
        connect(vcsim.inventory, vcsim.username, vcsim.password + "-wrong")


def test_inventory_document_matches_the_simulator(si: Any, vcsim: vcsim_lab.VcsimPeer) -> None:
    inventory = vcsim.inventory
    assert len(inventory.hosts) == 4
    assert [h.cluster is None for h in inventory.hosts].count(True) == 1
    assert len(inventory.vms) >= 4
    assert {vm.host for vm in inventory.vms} == {h.name for h in inventory.hosts}
    for info in inventory.vms:
        vm = find(si, vim.VirtualMachine, info.name)
        assert vm.config.uuid == info.bios_uuid
        assert vm.runtime.host.name == info.host
        assert si.content.searchIndex.FindByUuid(None, info.bios_uuid, True, False) == vm
        pvscsi = [
            d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.ParaVirtualSCSIController)
        ]
        assert [(c.key, c.busNumber) for c in pvscsi] == [
            (c.key, c.bus_number) for c in info.scsi_controllers
        ]


def test_bios_uuids_wwpns_and_iqns_are_the_same_on_every_start(
    vcsim: vcsim_lab.VcsimPeer, tmp_path: Path
) -> None:
    again = vcsim_lab.start(tmp_path, paths.bin_dir(), procs.free_port(), vcsim.username, vcsim.password)
    vcsim_lab.stop(tmp_path)
    assert [(vm.name, vm.bios_uuid, vm.host) for vm in again.vms] == [
        (vm.name, vm.bios_uuid, vm.host) for vm in vcsim.inventory.vms
    ]
    assert [(h.name, h.wwpns, h.iqn) for h in again.hosts] == [
        (h.name, h.wwpns, h.iqn) for h in vcsim.inventory.hosts
    ]


def test_every_host_has_its_own_fc_wwpns_and_iscsi_iqn(si: Any, vcsim: vcsim_lab.VcsimPeer) -> None:
    wwpns: list[str] = []
    iqns: list[str] = []
    for info in vcsim.inventory.hosts:
        host = find(si, vim.HostSystem, info.name)
        hbas = host.config.storageDevice.hostBusAdapter
        fc = [h for h in hbas if isinstance(h, vim.host.FibreChannelHba)]
        assert [h.device for h in fc] == ["vmhba1", "vmhba2"]
        assert [f"{h.portWorldWideName & (2**64 - 1):016x}" for h in fc] == info.wwpns
        assert [f"{h.nodeWorldWideName & (2**64 - 1):016x}" for h in fc] == [p.wwnn for p in info.fc]
        iscsi = iscsi_hba(host)
        assert iscsi.isSoftwareBased
        assert iscsi.device == info.iscsi_device == "vmhba64"
        assert iscsi.iScsiName == info.iqn
        assert info.iqn.startswith("iqn.1998-01.com.vmware:")
        stock = [n for n in scsi_disks(host) if n.startswith("mpx.")]
        assert not stock, "the stock fixed LUN list (local mpx.* disks) is gone"
        wwpns += info.wwpns
        iqns.append(info.iqn)
    assert len(set(wwpns)) == len(wwpns) == 2 * len(vcsim.inventory.hosts)
    assert len(set(iqns)) == len(iqns)


def test_update_iscsi_name(si: Any, vcsim: vcsim_lab.VcsimPeer) -> None:
    info = vcsim.inventory.hosts[-1]
    host = find(si, vim.HostSystem, info.name)
    storage = host.configManager.storageSystem
    storage.UpdateInternetScsiName(iScsiHbaDevice="vmhba64", iScsiName="iqn.2024-01.lab.test:renamed")
    assert iscsi_hba(host).iScsiName == "iqn.2024-01.lab.test:renamed"
    storage.UpdateInternetScsiName(iScsiHbaDevice="vmhba64", iScsiName=info.iqn)
    assert iscsi_hba(host).iScsiName == info.iqn
    with pytest.raises(vim.fault.NotFound):
        storage.UpdateInternetScsiName(iScsiHbaDevice="vmhba9", iScsiName=info.iqn)


def test_rescan_lists_exactly_the_luns_masked_to_the_host(
    si: Any, vcsim: vcsim_lab.VcsimPeer, tgt: tgt_lab.Tgt, make_lun: Callable[..., tgt_lab.LabLun]
) -> None:
    a, b = vcsim.inventory.hosts[0], vcsim.inventory.hosts[1]
    host_a, host_b = find(si, vim.HostSystem, a.name), find(si, vim.HostSystem, b.name)
    id_a, id_b = new_scsi_id(zero_byte=True), new_scsi_id()
    tid_a = make_lun([a.iqn], naa=id_a).tid
    tid_b = make_lun([b.iqn], naa=id_b).tid
    try:
        for host in (host_a, host_b):
            storage = host.configManager.storageSystem
            storage.AddInternetScsiSendTargets(iScsiHbaDevice="vmhba64", targets=[send_target(tgt)])
            storage.AddInternetScsiSendTargets(iScsiHbaDevice="vmhba64", targets=[send_target(tgt)])
            configured = iscsi_hba(host).configuredSendTarget
            assert [(t.address, t.port) for t in configured] == [("127.0.0.1", tgt.port)]
            storage.RescanAllHba()

        disks_a = scsi_disks(host_a)
        assert f"naa.{id_a}" in disks_a
        assert f"naa.{id_b}" not in disks_a
        disk = disks_a[f"naa.{id_a}"]
        assert disk.devicePath == f"/vmfs/devices/disks/naa.{id_a}"
        assert disk.lunType == "disk"
        assert disk.capacity.block * disk.capacity.blockSize == 64 * 2**20
        assert disk.uuid
        assert disk.key != ""
        assert set(scsi_disks(host_b)) == {f"naa.{id_b}"}

        # unbind host A's IQN: its LUN goes at the next rescan
        tgt.adm("--op", "unbind", "--mode", "target", "--tid", str(tid_a), "--initiator-name", a.iqn)
        host_a.configManager.storageSystem.RescanHba(hbaDevice="vmhba64")
        assert f"naa.{id_a}" not in scsi_disks(host_a)
        # remove host B's LUN from the target: gone as well
        tgt.adm("--op", "delete", "--mode", "logicalunit", "--tid", str(tid_b), "--lun", "1")
        host_b.configManager.storageSystem.RescanAllHba()
        assert not scsi_disks(host_b)
    finally:
        for host in (host_a, host_b):
            host.configManager.storageSystem.RemoveInternetScsiSendTargets(
                iScsiHbaDevice="vmhba64", targets=[send_target(tgt)]
            )
    assert not iscsi_hba(host_a).configuredSendTarget


def test_unreachable_portal_does_not_break_the_simulator(si: Any, vcsim: vcsim_lab.VcsimPeer) -> None:
    host = find(si, vim.HostSystem, vcsim.inventory.hosts[0].name)
    dead = vim.host.InternetScsiHba.SendTarget(address="127.0.0.1", port=procs.free_port())
    storage = host.configManager.storageSystem
    storage.AddInternetScsiSendTargets(iScsiHbaDevice="vmhba64", targets=[dead])
    try:
        storage.RescanAllHba()
        assert si.CurrentTime() is not None
    finally:
        storage.RemoveInternetScsiSendTargets(iScsiHbaDevice="vmhba64", targets=[dead])


def rdm_spec(controller_key: int, unit: int, device_name: str) -> Any:
    backing = vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo(
        compatibilityMode="physicalMode",
        deviceName=device_name,
        diskMode="independent_persistent",
        fileName="",
    )
    disk = vim.vm.device.VirtualDisk(key=-1, controllerKey=controller_key, unitNumber=unit, backing=backing)
    change = vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
    return vim.vm.ConfigSpec(deviceChange=[change])


def test_rdm_of_a_lun_the_host_sees_attaches_and_of_one_it_does_not_fails(
    si: Any, vcsim: vcsim_lab.VcsimPeer, tgt: tgt_lab.Tgt, make_lun: Callable[..., tgt_lab.LabLun]
) -> None:
    inventory = vcsim.inventory
    here, elsewhere = inventory.hosts[2], inventory.hosts[3]
    info = next(vm for vm in inventory.vms if vm.host == here.name)
    vm = find(si, vim.VirtualMachine, info.name)
    hosts = [find(si, vim.HostSystem, h.name) for h in (here, elsewhere)]
    visible, hidden = new_scsi_id(), new_scsi_id()
    make_lun([here.iqn], naa=visible)
    make_lun([elsewhere.iqn], naa=hidden)
    try:
        for host in hosts:
            host.configManager.storageSystem.AddInternetScsiSendTargets(
                iScsiHbaDevice="vmhba64", targets=[send_target(tgt)]
            )
            host.configManager.storageSystem.RescanAllHba()
        assert f"naa.{hidden}" in scsi_disks(hosts[1])
        assert f"naa.{hidden}" not in scsi_disks(hosts[0])
        lun = scsi_disks(hosts[0])[f"naa.{visible}"]

        controller = info.scsi_controllers[0]
        assert controller.type == "ParaVirtualSCSIController"
        used = {d.unitNumber for d in vm.config.hardware.device if d.controllerKey == controller.key}
        unit = min(set(range(16)) - used - {7})
        WaitForTask(vm.ReconfigVM_Task(spec=rdm_spec(controller.key, unit, lun.devicePath)))
        rdms = [
            d
            for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)
            and isinstance(d.backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo)
        ]
        assert [(d.controllerKey, d.unitNumber) for d in rdms] == [(controller.key, unit)]
        backing = rdms[0].backing
        assert backing.deviceName == f"/vmfs/devices/disks/naa.{visible}"
        assert backing.compatibilityMode == "physicalMode"
        assert backing.lunUuid == lun.uuid

        # a LUN only another host sees, and a LUN nobody sees: refused, nothing attached
        for name in (f"naa.{hidden}", "naa.6" + "0" * 31):
            spec = rdm_spec(controller.key, unit + 1, f"/vmfs/devices/disks/{name}")
            with pytest.raises(vim.fault.InvalidDeviceBacking):
                WaitForTask(vm.ReconfigVM_Task(spec=spec))
        disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        assert len(disks) == 1 + len(rdms)

        remove = vim.vm.device.VirtualDeviceSpec(operation="remove", fileOperation="destroy", device=rdms[0])
        WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[remove])))
    finally:
        for host in hosts:
            host.configManager.storageSystem.RemoveInternetScsiSendTargets(
                iScsiHbaDevice="vmhba64", targets=[send_target(tgt)]
            )


def relocate(vm: Any, host: Any) -> None:
    WaitForTask(vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=host)))


def test_a_vm_with_an_rdm_moves_only_to_a_host_that_sees_its_lun(
    si: Any, vcsim: vcsim_lab.VcsimPeer, tgt: tgt_lab.Tgt, make_lun: Callable[..., tgt_lab.LabLun]
) -> None:
    """As vCenter: a relocation (vMotion, DRS, HA) of a VM whose RDM names a LUN the destination
    host does not see is refused, and the VM stays where it runs; one to a host that sees it
    moves the VM, and the hosts' VM lists follow."""
    inventory = vcsim.inventory
    here, there, blind = inventory.hosts[0], inventory.hosts[1], inventory.hosts[3]
    info = next(vm for vm in inventory.vms if vm.host == here.name)
    vm = find(si, vim.VirtualMachine, info.name)
    hosts = {h.name: find(si, vim.HostSystem, h.name) for h in (here, there, blind)}
    naa = new_scsi_id()
    make_lun([here.iqn, there.iqn], naa=naa)
    try:
        for host in hosts.values():
            host.configManager.storageSystem.AddInternetScsiSendTargets(
                iScsiHbaDevice="vmhba64", targets=[send_target(tgt)]
            )
            host.configManager.storageSystem.RescanAllHba()
        assert f"naa.{naa}" in scsi_disks(hosts[there.name])
        assert f"naa.{naa}" not in scsi_disks(hosts[blind.name])
        controller = info.scsi_controllers[0]
        used = {d.unitNumber for d in vm.config.hardware.device if d.controllerKey == controller.key}
        unit = min(set(range(16)) - used - {7})
        WaitForTask(vm.ReconfigVM_Task(spec=rdm_spec(controller.key, unit, f"/vmfs/devices/disks/naa.{naa}")))

        with pytest.raises(vim.fault.RDMPointsToInaccessibleDisk) as refused:
            relocate(vm, hosts[blind.name])
        said = " ".join(m.message for m in refused.value.faultMessage)
        assert blind.name in said
        assert f"naa.{naa}" in said
        assert refused.value.backing == f"/vmfs/devices/disks/naa.{naa}"
        assert vm.runtime.host == hosts[here.name]

        relocate(vm, hosts[there.name])
        assert vm.runtime.host == hosts[there.name]
        assert vm in hosts[there.name].vm
        assert vm not in hosts[here.name].vm
        relocate(vm, hosts[here.name])
        assert vm.runtime.host == hosts[here.name]
        assert vm in hosts[here.name].vm
        assert vm not in hosts[there.name].vm

        rdm = next(
            d
            for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)
            and isinstance(d.backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo)
        )
        remove = vim.vm.device.VirtualDeviceSpec(operation="remove", fileOperation="destroy", device=rdm)
        WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[remove])))
        relocate(vm, hosts[blind.name])  # with no RDM, any connected host will do
        assert vm.runtime.host == hosts[blind.name]
    finally:
        if vm.runtime.host != hosts[here.name]:
            relocate(vm, hosts[here.name])
        for host in hosts.values():
            host.configManager.storageSystem.RemoveInternetScsiSendTargets(
                iScsiHbaDevice="vmhba64", targets=[send_target(tgt)]
            )
    assert vm.runtime.host == hosts[here.name]
