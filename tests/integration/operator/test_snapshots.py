"""DiskSnapshots against the real operator, tgtd on the lab's reflink pool, and the KVM guest:
a restore holds what was written before the cut and nothing after; a cut taken while the guest
writes and fsyncs holds every acknowledged write and its file system is clean after the
journal replay; a missing source, a restore waiting for its snapshot, deletes in any order and
Retain + import each end as the user expects, with nothing left on tgtd."""

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
from tests.integration.operator.guestdisk import (
    Staged,
    find_in_guest,
    mount_in_guest,
    stage_in_guest,
)
from tests.integration.operator.guestwriter import GuestWriter
from tests.integration.operator.snapshotting import Snapshots, ready_condition, storage_snapshots, write_again
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")


def reason_of(obj: dict[str, Any]) -> str | None:
    reason: str | None = ready_condition(obj).get("reason")
    return reason


def phase_of(obj: dict[str, Any]) -> str | None:
    phase: str | None = obj.get("status", {}).get("phase")
    return phase


def ready_message(lab: LabState, kind: str, name: str) -> str:
    message: str = ready_condition(observe.get(lab, kind, name) or {}).get("message", "")
    return message


# --- restore -----------------------------------------------------------------------------------
def test_a_restore_holds_what_was_written_before_the_cut_and_nothing_after(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, disks: Disks, snapshots: Snapshots,
    guest_disks: list[Staged],
) -> None:  # fmt: skip
    source = observe.wait_ready(lab, disks.make(node=lab.guest_node, size="32Mi"), timeout=120)
    staged = stage_in_guest(kvm_guest, source)
    guest_disks.append(staged)
    started = time.monotonic()
    snap = snapshots.wait_ready(snapshots.make({"virtualDisk": source["metadata"]["name"]}))
    cut_took = time.monotonic() - started
    status = snap["status"]
    assert status["restoreSize"] == source["status"]["lun"]["sizeBytes"]
    assert status["sourceNaa"] == source["status"]["lun"]["naa"]
    assert status["creationTime"]
    assert status["phase"] == "Ready"
    assert status["snapshotName"] in storage_snapshots(lab)
    observe.wait_events(lab, snap, {"SnapshotCut"})

    assert write_again(kvm_guest, staged) != staged.digest

    started = time.monotonic()
    name = disks.make(node=lab.guest_node, size="48Mi", source={"snapshot": snap["metadata"]["name"]})
    restored = observe.wait_ready(lab, name, timeout=120)
    restore_took = time.monotonic() - started
    assert restored["status"]["lun"]["naa"] != source["status"]["lun"]["naa"]
    assert restored["status"]["lun"]["sizeBytes"] == 48 << 20  # larger than its snapshot: allowed
    again = mount_in_guest(kvm_guest, restored)
    guest_disks.insert(0, again)
    assert again.digest == staged.digest, "the restored disk does not hold what was written before the cut"
    print(f"cut {cut_took:.2f}s, restore to Ready {restore_took:.2f}s (32 MiB LUN)")


WRITER = """
import os, sys
path, progress = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while not os.path.exists(progress + ".stop"):
    n += 1
    os.write(fd, (b"%010d\\n" % n) * 372 + b"." * 4)
    os.fsync(fd)
    with open(progress + ".tmp", "w") as out:
        out.write(str(n))
    os.replace(progress + ".tmp", progress)
"""

CHECKER = """
import sys
data = open(sys.argv[1], "rb").read()
records = [data[i : i + 4096] for i in range(0, len(data) - len(data) % 4096, 4096)]
print(len(records), all(r == (b"%010d\\n" % (i + 1)) * 372 + b"...." for i, r in enumerate(records)))
"""


