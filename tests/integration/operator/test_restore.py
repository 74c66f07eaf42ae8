"""DiskRestore against the real operator, tgtd and the KVM guest: write A, snapshot, write B;
a restore of the published disk is refused (nothing changes); unpublished, restored and
published again, the disk holds A under the same NAA (the same LUN, the same PV)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from lunbridge.api import API_VERSION
from tests.integration.libvirt.guestscsi import delete_disk
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.integration.operator.guestdisk import mount_in_guest, read_digest, stage_in_guest, unstage
from tests.integration.operator.snapshotting import TEST_LABEL, Snapshots, ready_condition, write_again
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")


def restore(lab: LabState, disk: str, snapshot: str, label: str) -> str:
    name = f"restore-{uuid.uuid4().hex[:8]}"
    observe.apply(lab, {"apiVersion": API_VERSION, "kind": "DiskRestore",
                        "metadata": {"name": name, "labels": {TEST_LABEL: label}},
                        "spec": {"virtualDisk": disk, "snapshot": snapshot}})  # fmt: skip
    return name


def wait_done(lab: LabState, name: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = observe.get(lab, "drestore", name)
        phase = (found or {}).get("status", {}).get("phase")
        return found if phase in ("Completed", "Failed") else None

    result: dict[str, Any] = observe.eventually(done, timeout, f"DiskRestore {name} done")
    return result


def test_restore_round_trip_keeps_the_naa_and_is_refused_while_published(
    lab: LabState,
    kvm_guest: libvirt_lab.LibvirtGuest,
    disks: Disks,
    snapshots: Snapshots,
) -> None:
    name = disks.make(node=lab.guest_node, size="32Mi")
    disk = observe.wait_ready(lab, name, timeout=120)
    naa = disk["status"]["lun"]["naa"]
    staged = stage_in_guest(kvm_guest, disk)  # A
    snap = snapshots.wait_ready(snapshots.make({"virtualDisk": name}))
    data_b = write_again(kvm_guest, staged)
    assert data_b != staged.digest

    refused = wait_done(lab, restore(lab, name, snap["metadata"]["name"], disks.test_id))
    assert refused["status"]["phase"] == "Failed"
    assert ready_condition(refused)["reason"] == "DiskPublished"
    assert read_digest(kvm_guest, staged.mount) == data_b, "a refused restore changed the disk"

    unstage(kvm_guest, staged)  # as the node plugin's unstage: unmount, device gone
    kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", json.dumps({"spec": {"nodeName": None}}))
    observe.eventually(lambda: (d := observe.get(lab, "vdisk", name)) and observe.is_ready(d)
                       and not d["status"].get("attachment"), 120, "the disk detached")  # fmt: skip
    started = time.monotonic()
    done = wait_done(lab, restore(lab, name, snap["metadata"]["name"], disks.test_id))
    took = time.monotonic() - started
    assert done["status"]["phase"] == "Completed", done["status"]
    assert done["status"]["naa"] == naa
    observe.wait_events(lab, done, {"Restored"})

    kubectl(
        lab, "patch", "vdisk", name, "--type=merge", "-p", json.dumps({"spec": {"nodeName": lab.guest_node}})
    )
    again = observe.wait_ready(lab, name, timeout=120)
    assert again["status"]["lun"]["naa"] == naa, "the restore changed the disk's identity"
    back = mount_in_guest(kvm_guest, again)
    try:
        assert back.digest == staged.digest, "the restored disk does not hold what the snapshot held"
    finally:
        kvm_guest.run(f"umount {back.mount}; rmdir {back.mount}", timeout=60)
        delete_disk(kvm_guest, back.sd)
    print(f"restore of a 32 MiB LUN: {took:.2f}s from apply to Completed")
