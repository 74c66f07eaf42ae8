"""The lab's KVM guest as an `initiator` node, before any lunbridge code: iscsid runs in it
with its own IQN (open-iscsi unpacked by the peer scripts), it reaches tgtd through the NIC's
guestfwd, logs in to a target that masks a LUN to its IQN, sees that LUN after a targeted scan
of its id, and tgtd shows the session from that IQN only while it is logged in; a target
masked to another IQN refuses the login (tgtd answers a non-retryable login failure)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.libvirt.guestscsi import disks as guest_disks
from tests.integration.libvirt.guestscsi import nexus_initiators
from tests.lab import iscsi
from tests.lab import libvirt as libvirt_lab
from tests.lab import tgt as tgt_lab
from tests.lab.tgt import GUEST_TGT_PORTAL

PORTAL = "{}:{}".format(*GUEST_TGT_PORTAL)


@pytest.fixture
def iscsid(kvm_guest: libvirt_lab.LibvirtGuest) -> Iterator[None]:
    iscsi.start_iscsid(kvm_guest)
    yield
    iscsi.stop_iscsid(kvm_guest)


def adm(guest: libvirt_lab.LibvirtGuest, command: str) -> tuple[int, str]:
    done = guest.run(command, timeout=90, env=iscsi.guest_env())
    return done.returncode, done.stdout + done.stderr


@pytest.mark.usefixtures("iscsid")
def test_the_guest_logs_in_with_its_own_iqn_and_sees_exactly_its_lun(
    kvm_guest: libvirt_lab.LibvirtGuest, tgt: tgt_lab.Tgt, make_lun: Callable[..., tgt_lab.LabLun]
) -> None:
    mine = make_lun([iscsi.GUEST_IQN], size=16 << 20)
    naa = f"naa.{mine.naa}"
    theirs = make_lun(["iqn.2024-01.io.lunbridge.lab:another-node"], size=16 << 20)
    record = f"-m node -T {mine.target} -p {PORTAL}"
    rc, out = adm(kvm_guest, f"iscsiadm {record} -o new && iscsiadm {record} --login")
    assert rc == 0, out
    assert nexus_initiators(tgt, mine.target) == [iscsi.GUEST_IQN]
    # node.session.scan = manual: no LUN appears until its id is scanned on the session's host
    rc, out = adm(kvm_guest, "iscsiadm -m session -P 3 | sed -n 's/.*Host Number: \\([0-9]*\\).*/\\1/p'")
    host = out.split()[0]
    assert naa not in guest_disks(kvm_guest)
    adm(kvm_guest, f"echo '- - {mine.lun}' > /sys/class/scsi_host/host{host}/scan && sleep 1")
    assert naa in guest_disks(kvm_guest), guest_disks(kvm_guest)

    other = f"-m node -T {theirs.target} -p {PORTAL}"
    rc, out = adm(kvm_guest, f"iscsiadm {other} -o new && iscsiadm {other} --login")
    assert rc != 0
    assert "non-retryable iSCSI login failure" in out, out  # tgtd refuses an IQN outside the ACL

    rc, out = adm(kvm_guest, f"iscsiadm {record} --logout")
    assert rc == 0, out
    assert nexus_initiators(tgt, mine.target) == []
    assert naa not in guest_disks(kvm_guest)
