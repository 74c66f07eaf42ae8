"""Fixtures for the vSphere layer against the lab's real vcsim and tgtd: a connected
`VSphere`, a raw pyvmomi handle to check what vCenter really holds, throwaway VMs (so
controllers added by tests never change the lab's own VMs), tgtd targets holding many LUNs,
and a second simulator whose sessions expire after 2 s of idleness.

At the end of the package every host loses the lab portal from its send targets and is
rescanned, so the lab's other tests find the hosts as the lab made them.
"""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pyVim.connect

from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from tests.integration.hypervisor.vcenter import (
    LunSet,
    SpareVcsim,
    WaitForTask,
    find,
    new_naa,
    server_pem,
    vim,
    vmodl,
)
from tests.lab import paths, procs
from tests.lab import tgt as tgt_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState

SmartConnect: Any = pyVim.connect.SmartConnect
Disconnect: Any = pyVim.connect.Disconnect


@pytest.fixture(scope="session")
def lab_ca(lab: LabState) -> str:
    return server_pem(lab.vsphere_url)


@pytest.fixture
def config(lab: LabState, lab_ca: str) -> VSphereConfig:
    """The lab's vCenter, TLS verified against its own certificate as the CA bundle."""
    return VSphereConfig(
        url=lab.vsphere_url, username=lab.vsphere_user, password=lab.vsphere_password, ca_bundle=lab_ca
    )


@pytest.fixture
async def vsphere(config: VSphereConfig) -> AsyncIterator[VSphere]:
    client = await VSphere.connect(config)
    yield client
    await client.close()


@pytest.fixture(scope="session")
def si(lab: LabState, vcsim: vcsim_lab.VcsimPeer) -> Iterator[Any]:
    """A plain pyvmomi session, to check what vCenter holds independently of lunbridge."""
    parts = urlsplit(lab.vsphere_url)
    service = SmartConnect(
        host=parts.hostname,
        port=parts.port,
        user=vcsim.username,
        pwd=vcsim.password,
        sslContext=ssl._create_unverified_context(),
    )
    yield service
    Disconnect(service)


@pytest.fixture(scope="package", autouse=True)
def _hosts_left_as_found(lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    yield
    target = vim.host.InternetScsiHba.SendTarget(address="127.0.0.1", port=lab.tgt.port)
    for info in vcsim.inventory.hosts:
        storage = find(si, vim.HostSystem, info.name).configManager.storageSystem
        storage.RemoveInternetScsiSendTargets(iScsiHbaDevice=info.iscsi_device, targets=[target])
        storage.RescanAllHba()


@pytest.fixture
def scratch_vm(si: Any) -> Iterator[Callable[..., str]]:
    """Make VMs for one test: `make(host_name, boot_disk=True, pci_slot=None)` → VM name.
    Each has one ParaVirtual SCSI controller on bus 0 (in PCI slot `pci_slot` if given, with
    a small flat boot disk at unit 0 if asked), and is destroyed after the test."""
    made: list[Any] = []

    def make(host_name: str, boot_disk: bool = True, pci_slot: int | None = None) -> str:
        host = find(si, vim.HostSystem, host_name)
        datacenter = si.content.rootFolder.childEntity[0]
        name = f"lunbridge-test-{uuid.uuid4().hex[:8]}"
        controller = vim.vm.device.ParaVirtualSCSIController(key=-10, busNumber=0, sharedBus="noSharing")
        if pci_slot is not None:
            controller.slotInfo = vim.vm.device.VirtualDevice.PciBusSlotInfo(pciSlotNumber=pci_slot)
        changes = [vim.vm.device.VirtualDeviceSpec(operation="add", device=controller)]
        if boot_disk:
            backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", fileName="")
            disk = vim.vm.device.VirtualDisk(
                key=-11, controllerKey=-10, unitNumber=0, capacityInKB=1024, backing=backing
            )
            changes.append(
                vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
            )
        spec = vim.vm.ConfigSpec(
            name=name,
            guestId="otherGuest64",
            files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
            deviceChange=changes,
        )
        task = datacenter.vmFolder.CreateVM_Task(config=spec, pool=host.parent.resourcePool, host=host)
        WaitForTask(task)
        made.append(task.info.result)
        return name

    yield make
    for vm in made:
        with contextlib.suppress(vmodl.fault.ManagedObjectNotFound):  # the test destroyed it
            WaitForTask(vm.Destroy_Task())


@pytest.fixture
def make_luns(tgt: tgt_lab.Tgt, tmp_path: Path) -> Iterator[Callable[..., LunSet]]:
    """`make(initiators, count)`: a new target with `count` 1 MiB LUNs masked to `initiators`
    (straight with tgtadm); deleted after the test."""
    made: list[int] = []

    def make(initiators: list[str], count: int) -> LunSet:
        tid = max(tgt_lab.target_ids(tgt), default=0) + 1
        target = f"iqn.2024-01.io.lunbridge.lab:many-{uuid.uuid4().hex[:8]}"
        tgt.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", target)
        made.append(tid)
        naas, files = [], []
        for lun in range(1, count + 1):
            naa = new_naa()
            backing = tmp_path / f"{tid}-{lun}.img"
            with backing.open("wb") as handle:
                handle.truncate(1 << 20)
            tgt.adm(
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                str(tid),
                "--lun",
                str(lun),
                "-b",
                str(backing),
            )
            tgt.adm(
                "--op", "update", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
                "--params", f"scsi_sn=LBMANY{tid:03d}{lun:03d},scsi_id={naa.removeprefix('naa.')}",
            )  # fmt: skip
            naas.append(naa)
            files.append(backing)
        for initiator in initiators:
            tgt.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-name", initiator)
        return LunSet(tid, target, tuple(naas), tuple(files))

    yield make
    for tid in made:
        tgt_lab.delete_target(tgt, tid)


def start_spare(lab_dir: Path, vcsim: vcsim_lab.VcsimPeer, *extra: str) -> SpareVcsim:
    lab_dir.mkdir(parents=True, exist_ok=True)
    inventory = vcsim_lab.start(
        lab_dir, paths.bin_dir(), procs.free_port(), vcsim.username, vcsim.password, extra_args=list(extra)
    )
    return SpareVcsim(lab_dir, inventory, vcsim.username, vcsim.password)


@pytest.fixture(scope="module")
def idle_vcsim(tmp_path_factory: pytest.TempPathFactory, vcsim: vcsim_lab.VcsimPeer) -> Iterator[SpareVcsim]:
    """A second simulator that drops sessions idle for 2 s (checked every 2 s, so a session
    is gone at most 4 s after its last call)."""
    spare = start_spare(tmp_path_factory.mktemp("idle-vcsim"), vcsim, "-session-idle-timeout", "2s")
    yield spare
    vcsim_lab.stop(spare.lab_dir)


@pytest.fixture
def doomed_vcsim(tmp_path: Path, vcsim: vcsim_lab.VcsimPeer) -> Iterator[SpareVcsim]:
    """A second simulator for a test to stop mid-session."""
    spare = start_spare(tmp_path / "doomed-vcsim", vcsim)
    yield spare
    vcsim_lab.stop(spare.lab_dir)