def test_a_cut_under_fsynced_writes_holds_every_acknowledged_write_and_a_clean_file_system(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, disks: Disks, snapshots: Snapshots,
    guest_disks: list[Staged],
) -> None:  # fmt: skip
    source = observe.wait_ready(lab, disks.make(node=lab.guest_node, size="64Mi"), timeout=120)
    staged = stage_in_guest(kvm_guest, source)
    guest_disks.append(staged)
    writer = GuestWriter(kvm_guest, WRITER)
    progress, log = writer.progress, f"{staged.mount}/log"
    writer.start(log)
    try:
        observe.eventually(lambda: writer.acknowledged() >= 20, 60, "the writer in the guest running")
        before_cut = writer.acknowledged()
        snap = snapshots.wait_ready(snapshots.make({"virtualDisk": source["metadata"]["name"]}))
        after_cut = writer.acknowledged()
    finally:
        writer.stop()
    assert after_cut > before_cut, "the writer did not run while the snapshot was cut"

    name = disks.make(node=lab.guest_node, size="64Mi", source={"snapshot": snap["metadata"]["name"]})
    restored = observe.wait_ready(lab, name, timeout=120)
    sd = find_in_guest(kvm_guest, restored)
    mount = f"/mnt/lunbridge-it-{uuid.uuid4().hex[:8]}"
    # the mount replays the journal of the crash-consistent cut; then a read-only check
    records = kvm_guest.run(
        f"cat > {progress}-check.py <<'EOF'\n{CHECKER}\nEOF\n"
        f"mkdir -p {mount} && mount -t ext4 /dev/{sd} {mount} && python3 {progress}-check.py {mount}/log && "
        f"umount {mount} && rmdir {mount}",
        timeout=120,
        check=True,
    ).stdout.split()
    count, intact = int(records[0]), records[1] == "True"
    assert intact, "a record in the restored file is not the one the writer wrote there"
    assert count >= before_cut, (
        f"the snapshot lost acknowledged writes: {count} records, {before_cut} fsynced"
    )
    checked = kvm_guest.run(f"e2fsck -fn /dev/{sd}", timeout=120)
    delete_disk(kvm_guest, sd)  # before its VirtualDisk is detached
    assert checked.returncode == 0, f"e2fsck -fn of the restored disk: {checked.stdout}{checked.stderr}"
    print(f"{before_cut} records fsynced before the cut, {count} in the snapshot, {after_cut} after it")


# --- sources, waits, deletes in any order --------------------------------------------------------
def test_a_missing_source_waits_and_a_waiting_restore_holds_the_snapshots_delete(
    lab: LabState, disks: Disks, snapshots: Snapshots
) -> None:
    later = f"later-{uuid.uuid4().hex[:8]}"
    snap_name = snapshots.make({"virtualDisk": later})
    snap = observe.eventually(
        lambda: s if (s := snapshots.get(snap_name)) and s.get("status", {}).get("conditions") else None,
        30, "the snapshot saying why it waits",
    )  # fmt: skip
    assert f"spec.source.virtualDisk {later}" in ready_condition(snap)["message"]
    assert snap["status"]["readyToUse"] is False

    restore = disks.make(source={"snapshot": snap_name})
    observe.eventually(
        lambda: "not ready to use yet" in ready_message(lab, "vdisk", restore),
        30, "the restore waiting for its snapshot",
    )  # fmt: skip
    kubectl(lab, "delete", "dsnap", snap_name, "--wait=false")
    blocked = observe.eventually(
        lambda: s if reason_of(s := snapshots.get(snap_name) or {}) == "DeleteBlocked" else None,
        30, "the snapshot's delete blocked by the waiting restore",
    )  # fmt: skip
    assert restore in ready_condition(blocked)["message"]

    observe.apply(lab, disks.manifest(name=later))  # the source appears: cut, restore, then delete
    observe.wait_ready(lab, later)
    restored = observe.wait_ready(lab, restore, timeout=120)
    assert restored["status"]["lun"]["name"]
    observe.wait_gone(lab, "dsnap", snap_name, timeout=60)
    assert not {n for n in storage_snapshots(lab) if n.endswith(blocked["metadata"]["uid"])}


