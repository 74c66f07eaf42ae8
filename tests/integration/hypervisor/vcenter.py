"""Helpers for the vSphere integration tests: read what vCenter really holds with plain
pyvmomi (independently of lunbridge), and describe the extra peers the fixtures start."""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyVim.task
import pyVmomi

from lunbridge.hypervisor.vsphere import VSphereConfig
from tests.lab import vcsim as vcsim_lab

# pyvmomi's stubs leave the data object constructors untyped; use them dynamically.
vim: Any = pyVmomi.vim
vmodl: Any = pyVmomi.vmodl
WaitForTask: Any = pyVim.task.WaitForTask


def server_pem(url: str) -> str:
    """The certificate vCenter presents (trust on first use, as an admin would copy it)."""
    parts = urlsplit(url)
    return ssl.get_server_certificate((str(parts.hostname), int(parts.port or 443)))


def new_naa() -> str:
    return "naa.6001405" + secrets.token_hex(13)[:25]


def find(si: Any, kind: Any, name: str) -> Any:
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [kind], True)
    try:
        return next(obj for obj in view.view if obj.name == name)
    finally:
        view.Destroy()


def rdm_disks(vm: Any) -> list[Any]:
    return [
        d
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualDisk)
        and isinstance(d.backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo)
    ]


def reconfigures(si: Any, vm: Any) -> int:
    """How many reconfigure tasks vCenter ran on `vm` (its VmReconfiguredEvents)."""
    spec = vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"),
        eventTypeId=["VmReconfiguredEvent"],
    )
    return len(si.content.eventManager.QueryEvents(spec) or [])


def send_targets(si: Any, host_name: str) -> list[tuple[str, int]]:
    host = find(si, vim.HostSystem, host_name)
    hba = next(h for h in host.config.storageDevice.hostBusAdapter if isinstance(h, vim.host.InternetScsiHba))
    return [(t.address, t.port) for t in hba.configuredSendTarget or []]


def forget_portal(si: Any, inventory: vcsim_lab.Inventory, port: int) -> None:
    """Take the lab's tgtd portal out of every host's send targets and rescan, so the lab's
    other tests find the hosts as the lab made them."""
    target = vim.host.InternetScsiHba.SendTarget(address="127.0.0.1", port=port)
    for info in inventory.hosts:
        storage = find(si, vim.HostSystem, info.name).configManager.storageSystem
        storage.RemoveInternetScsiSendTargets(iScsiHbaDevice=info.iscsi_device, targets=[target])
        storage.RescanAllHba()


@dataclass(frozen=True)
class LunSet:
    """One tgtd target holding LUNs 1..n, each with its own NAA."""

    tid: int
    target: str
    naas: tuple[str, ...]
    backing: tuple[Path, ...]


@dataclass(frozen=True)
class SpareVcsim:
    """A second simulator in its own folder (same user and password as the lab's)."""

    lab_dir: Path
    inventory: vcsim_lab.Inventory
    username: str
    password: str

    def config(self) -> VSphereConfig:
        return VSphereConfig(
            url=self.inventory.url, username=self.username, password=self.password, insecure=True
        )
