"""The lab's guest VM is a real peer: a real kernel whose virtio-scsi bus only shows a SAN LUN,
hot-plugged by QEMU's own iSCSI initiator from a real tgtd, after a targeted rescan; the LUN
carries the NAA the storage server gave it, and the target's ACL is enforced against the IQN
the hypervisor logs in with."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.lab import guest as guest_module
from tests.lab.guest import Guest
from tests.lab.qmp import QmpError
from tests.lab.tgt import LabLun, Tgt

HOST_IQN = "iqn.1998-01.com.vmware:lab-guest-host"
OTHER_IQN = "iqn.1998-01.com.vmware:lab-other-host"


@pytest.fixture
def lun(make_lun: Callable[..., LabLun]) -> LabLun:
    """A 64 MiB LUN masked to HOST_IQN only."""
    return make_lun([HOST_IQN])


def disks_by_wwid(guest: Guest) -> dict[str, str]:
    """wwid -> sdX for every SCSI disk the guest kernel knows."""
    out = guest.run(
        "for d in /sys/block/sd*; do [ -e $d/device/wwid ] && echo ${d##*/} $(cat $d/device/wwid); done;"
        " true",
        timeout=30,
        check=True,
    ).stdout
    return {wwid: name for name, wwid in (line.split(maxsplit=1) for line in out.splitlines())}


def virtio_scsi_host(guest: Guest) -> str:
    """The scsi_host (hostN) of the guest's virtio-scsi controller, found through sysfs."""
    out = guest.run(
        "for h in /sys/class/scsi_host/host*; do echo ${h##*/} $(cat $h/proc_name); done",
        timeout=30,
        check=True,
    ).stdout
    hosts = [line.split()[0] for line in out.splitlines() if line.split()[1:] == ["virtio_scsi"]]
    assert len(hosts) == 1, out
    return hosts[0]


def test_guest_runs_the_hosts_python(guest: Guest) -> None:
    result = guest.run(["python3", "-c", "import sys; print(sys.version)"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3.")
    assert guest.run("cat /proc/sys/kernel/hostname", timeout=30).stdout.strip() == "lunbridge-guest"


def test_hot_plugged_lun_appears_only_after_a_targeted_rescan(guest: Guest, tgt: Tgt, lun: LabLun) -> None:
    target, naa = lun.target, lun.naa
    host = virtio_scsi_host(guest)
    device = guest.attach_iscsi_lun("lun-smoke", tgt.portal, target, 1, HOST_IQN, scsi_id=1, scsi_lun=1)
    try:
        assert f"naa.{naa}" not in disks_by_wwid(guest)  # hotplug=off: nothing without a rescan

        started = time.monotonic()
        guest.run(f"echo '0 1 1' > /sys/class/scsi_host/{host}/scan", timeout=60, check=True)
        found = disks_by_wwid(guest)
        print(f"rescan + lookup took {time.monotonic() - started:.2f}s")
        assert f"naa.{naa}" in found, found
        sd = found[f"naa.{naa}"]
        address = guest.run(f"readlink /sys/block/{sd}/device", timeout=30, check=True).stdout
        assert address.strip().endswith(f"{host[4:]}:0:1:1")
        size = guest.run(f"cat /sys/block/{sd}/size", timeout=30, check=True).stdout
        assert int(size) * 512 == 64 << 20
        assert lun.serial in guest.run(f"cat /sys/block/{sd}/device/vpd_pg80", timeout=30).stdout

        # the guest kernel can format and mount it (ext4 and its crc32c softdep are loaded)
        mnt = f"{guest_module.STATE_DIR}/smoke"
        guest.run(
            f"mkfs.ext4 -q /dev/{sd} && mkdir -p {mnt} && mount /dev/{sd} {mnt} && "
            f"echo hello > {mnt}/f && umount {mnt}",
            timeout=120,
            check=True,
        )

        guest.run(f"echo 1 > /sys/block/{sd}/device/delete", timeout=30, check=True)
        assert f"naa.{naa}" not in disks_by_wwid(guest)
    finally:
        guest.detach(device, "lun-smoke")
    assert "lun-smoke" not in {n["node-name"] for n in guest.qmp("query-named-block-nodes")}


def test_unbound_initiator_cannot_log_in(guest: Guest, tgt: Tgt, lun: LabLun) -> None:
    target = lun.target
    with pytest.raises(QmpError, match="Target not found"):
        guest.attach_iscsi_lun("lun-denied", tgt.portal, target, 1, OTHER_IQN, scsi_id=2, scsi_lun=1)
    assert "lun-denied" not in {n["node-name"] for n in guest.qmp("query-named-block-nodes")}
