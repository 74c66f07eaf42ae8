"""A DiskGroupSnapshot against the real operator, tgtd (fenced by the backend during the cut)
and the KVM guest: one process in the guest writes a counter with O_DIRECT to disk 1, then the
same counter to disk 2, in a loop; the group is cut while it runs (the counters must advance by
at least 100 during the cut window, or the test proves nothing and fails; the backend pauses
between the member clones, so only its I/O fence keeps them at one instant). Disks restored from
the two member snapshots hold counter2 <= counter1 <= counter2 + 1, and counter1 is at least
what the writer had acknowledged before the cut. Deleting the group deletes its members and
their storage snapshots."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.api import API_VERSION
from tests.integration.libvirt.guestscsi import delete_disk
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.integration.operator.crashing import Operator
from tests.integration.operator.guestdisk import find_in_guest
from tests.integration.operator.guestwriter import GuestWriter
from tests.integration.operator.snapshotting import TEST_LABEL, storage_snapshots
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl

# the backend pauses this long between the member clones (inside its fence): a cut without
# the fence would hold disk 1 and disk 2 hundreds of writes apart
PAUSE = "0.2"

WRITER = """
import mmap, os, struct, sys
one, two, progress = sys.argv[1:4]
fds = [os.open(path, os.O_WRONLY | os.O_DIRECT) for path in (one, two)]
block = mmap.mmap(-1, 4096)
n = 0
while not os.path.exists(progress + ".stop"):
    n += 1
    block.seek(0)
    block.write(struct.pack("<Q", n))
    for fd in fds:
        os.pwrite(fd, block, 0)
    if n % 10 == 0:
        with open(progress + ".tmp", "w") as out:
            out.write(str(n))
        os.replace(progress + ".tmp", progress)
"""


@pytest.fixture
def groups(lab: LabState, disks: Disks) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        kubectl(lab, "delete", "dgsnap", name, "--wait=false")
    observe.eventually(
        lambda: not any(observe.get(lab, "dgsnap", n) for n in made), 120, "the groups deleted"
    )


def ready_group(lab: LabState, name: str) -> dict[str, Any] | None:
    group = observe.get(lab, "dgsnap", name)
    return group if group and group.get("status", {}).get("readyToUse") else None


def counter(path: Path) -> int:
    with path.open("rb") as handle:
        return int(struct.unpack("<Q", handle.read(8))[0])


def test_a_group_cut_under_ordered_writes_holds_one_instant_across_its_disks(
    lab: LabState,
    own_operator: Operator,
    kvm_guest: libvirt_lab.LibvirtGuest,
    disks: Disks,
    groups: list[str],
) -> None:
    own_operator.start(LUNBRIDGE_GROUP_CUT_PAUSE=PAUSE)
    made = [
        observe.wait_ready(lab, disks.make(node=lab.guest_node, size="16Mi"), timeout=120) for _ in range(2)
    ]
    devices = [find_in_guest(kvm_guest, disk) for disk in made]
    writer = GuestWriter(kvm_guest, WRITER, "group-writer")
    writer.start(f"/dev/{devices[0]}", f"/dev/{devices[1]}")
    name = f"group-{uuid.uuid4().hex[:8]}"
    try:
        observe.eventually(lambda: writer.acknowledged() >= 50, 60, "the writer in the guest running")
        before = writer.acknowledged()
        observe.apply(lab, {"apiVersion": API_VERSION, "kind": "DiskGroupSnapshot",
                            "metadata": {"name": name, "labels": {TEST_LABEL: disks.test_id}},
                            "spec": {"virtualDisks": [d["metadata"]["name"] for d in made]}})  # fmt: skip
        groups.append(name)
        group: dict[str, Any] = observe.eventually(
            lambda: ready_group(lab, name), 60, "the group snapshot ready"
        )
        after = writer.acknowledged()
    finally:
        writer.stop(then="sleep 0.5")
        for sd in devices:  # before their VirtualDisks are detached
            delete_disk(kvm_guest, sd)
    assert after - before >= 100, (
        f"only {after - before} writes during the cut window: the test proves nothing"
    )

    members = {m["virtualDisk"]: m for m in group["status"]["members"]}
    counters = []
    for disk in made:
        member = members[disk["metadata"]["name"]]
        restored = observe.wait_ready(
            lab, disks.make(size="16Mi", source={"snapshot": member["diskSnapshot"]})
        )
        counters.append(counter(observe.pool_dir(lab) / "luns" / f"{restored['status']['lun']['name']}.img"))
    first, second = counters
    assert second <= first <= second + 1, f"the group mixes instants: counter1 {first}, counter2 {second}"
    assert first >= before, f"the group lost acknowledged writes: {first} < {before}"
    print(f"group cut with {after - before} writes in its window: counters {first}/{second}, {before} before")

    kubectl(lab, "delete", "dgsnap", name)
    observe.eventually(lambda: observe.get(lab, "dgsnap", name) is None, 60, "the group deleted")
    # the members go behind their own finalizers, after the group: eventually nothing is left
    observe.eventually(
        lambda: not any(m["snapshotName"] in json.dumps(storage_snapshots(lab)) for m in members.values()),
        60, "the member snapshots gone from tgtd",
    )  # fmt: skip
    observe.eventually(
        lambda: all(observe.get(lab, "dsnap", m["diskSnapshot"]) is None for m in members.values()),
        60, "the member DiskSnapshots gone",
    )  # fmt: skip
