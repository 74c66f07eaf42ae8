"""The names of the libvirt layer: providerIDs in any case, ids a router can tell apart,
portals, and the alias that marks lunbridge's disks."""

from __future__ import annotations

import pytest

from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.libvirt.config import LibvirtConfig
from lunbridge.hypervisor.libvirt.refs import (
    Portal,
    VmQuery,
    disk_alias,
    host_id,
    is_libvirt_id,
    naa_of_alias,
    parse_portal,
    parse_vm_ref,
    vm_id,
)

UUID = "6b0f5c1e-1111-4a4a-9d9d-0123456789ab"


@pytest.mark.parametrize(
    "ref",
    [
        f"libvirt://{UUID}",
        f"LIBVIRT://{UUID.upper()}",
        f"libvirt:///{UUID}",
        f"libvirt:{UUID}",  # a Vm.id
        UUID.upper(),
        UUID.replace("-", ""),
    ],
)
def test_uuid_references_in_any_spelling(ref: str) -> None:
    assert parse_vm_ref(ref) == VmQuery(uuid=UUID)


def test_anything_else_is_a_domain_name() -> None:
    assert parse_vm_ref(" guest-1 ") == VmQuery(name="guest-1")


def test_a_provider_id_without_a_uuid_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidArgument, match=r"libvirt://<domain UUID>"):
        parse_vm_ref("libvirt://not-a-uuid")
    with pytest.raises(InvalidArgument, match="empty"):
        parse_vm_ref("  ")


def test_ids_are_recognisable_as_libvirts() -> None:
    assert vm_id(UUID.upper()) == f"libvirt:{UUID}"
    assert host_id("qemu:///system") == "libvirt:qemu:///system"
    assert is_libvirt_id(vm_id(UUID))
    assert is_libvirt_id(host_id("qemu+ssh://kvm1/system"))
    assert not is_libvirt_id(f"libvirt://{UUID}")  # a providerID, not an id
    assert not is_libvirt_id("vm-42")


@pytest.mark.parametrize(
    ("text", "portal"),
    [
        ("10.0.0.5:3261", Portal("10.0.0.5", 3261)),
        ("10.0.0.5", Portal("10.0.0.5", 3260)),
        ("[FD00::5]:3260", Portal("fd00::5", 3260)),
        ("San.Example.com", Portal("san.example.com", 3260)),
    ],
)
def test_portals(text: str, portal: Portal) -> None:
    assert parse_portal(text) == portal


def test_portal_urls_for_libiscsi() -> None:
    assert parse_portal("10.0.0.5").url == "iscsi://10.0.0.5:3260"
    assert parse_portal("[fd00::5]:3260").url == "iscsi://[fd00::5]:3260"


@pytest.mark.parametrize("text", ["", ":3260", "10.0.0.5:0", "10.0.0.5:x", "[fd00::5", "a/b:3260"])
def test_bad_portals(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_portal(text)


def test_the_alias_carries_the_naa_both_ways() -> None:
    naa = "naa.6001405c790a01d57d54736afd6bbc37"
    assert disk_alias(naa) == "ua-lunbridge-6001405c790a01d57d54736afd6bbc37"
    assert naa_of_alias(disk_alias(naa)) == naa
    assert naa_of_alias("ua-lunbridge-5000c500a1b2c3d4") == "naa.5000c500a1b2c3d4"
    for other in (None, "", "scsi0-0-0-1", "ua-lunbridge-xyz", "ua-other-6001405c790a01d5"):
        assert naa_of_alias(other) is None


def test_config_checks_its_values() -> None:
    config = LibvirtConfig(
        uri=" qemu:///system ", host_iqn="IQN.2024-01.io.Example:Host1", portals=("10.0.0.5",)
    )
    assert config.uri == "qemu:///system"
    assert config.host_iqn == "iqn.2024-01.io.example:host1"
    assert config.portals == ("10.0.0.5:3260",)
    with pytest.raises(InvalidArgument, match="not a URI"):
        LibvirtConfig(uri="kvm1", host_iqn="iqn.2024-01.io.example:h")
    with pytest.raises(InvalidArgument, match="host IQN"):
        LibvirtConfig(uri="qemu:///system", host_iqn="host1")
    with pytest.raises(InvalidArgument, match="max_controllers"):
        LibvirtConfig(uri="qemu:///system", host_iqn="iqn.2024-01.io.example:h", max_controllers=0)
    with pytest.raises(InvalidArgument, match="targets_per_controller"):
        LibvirtConfig(uri="qemu:///system", host_iqn="iqn.2024-01.io.example:h", targets_per_controller=257)


def test_config_from_the_environment() -> None:
    env = {
        "LUNBRIDGE_LIBVIRT_URI": "qemu+ssh://root@kvm1/system",
        "LUNBRIDGE_HOST_IQN": "iqn.2024-01.io.example:kvm1",
        "LUNBRIDGE_LIBVIRT_PORTALS": "10.0.0.5, 10.0.1.5:3261",
        "LUNBRIDGE_LIBVIRT_HOST_NAME": "kvm1",
    }
    config = LibvirtConfig.from_env(env)
    assert (config.uri, config.host_name) == ("qemu+ssh://root@kvm1/system", "kvm1")
    assert config.portals == ("10.0.0.5:3260", "10.0.1.5:3261")
    with pytest.raises(InvalidArgument, match="LUNBRIDGE_HOST_IQN is not set"):
        LibvirtConfig.from_env({"LUNBRIDGE_LIBVIRT_URI": "qemu:///system"})
