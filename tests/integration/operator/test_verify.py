"""DiskVerification against the real operator, tgtd, libvirt and the node plugin in the KVM
guest, its node channel reaching the API server through the guest's guestfwd: snapshots of an
ext4 and an XFS disk cut while a writer fsyncs pass (their journals are replayed on the clone
first); a snapshot of a file system damaged before the cut fails with e2fsck's own words; a
blank (Block-mode) disk is not verifiable; a configured check runs on the mounted clone. All
five run at once, the source disks stay mounted and written, and afterwards nothing of any
clone is left on tgtd, in libvirt, in the pool or in the guest."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.integration.operator.guestdisk import Staged, read_digest
from tests.integration.operator.guestwriter import GuestWriter
from tests.integration.operator.snapshotting import Snapshots
from tests.integration.operator.test_snapshots import WRITER
from tests.integration.operator.verifying import (
    assert_nothing_left,
    before,
    delete_all,
    stage,
    verify,
    wait_done,
)
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState

pytestmark = pytest.mark.usefixtures("operator")


def test_verification_passes_good_snapshots_fails_a_damaged_one_and_leaves_nothing_behind(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, disks: Disks, snapshots: Snapshots,
    verifier: str, guest_disks: list[Staged],
) -> None:  # fmt: skip
    sizes = {"ext4": "64Mi", "xfs": "320Mi", "damaged": "64Mi", "blank": "16Mi"}
    names = {kind: disks.make(node=lab.guest_node, size=size) for kind, size in sizes.items()}
    made = {kind: observe.wait_ready(lab, name, timeout=180) for kind, name in names.items()}
    for kind in ("ext4", "xfs", "damaged"):
        guest_disks.append(stage(kvm_guest, made[kind], "xfs" if kind == "xfs" else "ext4"))
    ext4, xfs, damaged = guest_disks
    kvm_guest.run(f"umount {damaged.mount} && debugfs -w -R 'sif /data links_count 5' /dev/{damaged.sd}",
                  timeout=60, check=True)  # fmt: skip
    guest_disks.remove(damaged)
    kvm_guest.run(f"mount -t ext4 /dev/{damaged.sd} {damaged.mount}", timeout=60, check=True)
    guest_disks.append(damaged)  # damaged before the cut, guest_disks again (unstaged after the test)

    writers = [GuestWriter(kvm_guest, WRITER, what=kind) for kind in ("ext4", "xfs")]
    for writer, disk in zip(writers, (ext4, xfs), strict=True):
        writer.start(f"{disk.mount}/log")
    try:
        for writer in writers:

            def running(w: GuestWriter = writer) -> bool:
                return w.acknowledged() >= 20

            observe.eventually(running, 90, "the writers in the guest running")
        counted = [writer.acknowledged() for writer in writers]
        snaps = {kind: snapshots.make({"virtualDisk": names[kind]}) for kind in sizes}
        for snap in snaps.values():
            snapshots.wait_ready(snap)
        assert all(w.acknowledged() > n for w, n in zip(writers, counted, strict=True)), "a writer stopped"

        baseline = before(lab, kvm_guest)
        started = time.monotonic()
        runs = {kind: verify(lab, snap, verifier, disks.test_id) for kind, snap in snaps.items()}
        runs["check"] = verify(lab, snaps["ext4"], verifier, disks.test_id, check="data-readable")
        done = {kind: wait_done(lab, name) for kind, name in runs.items()}
        took = time.monotonic() - started
    finally:
        for writer in writers:
            writer.stop()

    status: dict[str, dict[str, Any]] = {kind: found["status"] for kind, found in done.items()}
    for kind, found in status.items():
        assert found["phase"] == "Completed", (kind, found)
    assert (status["ext4"]["result"], status["ext4"]["filesystem"]) == ("Passed", "ext4"), status["ext4"]
    assert status["ext4"]["checker"].startswith("e2fsck -fn /dev/sd")
    assert (status["xfs"]["result"], status["xfs"]["filesystem"]) == ("Passed", "xfs"), status["xfs"]
    assert status["xfs"]["checker"].startswith("xfs_repair -n /dev/sd")
    assert status["damaged"]["result"] == "Failed", status["damaged"]
    assert "ref count is 5, should be 1" in status["damaged"]["summary"]
    assert status["blank"]["result"] == "NotVerifiable", status["blank"]
    assert "no file system" in status["blank"]["summary"]
    assert status["check"]["result"] == "Passed", status["check"]
    assert status["check"]["checker"].startswith("data-readable: dd if=")

    verified = {kind: snapshots.get(snaps[kind]) or {} for kind in ("ext4", "damaged")}
    passed = observe.condition(verified["ext4"], "Verified")
    assert (passed["status"], passed["reason"]) == ("True", "Passed"), passed
    failed = observe.condition(verified["damaged"], "Verified")
    assert (failed["status"], failed["reason"]) == ("False", "Failed"), failed
    assert verified["damaged"]["status"]["lastVerification"]["name"] == runs["damaged"]

    assert_nothing_left(lab, kvm_guest, [s["cloneNaa"] for s in status.values()], baseline)
    assert read_digest(kvm_guest, ext4.mount) == ext4.digest, "the source disk's file changed"
    print(f"5 verifications at once: {took:.1f}s; check on the node: "
          + ", ".join(f"{kind} {found['durationSeconds']}s" for kind, found in status.items()))  # fmt: skip
    delete_all(lab, disks.test_id)
