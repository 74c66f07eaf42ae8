"""A guest's SCSI devices read from its domain XML, and the passthrough disk lunbridge adds:
read back, it is found by its alias and by its iSCSI source, at the address it was given."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from lunbridge.errors import Conflict
from lunbridge.hypervisor.libvirt.domain import (
    DriveAddress,
    controller_xml,
    disk_name,
    disk_xml,
    disks_of,
    free_disk_name,
    parse_domain,
)
from lunbridge.hypervisor.libvirt.nodedev import FcPort, parse_fc_host
from lunbridge.hypervisor.libvirt.refs import Portal

NAA = "naa.6001405c790a01d57d54736afd6bbc37"
OTHER = "naa.60014055d231e0e0fca44f3990599196"
TARGET = "iqn.2024-01.io.lunbridge.it:igroup-host1"
HOST_IQN = "iqn.2024-01.io.lunbridge.lab:kvm-host"

# What libvirt 9 shows for a running guest: two SCSI controllers (one lsilogic), an IDE cdrom
# whose drive address names IDE controller 0, a local SCSI disk, a SCSI hostdev, and one LUN
# lunbridge attached (alias) plus one someone attached by hand (no alias).
LIVE = f"""
<domain type='qemu' id='3'>
  <name>g1</name>
  <devices>
    <disk type='file' device='cdrom'>
      <target dev='hda' bus='ide'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/boot.qcow2'/>
      <target dev='sda' bus='scsi'/>
      <alias name='scsi0-0-0-0'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <disk type='network' device='lun'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='iscsi' name='{TARGET}/1' index='2'>
        <host name='10.0.0.5' port='3260'/>
        <initiator><iqn name='{HOST_IQN}'/></initiator>
      </source>
      <target dev='sdb' bus='scsi'/>
      <alias name='ua-lunbridge-{NAA[4:]}'/>
      <address type='drive' controller='0' bus='0' target='2' unit='0'/>
    </disk>
    <disk type='network' device='lun'>
      <source protocol='iscsi' name='{TARGET}/4'>
        <host name='10.0.0.5'/>
      </source>
      <target dev='sdc' bus='scsi'/>
      <alias name='scsi0-0-3-0'/>
      <address type='drive' controller='0' bus='0' target='3' unit='0'/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'>
      <alias name='scsi0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </controller>
    <controller type='scsi' index='1' model='lsilogic'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x0a' function='0x0'/>
    </controller>
    <controller type='ide' index='0'/>
    <hostdev mode='subsystem' type='scsi'>
      <source><adapter name='scsi_host2'/><address bus='0' target='0' unit='0'/></source>
      <address type='drive' controller='0' bus='0' target='1' unit='0'/>
    </hostdev>
  </devices>
