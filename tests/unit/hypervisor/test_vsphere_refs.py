"""VM references (Kubernetes providerID, UUIDs, names) and iSCSI portals are parsed the same
way everywhere; a providerID's UUID matches in any letter case."""

from __future__ import annotations

import pytest

from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.vsphere.refs import (
    VmQuery,
    canonical_uuid,
    parse_portal,
    parse_vm_ref,
    uuid_spellings,
)

UUID = "4230a1b2-c3d4-e5f6-0718-293a4b5c6d7e"


@pytest.mark.parametrize(
    "ref",
    [f"vsphere://{UUID}", f"vsphere://{UUID.upper()}", f"VSphere://{UUID}", f"  vsphere:///{UUID}  "],
)
def test_provider_id_in_any_case_is_a_bios_uuid(ref: str) -> None:
    assert parse_vm_ref(ref) == VmQuery(uuid=UUID, bios_only=True)


def test_bare_uuid_is_bios_or_instance_uuid() -> None:
    assert parse_vm_ref(UUID.upper()) == VmQuery(uuid=UUID)
    assert parse_vm_ref(UUID.replace("-", "")) == VmQuery(uuid=UUID)


def test_anything_else_is_a_name() -> None:
    assert parse_vm_ref("DC0_C0_H0_VM0") == VmQuery(name="DC0_C0_H0_VM0")


@pytest.mark.parametrize("ref", ["", "  ", "vsphere://", "vsphere://not-a-uuid", "vsphere://4230a1b2"])
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_vm_ref(ref)


def test_provider_id_error_says_where_to_look() -> None:
    with pytest.raises(InvalidArgument, match=r"spec\.providerID"):
        parse_vm_ref("vsphere://xyz")


def test_uuid_spellings_try_the_given_one_first_then_lower_and_upper() -> None:
    mixed = "4230A1B2-c3d4-E5F6-0718-293a4b5c6d7e"
    assert uuid_spellings(mixed) == [mixed, UUID, UUID.upper()]
    assert uuid_spellings(UUID) == [UUID, UUID.upper()]


def test_canonical_uuid_refuses_garbage() -> None:
    assert canonical_uuid(UUID.upper()) == UUID
    with pytest.raises(InvalidArgument):
        canonical_uuid("4230a1b2-c3d4-e5f6-0718-293a4b5c6d7")


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        ("127.0.0.1:3261", "127.0.0.1", 3261),
        ("10.0.0.5", "10.0.0.5", 3260),
        ("SAN.example.com:3260", "san.example.com", 3260),
        ("[fd00::5]:3262", "fd00::5", 3262),
        ("[fd00::5]", "fd00::5", 3260),
        ("fd00::5", "fd00::5", 3260),
    ],
)
def test_portals(text: str, address: str, port: int) -> None:
    portal = parse_portal(text)
    assert (portal.address, portal.port) == (address, port)


@pytest.mark.parametrize("text", ["", ":3260", "host:", "host:0", "host:70000", "[fd00::5", "[fd00::5]x"])
def test_bad_portals(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_portal(text)


def test_portal_matches_send_targets_with_default_port() -> None:
    portal = parse_portal("10.0.0.5")
    assert portal.same("10.0.0.5", 0)
    assert portal.same("10.0.0.5", None)
    assert portal.same("10.0.0.5", 3260)
    assert not portal.same("10.0.0.5", 3261)
    assert parse_portal("[fd00::5]:3262").same("[FD00::5]", 3262)
    assert str(parse_portal("[fd00::5]:3262")) == "[fd00::5]:3262"
