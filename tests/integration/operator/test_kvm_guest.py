"""The whole chain into a real guest: `kubectl apply` of a VirtualDisk for the lab's KVM guest
node makes the operator create the LUN on tgtd, mask it to the KVM host's IQN and attach it
to the running guest through libvirt; inside the guest a targeted rescan of the address in
status shows a disk with the LUN's NAA. tgtd sees a session from the host IQN only while the
disk is attached. An igroup that does not hold the host's IQN never lets it attach."""

from __future__ import annotations

import json
import time

import pytest

from lunbridge.models import AttachmentStatus, VirtualDiskStatus
from lunbridge.san import ScsiAddress
from tests.integration.libvirt.guestscsi import delete_disk, disks, nexus_initiators, rescan, scsi_hosts
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.lab import libvirt as libvirt_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl
from tests.lab.tgt import Tgt

pytestmark = pytest.mark.usefixtures("operator")
TARGET_PREFIX = "iqn.2024-01.io.lunbridge:"


def _guest_disk(guest: libvirt_lab.LibvirtGuest, attachment: AttachmentStatus, naa: str) -> str | None:
    assert attachment.pci_slot is not None
    assert attachment.guest_address is not None
    host = scsi_hosts(guest).get(attachment.pci_slot)
    if host is None:
        return None
    rescan(guest, host, ScsiAddress.parse(attachment.guest_address))
    found = disks(guest).get(naa)
    return found[0] if found else None


def test_disk_for_the_guest_node_appears_in_the_guest_by_its_naa(
    lab: LabState, tgt: Tgt, kvm_guest: libvirt_lab.LibvirtGuest, disks: Disks
) -> None:
    before = set(nexus_initiators(tgt, TARGET_PREFIX))
    name = disks.make(node=lab.guest_node, size="32Mi")
    disk = observe.wait_ready(lab, name, timeout=90)
    guest = kvm_guest
    naa = disk["status"]["lun"]["naa"]
    attachment = VirtualDiskStatus.from_dict(disk["status"]).attachment
    assert attachment is not None
    assert str(attachment.provider_id).startswith("libvirt://")

    assert naa not in disks_in_guest(guest)  # nothing appears before the targeted rescan
    deadline = time.monotonic() + 30
    while (sd := _guest_disk(guest, attachment, naa)) is None:
        assert time.monotonic() < deadline, f"no disk {naa} at {attachment} in the guest"
        time.sleep(0.5)
    assert set(nexus_initiators(tgt, TARGET_PREFIX)) - before == {lab.host_iqn}

    delete_disk(guest, sd)  # what the node plugin's unstage does before the detach
    disks.delete_all()
    assert naa not in disks_in_guest(guest)
    assert lab.host_iqn not in set(nexus_initiators(tgt, TARGET_PREFIX)) - before
    assert not observe.lus_with(tgt, naa)


def disks_in_guest(guest: libvirt_lab.LibvirtGuest) -> set[str]:
    return set(disks(guest))


def _kvm_host_group(lab: LabState) -> str | None:
    """The InitiatorGroup the operator made for the KVM host (the one holding its IQN)."""
    for group in json.loads(kubectl(lab, "get", "igroup", "-o", "json").stdout)["items"]:
        initiators = (group.get("status") or {}).get("initiators") or []
        if any(i.get("address") == lab.host_iqn for i in initiators):
            name: str = group["metadata"]["name"]
            return name
    return None


def test_igroup_without_the_hosts_iqn_never_attaches(
    lab: LabState, disks: Disks, vcsim: vcsim_lab.VcsimPeer
) -> None:
    """A user-written InitiatorGroup for the KVM host that holds another host's initiators: the
    operator honours it, so the LUN is masked away from the guest's host and never attached."""
    group = observe.eventually(lambda: _kvm_host_group(lab), 60, "the KVM host's InitiatorGroup")
    original = observe.get(lab, "igroup", group)
    assert original is not None
    kubectl(lab, "delete", "igroup", group, "--timeout=60s")
    other_host = vcsim.inventory.hosts[0].name
    user_made = {"apiVersion": "lunbridge.io/v1alpha1", "kind": "InitiatorGroup", "metadata": {"name": group},
                 "spec": {"hosts": [other_host], "protocol": "iscsi", "scope": "host"}}  # fmt: skip
    observe.apply(lab, user_made)
    try:
        name = disks.make(node=lab.guest_node, size="16Mi")

        def refused() -> str | None:
            disk = observe.get(lab, "vdisk", name)
            message = observe.condition(disk, "Ready").get("message", "") if disk else ""
            return message if "is not visible to host" in message else None

        message = observe.eventually(refused, 90, "Ready=False saying the LUN is not visible")
        assert "initiator" in message
        disk = observe.get(lab, "vdisk", name)
        assert disk is not None
        # the VM it was to go to is recorded (a teardown finds it), but nothing is attached
        assert observe.condition(disk, "Attached").get("status") != "True"
        attachment = VirtualDiskStatus.from_dict(disk.get("status")).attachment
        assert attachment is None or attachment.guest_address is None
        disks.delete_all()
    finally:
        kubectl(lab, "delete", "igroup", group, "--timeout=60s")
        restored = {k: v for k, v in original.items() if k in ("apiVersion", "kind", "spec")}
        restored["metadata"] = {"name": group, "labels": original["metadata"].get("labels", {})}
        observe.apply(lab, restored)
