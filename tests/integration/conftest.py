"""Session-scoped real peers for the integration tests, started by the same code as
`make lab-up` (tests/lab) in a private lab folder, and stopped at the end of the session;
and, for every package that checks vCenter, a plain pyvmomi handle (`si`) and throwaway VMs
(`scratch_vm`)."""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pyVim.connect

from lunbridge.hypervisor.libvirt import LibvirtConfig
from tests.integration.hypervisor.vcenter import WaitForTask, find, vim, vmodl
from tests.lab import guest as guest_module
from tests.lab import lab as lab_module
from tests.lab import libvirt as libvirt_lab
from tests.lab import paths
from tests.lab import tgt as tgt_module
from tests.lab import vcsim as vcsim_module
from tests.lab.guest import Guest
from tests.lab.lab import LabState

SmartConnect: Any = pyVim.connect.SmartConnect
Disconnect: Any = pyVim.connect.Disconnect


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def lab(lab_dir: Path) -> Iterator[LabState]:
    """The whole lab: kube-apiserver, etcd, kube-controller-manager, vcsim and tgtd."""
    state = lab_module.up(lab_dir)
    yield state
    lab_module.down(lab_dir)


@pytest.fixture(scope="session")
def tgt(lab: LabState) -> tgt_module.Tgt:
    """The lab's tgtd."""
    return lab.tgt


@pytest.fixture(scope="session")
def vcsim(lab: LabState) -> vcsim_module.VcsimPeer:
    """The lab's vCenter simulator: its inventory and the lab credentials."""
    lab_dir = Path(lab.lab_dir)
    return vcsim_module.VcsimPeer(
        lab_dir, vcsim_module.load_inventory(lab_dir), lab.vsphere_user, lab.vsphere_password
    )


@pytest.fixture(scope="session")
def si(lab: LabState, vcsim: vcsim_module.VcsimPeer) -> Iterator[Any]:
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
def make_lun(tgt: tgt_module.Tgt, tmp_path: Path) -> Iterator[Callable[..., tgt_module.LabLun]]:
    """Make tgtd LUNs straight with tgtadm (masked to the given IQNs); removed after the test."""
    made: list[tgt_module.LabLun] = []

    def make(initiators: list[str], size: int = 64 << 20, naa: str | None = None) -> tgt_module.LabLun:
        lun = tgt_module.make_lun(tgt, tmp_path, initiators, size, naa)
        made.append(lun)
        return lun

    yield make
    for lun in made:
        tgt_module.delete_target(tgt, lun.tid)


@pytest.fixture(scope="session")
def guest(lab_dir: Path) -> Iterator[Guest]:
    """A QEMU (TCG) guest with a virtio-scsi controller, booted from this machine's own root."""
    vm = guest_module.start(lab_dir, paths.cache_dir())
    yield vm
    vm.close()
    guest_module.stop(lab_dir)


# The lab's KVM host and its guest: defined once here, because the guest's agent channel
# serves one client at a time (a second session-wide connection would never be answered).
@pytest.fixture(scope="session")
def kvm_config(lab: LabState) -> LibvirtConfig:
    assert lab.libvirt_uri, "the lab runs without its KVM host (LAB_GUEST=0); these tests need it"
    return LibvirtConfig(uri=lab.libvirt_uri, host_iqn=lab.host_iqn)


@pytest.fixture(scope="session")
def kvm_guest(lab: LabState) -> Iterator[libvirt_lab.LibvirtGuest]:
    """The lab's libvirt guest (already booted by the lab)."""
    guest = libvirt_lab.connect_guest(Path(lab.lab_dir))
    yield guest
    guest.close()