</domain>
"""


def test_controllers_with_their_pci_slots() -> None:
    devices = parse_domain(LIVE)
    assert [(c.index, c.model, c.pci_slot, c.virtio) for c in devices.controllers] == [
        (0, "virtio-scsi", 3, True),
        (1, "lsilogic", 10, False),
    ]
    first = devices.controller(0)
    assert first is not None
    assert first.alias == "scsi0"
    assert devices.controller(7) is None


def test_only_scsi_bus_devices_hold_scsi_addresses() -> None:
    devices = parse_domain(LIVE)
    assert sorted(str(d.address) for d in devices.scsi) == ["0:0:0:0", "0:0:1:0", "0:0:2:0", "0:0:3:0"]
    assert devices.disk_names == {"hda", "sda", "sdb", "sdc"}  # names are unique across buses


def test_lunbridges_disk_is_found_by_its_alias() -> None:
    (disk,) = disks_of(parse_domain(LIVE), NAA)
    assert disk.naa == NAA
    assert disk.address == DriveAddress(0, 0, 2, 0)
    assert disk.source is not None
    assert (disk.source.target, disk.source.lun, disk.source.initiator) == (TARGET, 1, HOST_IQN)
    assert disk.source.hosts == (("10.0.0.5", 3260),)
    assert "<disk" in disk.xml
    assert "sdb" in disk.xml


def test_a_disk_attached_by_hand_is_found_by_its_source_once_the_luns_address_is_known() -> None:
    devices = parse_domain(LIVE)
    assert disks_of(devices, OTHER) == []
    (disk,) = disks_of(devices, OTHER, (TARGET.upper(), 4))
    assert disk.address == DriveAddress(0, 0, 3, 0)
    assert disk.naa is None


def test_the_disk_lunbridge_builds_reads_back_as_itself() -> None:
    address = DriveAddress(1, 0, 5, 0)
    text = disk_xml(NAA, address, Portal("fd00::5", 3261), TARGET, 7, HOST_IQN, "sdq")
    element = ET.fromstring(text)
    assert (element.get("type"), element.get("device")) == ("network", "lun")
    source = element.find("source")
    assert source is not None
    assert source.get("protocol") == "iscsi"
    assert source.get("name") == f"{TARGET}/7"
    host = element.find("source/host")
    assert host is not None
    assert (host.get("name"), host.get("port")) == ("fd00::5", "3261")
    wrapped = f"<domain><devices>{controller_xml(1)}{text}</devices></domain>"
    (disk,) = disks_of(parse_domain(wrapped), NAA)
    assert disk.address == address
    assert disk.target_dev == "sdq"
    assert disk.source is not None
    assert disk.source.initiator == HOST_IQN
    (controller,) = parse_domain(wrapped).controllers
    assert (controller.index, controller.virtio) == (1, True)


def test_disk_names_follow_libvirts_scheme() -> None:
    assert [disk_name(i) for i in (0, 25, 26, 27, 701, 702)] == [
        "sda",
        "sdz",
        "sdaa",
        "sdab",
        "sdzz",
        "sdaaa",
    ]
    assert free_disk_name({"sda", "sdb", "sdd"}) == "sdc"
    assert free_disk_name([]) == "sda"


def test_bad_xml_is_a_clear_conflict() -> None:
    with pytest.raises(Conflict, match="does not parse"):
        parse_domain("<domain>")
    with pytest.raises(Conflict, match="bad drive target"):
        parse_domain(
            "<domain><devices><disk><target dev='sda' bus='scsi'/>"
            "<address type='drive' controller='0' target='x'/></disk></devices></domain>"
        )


FC_HOST = """
<device>
  <name>scsi_host5</name>
  <path>/sys/devices/pci0000:00/0000:00:04.0/host5/scsi_host/host5</path>
  <parent>pci_0000_00_04_0</parent>
  <capability type='scsi_host'>
    <host>5</host>
    <unique_id>2</unique_id>
    <capability type='fc_host'>
      <wwnn>20000000C9831B4B</wwnn>
      <wwpn>10000000c9831b4b</wwpn>
      <fabric_wwn>2002000573de9a81</fabric_wwn>
    </capability>
    <capability type='vport_ops'><max_vports>127</max_vports><vports>0</vports></capability>
  </capability>
</device>
"""


def test_fc_ports_from_node_devices() -> None:
    assert parse_fc_host(FC_HOST) == FcPort(
        "scsi_host5", "10:00:00:00:c9:83:1b:4b", "20:00:00:00:c9:83:1b:4b"
    )
    plain = "<device><name>scsi_host0</name><capability type='scsi_host'><host>0</host></capability></device>"
    assert parse_fc_host(plain) is None
    assert parse_fc_host(FC_HOST.replace("10000000c9831b4b", "")) is None
    assert parse_fc_host("<device") is None


def test_a_lunbridge_disk_of_another_lun_is_never_taken_by_its_source() -> None:
    # LUN 1 of the target held NAA when lunbridge attached it (alias); if a later discovery
    # says another LUN is there now (LUN numbers are reused), that disk is still not its
    moved_in = "naa.6002405c790a01d57d54736afd6bbc37"
    assert disks_of(parse_domain(LIVE), moved_in, (TARGET, 1)) == []
