"""Show what the peers themselves hold, read straight from them (not through lunbridge):
tgtd's targets with their LUNs and ACLs, and the raw device mappings vCenter holds."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import pyVim.connect
import pyVmomi

from tests.lab.lab import LabState

vim: Any = pyVmomi.vim
SmartConnect: Any = pyVim.connect.SmartConnect
Disconnect: Any = pyVim.connect.Disconnect


def tgt_targets(state: LabState) -> str:
    """Every target with its LUNs (SCSI ID = the NAA) and ACL, condensed from `tgtadm --op show`
    (tgt's own LUN 0, the target's controller, left out)."""
    shown = state.tgt.adm("--op", "show", "--mode", "target", check=False).stdout
    keep = ("LUN:", "SCSI ID:", "SCSI SN:", "Size:", "Backing store path:", "ACL information:", "iqn.")
    lines: list[str] = []
    in_lun0 = False
    for line in shown.splitlines():
        text = line.strip()
        if line.startswith("Target "):
            lines.append(line)
        elif text.startswith("LUN:"):
            in_lun0 = text == "LUN: 0"
            if not in_lun0:
                lines.append(line)
        elif text.startswith("ACL information:"):
            in_lun0 = False
            lines.append(line)
        elif text.startswith(keep) and not in_lun0:
            lines.append(line)
    return "\n".join(lines) or "(no targets)"


def rdms(state: LabState) -> list[tuple[str, int, int, str]]:
    """(VM, controller key, unit, device path) of every raw device mapping in vCenter."""
    parts = urlsplit(state.vsphere_url)
    si = SmartConnect(
        host=parts.hostname, port=parts.port, user=state.vsphere_user, pwd=state.vsphere_password,
        sslContext=ssl._create_unverified_context(),  # the lab's own simulator
    )  # fmt: skip
    try:
        view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
        found = []
        for vm in view.view:
            for device in vm.config.hardware.device:
                backing = getattr(device, "backing", None)
                if isinstance(backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo):
                    found.append((vm.name, device.controllerKey, device.unitNumber, backing.deviceName))
        view.Destroy()
        return sorted(found)
    finally:
        Disconnect(si)


def rdm_table(state: LabState) -> str:
    rows = rdms(state)
    if not rows:
        return "(no raw device mappings)"
    return "\n".join(f"  {vm:<16} controller {key} unit {unit:<2} {path}" for vm, key, unit, path in rows)
