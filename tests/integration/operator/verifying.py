"""DiskVerifications of one test: disks staged in the guest with a chosen file system,
verifications made and awaited, and the check that nothing of a clone is left on tgtd, in
libvirt, in the pool or in the guest. (The node plugin serving the guest's node channel is
the `verifier` fixture of conftest.py.)"""

from __future__ import annotations

import uuid
from typing import Any

from lunbridge.api import API_VERSION, VERIFICATION_LABEL
from lunbridge.hypervisor.libvirt.domain import parse_domain
from tests.integration.libvirt.guestscsi import disks as guest_disks
from tests.integration.operator import observe
from tests.integration.operator.guestdisk import Staged, find_in_guest, read_digest
from tests.integration.operator.snapshotting import TEST_LABEL
from tests.lab import libvirt as libvirt_lab
from tests.lab.lab import LabState, kubectl


def stage(guest: libvirt_lab.LibvirtGuest, disk: dict[str, Any], fs: str) -> Staged:
    """Find the disk in the guest, make `fs` on it, mount it, write one synced file."""
    sd = find_in_guest(guest, disk)
    mount = f"/mnt/lunbridge-it-{uuid.uuid4().hex[:8]}"
    mkfs = "mkfs.ext4 -q -F" if fs == "ext4" else "mkfs.xfs -q -f"
    guest.run(f"{mkfs} /dev/{sd} && mkdir -p {mount} && mount -t {fs} /dev/{sd} {mount} && "
              f"dd if=/dev/urandom of={mount}/data bs=64k count=32 2>/dev/null && sync",
              timeout=180, check=True)  # fmt: skip
    return Staged(sd, mount, read_digest(guest, mount))


def verify(lab: LabState, snapshot: str, node: str, label: str, **spec: Any) -> str:
    name = f"verify-{uuid.uuid4().hex[:8]}"
    observe.apply(lab, {"apiVersion": API_VERSION, "kind": "DiskVerification",
                        "metadata": {"name": name, "labels": {TEST_LABEL: label}},
                        "spec": {"snapshot": snapshot, "verifierNode": node, **spec}})  # fmt: skip
    return name


def wait_done(lab: LabState, name: str, timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = observe.get(lab, "dverify", name)
        return found if (found or {}).get("status", {}).get("phase") in ("Completed", "Failed") else None

    result: dict[str, Any] = observe.eventually(done, timeout, f"DiskVerification {name} done", every=1)
    return result


def delete_all(lab: LabState, label: str) -> None:
    kubectl(lab, "delete", "dverify", "-l", f"{TEST_LABEL}={label}", "--wait=false")
    observe.eventually(lambda: not observe.items(lab, "dverify", "-l", f"{TEST_LABEL}={label}"), 120,
                       "DiskVerifications gone")  # fmt: skip


def attached_luns(guest: libvirt_lab.LibvirtGuest) -> set[tuple[str, int]]:
    """(target, LUN) of every iSCSI LUN libvirt has attached to the guest."""
    devices = parse_domain(guest.domain_xml()).scsi
    return {(d.source.target, d.source.lun) for d in devices if d.source is not None}


def assert_nothing_left(
    lab: LabState, guest: libvirt_lab.LibvirtGuest, clone_naas: list[str], before: tuple[set[Any], set[str]]
) -> None:
    """No clone VirtualDisk, no LU on tgtd with a clone's NAA, no LUN libvirt attached or file
    in the pool since `before` (`attached_luns`, `observe.pool_files`), no guest disk with a
    clone's NAA."""
    attached_before, files_before = before
    clones = observe.items(lab, "vdisk", "-l", VERIFICATION_LABEL)
    assert clones == [], f"clone VirtualDisks left: {[c['metadata']['name'] for c in clones]}"
    for naa in clone_naas:
        assert observe.lus_with(lab.tgt, naa) == [], f"tgtd still serves the clone {naa}"
    assert attached_luns(guest) <= attached_before, "libvirt still has a clone attached to the guest"
    in_guest = guest_disks(guest)
    assert not set(clone_naas) & set(in_guest), f"the guest still has a clone: {in_guest}"
    assert observe.pool_files(lab) <= files_before, "a clone's LUN file is left in the pool"


def before(lab: LabState, guest: libvirt_lab.LibvirtGuest) -> tuple[set[Any], set[str]]:
    """What `assert_nothing_left` compares with: the LUNs attached, the pool's files."""
    return attached_luns(guest), observe.pool_files(lab)