def test_deletes_in_any_order_keep_what_is_referenced_and_leave_nothing(
    lab: LabState, disks: Disks, snapshots: Snapshots
) -> None:
    source = observe.wait_ready(lab, disks.make())
    snap = snapshots.wait_ready(snapshots.make({"virtualDisk": source["metadata"]["name"]}))
    kubectl(lab, "delete", "vdisk", source["metadata"]["name"])  # the source before its snapshot
    observe.wait_gone(lab, "vdisk", source["metadata"]["name"])
    assert snap["status"]["snapshotName"] in storage_snapshots(lab)
    restored = observe.wait_ready(lab, disks.make(source={"snapshot": snap["metadata"]["name"]}))
    kubectl(lab, "delete", "dsnap", snap["metadata"]["name"])  # the snapshot before its restore
    observe.wait_gone(lab, "dsnap", snap["metadata"]["name"])
    assert snap["status"]["snapshotName"] not in storage_snapshots(lab)
    assert restored["status"]["lun"]["name"] in observe.backend_state(lab)["luns"]  # an independent copy
    assert f"{snap['status']['snapshotName']}.img" not in {
        p.name for p in (observe.pool_dir(lab) / "snapshots").glob("*.img")
    }


def test_a_retained_snapshot_stays_on_the_backend_and_can_be_imported(
    lab: LabState, disks: Disks, snapshots: Snapshots
) -> None:
    source = observe.wait_ready(lab, disks.make(size="16Mi"))
    kept = snapshots.wait_ready(snapshots.make({"virtualDisk": source["metadata"]["name"]}, policy="Retain"))
    backend, storage_name = kept["status"]["backend"], kept["status"]["snapshotName"]
    kubectl(lab, "delete", "dsnap", kept["metadata"]["name"])
    observe.wait_gone(lab, "dsnap", kept["metadata"]["name"])
    assert storage_name in storage_snapshots(lab), "Retain removed the storage snapshot"

    imported = snapshots.wait_ready(snapshots.make({"backend": backend, "snapshotName": storage_name}))
    assert imported["status"]["restoreSize"] == 16 << 20
    observe.wait_events(lab, imported, {"SnapshotImported"})
    observe.wait_ready(lab, disks.make(size="16Mi", source={"snapshot": imported["metadata"]["name"]}))
    kubectl(lab, "delete", "dsnap", imported["metadata"]["name"])  # Delete: the storage snapshot goes
    observe.wait_gone(lab, "dsnap", imported["metadata"]["name"])
    assert storage_name not in storage_snapshots(lab)

    missing = snapshots.make({"backend": backend, "snapshotName": "no-such-snapshot"})
    failed = observe.eventually(
        lambda: s if (s := snapshots.get(missing)) and s.get("status", {}).get("conditions") else None,
        30, "the import saying what is missing",
    )  # fmt: skip
    assert "spec.source.snapshotName no-such-snapshot" in ready_condition(failed)["message"]


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (
            {"virtualDisk": "a", "backend": "b", "snapshotName": "c"},
            "give either virtualDisk, or backend and snapshotName",
        ),
        ({"backend": "b"}, "an import needs both backend and snapshotName"),
        ({}, "an import needs both backend and snapshotName"),
    ],
)
def test_a_malformed_source_is_refused_by_the_api_server(
    lab: LabState, source: dict[str, str], says: str
) -> None:
    body = {"apiVersion": API_VERSION, "kind": "DiskSnapshot",
            "metadata": {"name": f"bad-{uuid.uuid4().hex[:8]}"}, "spec": {"source": source}}  # fmt: skip
    result = kubectl(lab, "apply", "-f", "-", input_text=json.dumps(body))
    assert result.returncode != 0
    assert says in result.stderr


def test_a_restore_smaller_than_its_snapshot_fails_naming_spec_size(
    lab: LabState, disks: Disks, snapshots: Snapshots
) -> None:
    source = observe.wait_ready(lab, disks.make(size="32Mi"))
    snap = snapshots.wait_ready(snapshots.make({"virtualDisk": source["metadata"]["name"]}))
    name = disks.make(size="16Mi", source={"snapshot": snap["metadata"]["name"]})
    failed = observe.eventually(
        lambda: d if phase_of(d := observe.get(lab, "vdisk", name) or {}) == "Failed" else None,
        30, "the too-small restore Failed",
    )  # fmt: skip
    message = observe.condition(failed, "Ready")["message"]
    assert "spec.size 16Mi is smaller than the restoreSize" in message
    assert not failed["status"].get("lun", {}).get("name"), "a LUN was made for a refused restore"
