"""An ontap backend section's settings: what a working section gives, and every bad field
refused with its name (and no credential ever accepted as a setting); the section as a backend
type, its Secret, and the FlexVol names it makes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lunbridge import redact
from lunbridge.errors import InvalidArgument, Unauthenticated
from lunbridge.storage import factory
from lunbridge.storage.ontap.client import OntapClient
from lunbridge.storage.ontap.config import OntapConfig
from lunbridge.storage.ontap.core import OntapCore, volume_size

WHERE = "backend netapp-a settings"
MINIMAL = {"managementUrl": "https://cluster1.example:443", "svm": "svm_san1"}


def test_a_minimal_section_gets_verified_tls_thin_luns_and_tridents_concurrency() -> None:
    config = OntapConfig.from_settings(MINIMAL, WHERE)
    assert config.management_url == "https://cluster1.example:443"
    assert config.svm == "svm_san1"
    assert config.tls_verify is True
    assert config.ca_file is None
    assert config.space_reservation is False
    assert config.igroup_os_type is None  # from the hypervisor
    assert config.max_concurrent_calls == 20
    assert config.aggregates == ()
    assert config.data_interfaces == ()


def test_every_setting_is_read() -> None:
    config = OntapConfig.from_settings(
        {
            **MINIMAL,
            "aggregates": ["aggr1_node1", "aggr1_node2"],
            "tlsVerify": "false",
            "caFile": "/etc/lunbridge/backends/netapp-a/ca.crt",
            "spaceReservation": True,
            "igroupOsType": "vmware",
            "dataInterfaces": "192.0.2.21:3260, 192.0.2.22:3260",
            "flexvolPrefix": "k8s_",
            "maxConcurrentCalls": "8",
            "jobTimeoutSeconds": 30,
        },
        WHERE,
    )
    assert config.aggregates == ("aggr1_node1", "aggr1_node2")
    assert config.tls_verify is False
    assert config.ca_file == Path("/etc/lunbridge/backends/netapp-a/ca.crt")
    assert config.space_reservation is True
    assert config.igroup_os_type == "vmware"
    assert config.data_interfaces == ("192.0.2.21:3260", "192.0.2.22:3260")
    assert config.flexvol_prefix == "k8s_"
    assert config.max_concurrent_calls == 8
    assert config.job_timeout == 30.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"managementUrl": None}, "lacks managementUrl"),
        ({"svm": ""}, "lacks svm"),
        ({"managementUrl": "http://cluster1.example"}, f"{WHERE}.managementUrl"),  # HTTPS only
        ({"managementUrl": "https://admin:Pa55w0rd@cluster1.example"}, "they belong in the backend's Secret"),
        ({"managementUrl": "https://cluster1.example/api"}, "no path or query"),
        ({"managementUrl": "https://cluster1.example:99999"}, f"{WHERE}.managementUrl"),
        ({"svm": "svm/1"}, f"{WHERE}.svm"),
        ({"aggregates": ["aggr-1"]}, f"{WHERE}.aggregates"),
        ({"aggregates": {"a": 1}}, f"{WHERE}.aggregates must be a list"),
        ({"tlsVerify": "maybe"}, f"{WHERE}.tlsVerify must be true or false"),
        ({"spaceReservation": 2}, f"{WHERE}.spaceReservation"),
        ({"igroupOsType": "esxi"}, "is not an ONTAP igroup os_type"),
        ({"dataInterfaces": ["192.0.2.21"]}, f"{WHERE}.dataInterfaces"),
        ({"flexvolPrefix": "k8s-"}, "FlexVol names allow no '-'"),
        ({"maxConcurrentCalls": 0}, f"{WHERE}.maxConcurrentCalls must be a whole number from 1 to 100"),
        ({"maxConcurrentCalls": 2.5}, f"{WHERE}.maxConcurrentCalls"),
        ({"maxConcurrentCalls": True}, f"{WHERE}.maxConcurrentCalls"),
        ({"jobTimeoutSeconds": "soon"}, f"{WHERE}.jobTimeoutSeconds"),
        ({"password": "Pa55w0rd"}, "unknown keys password"),
    ],
)
def test_a_bad_field_is_refused_by_name(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        OntapConfig.from_settings({**MINIMAL, **change}, WHERE)
    assert field in str(refused.value)
    assert "Pa55w0rd" not in str(refused.value)


def test_an_ontap_section_is_a_backend_type_and_needs_its_secret(tmp_path: Path) -> None:
    settings = {"managementUrl": "https://cluster1.example:8443", "svm": "svm1"}
    (config,) = factory.parse_backends([{"name": "array", "type": "ontap", "settings": settings}])
    factory.check(config)  # checking reads no Secret
    with pytest.raises(InvalidArgument, match="backend array needs credentialsDir"):
        factory.build(config)

    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "username").write_text("lunbridge\n")
    with_folder = factory.BackendConfig("array", "ontap", settings, credentials_dir=folder)
    with pytest.raises(Unauthenticated, match="no readable password") as refused:
        factory.build(with_folder)
    assert "lunbridge" not in str(refused.value).replace("lunbridge's", "")

    (folder / "password").write_text("never-shown-3b1c\n")
    backend = factory.build(with_folder)
    assert "never-shown-3b1c" not in repr(backend.client.session.endpoint)  # type: ignore[attr-defined]
    assert redact.redact("password never-shown-3b1c") == f"password {redact.MASK}"


def test_flexvol_names_hold_no_dash_and_never_collide() -> None:
    config = OntapConfig.from_settings(
        {"managementUrl": "https://c1", "svm": "svm1", "flexvolPrefix": "k8s_"}
    )
    core = OntapCore(OntapClient(config, "user", "pw"))
    assert core.volume_name("vd-0c2f") == "k8s_vd_0c2f"
    assert core.lun_path("vd-0c2f") == "/vol/k8s_vd_0c2f/vd-0c2f"
    names = {core.volume_name(n) for n in ("a-b", "a.b", "a-b-c", "a.b-c", "a-b.c")}
    assert len(names) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names)
    with pytest.raises(InvalidArgument, match="LUN name"):
        core.volume_name("Bad_Name")


def test_a_flexvol_has_room_beyond_its_lun() -> None:
    for size in (1 << 20, 1 << 30, 5 * (1 << 40)):
        volume = volume_size(size)
        assert volume >= size * 1.1 + (64 << 20) - (1 << 20)
        assert volume % (1 << 20) == 0
