"""DiskVerifications whose operator is SIGKILLed after each step (the clone recorded, the node
task written, the node's result recorded): each restart resumes them, every one ends Completed
and Passed, and nothing of any clone is left on tgtd, in libvirt, in the pool or in the guest.
The test runs its own operator; the node plugin keeps serving the guest's node channel."""

from __future__ import annotations

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.integration.operator.crashing import Operator
from tests.integration.operator.guestdisk import unstage
from tests.integration.operator.snapshotting import Snapshots
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

STEPS = ("cloning", "checking", "checked")


def test_verifications_killed_after_each_step_converge_with_nothing_orphaned(
    lab: LabState,
    own_operator: Operator,
    kvm_guest: libvirt_lab.LibvirtGuest,
    disks: Disks,
    snapshots: Snapshots,
    verifier: str,
) -> None:  # own_operator first: it stops last, after the disks and snapshots are gone
    own_operator.start()
    source = observe.wait_ready(lab, disks.make(node=lab.guest_node, size="64Mi"), timeout=180)
    staged = stage(kvm_guest, source, "ext4")
    try:
        snap = snapshots.wait_ready(snapshots.make({"virtualDisk": source["metadata"]["name"]}))
    finally:
        unstage(kvm_guest, staged)
    baseline = before(lab, kvm_guest)
    own_operator.stop()

    names = []
    for step in STEPS:  # the earlier verifications resume each time, and meet the next kill too
        own_operator.start(crash_after=step, kind="DiskVerification")
        names.append(verify(lab, snap["metadata"]["name"], verifier, disks.test_id))
        own_operator.wait_dead(timeout=240)

    own_operator.start()
    for name in names:
        found = wait_done(lab, name)["status"]
        assert (found["phase"], found["result"]) == ("Completed", "Passed"), found
    assert_nothing_left(lab, kvm_guest, [wait_done(lab, n)["status"]["cloneNaa"] for n in names], baseline)
    delete_all(lab, disks.test_id)
