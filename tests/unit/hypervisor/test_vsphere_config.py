"""The vSphere Secret: keys, TLS trust options, thumbprints; the password never shows."""

from __future__ import annotations

import hashlib
import ssl

import pytest

from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.vsphere.config import VSphereConfig, normalize_thumbprint, parse_endpoint
from lunbridge.hypervisor.vsphere.tls import (
    PinnedContext,
    ThumbprintMismatch,
    check_thumbprint,
    make_context,
    thumbprint_of,
)

PASSWORD = "s3cret-P@ss"
DIGEST = hashlib.sha256(b"certificate").hexdigest()


def test_from_secret_reads_bytes_and_hides_the_password() -> None:
    config = VSphereConfig.from_secret(
        {"server": b"vc.example.com", "username": b"svc@vsphere.local", "password": PASSWORD.encode() + b"\n"}
    )
    assert config.url == "https://vc.example.com:443/sdk"
    assert config.username == "svc@vsphere.local"
    assert config.password == PASSWORD  # the newline of `echo pw | base64` is dropped
    assert not config.insecure
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)


def test_from_secret_tls_options() -> None:
    pinned = VSphereConfig.from_secret(
        {"url": "https://vc:8443/sdk/", "user": "u", "password": "p", "thumbprint": DIGEST.upper()}
    )
    assert pinned.url == "https://vc:8443/sdk"
    assert pinned.thumbprint == DIGEST
    insecure = VSphereConfig.from_secret({"url": "vc", "user": "u", "password": "p", "insecure": "True"})
    assert insecure.insecure


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "u", "password": "p"}, "no 'url' key"),
        ({"url": "vc", "password": "p"}, "no 'username' key"),
        ({"url": "vc", "username": "u"}, "no 'password' key"),
        ({"url": "vc", "username": "u", "password": "p", "insecure": "maybe"}, "'insecure' must be"),
        ({"url": "http://vc/sdk", "username": "u", "password": "p"}, "does not use https"),
        ({"url": "vc", "username": "u", "password": "p", "insecure": "1", "thumbprint": DIGEST}, "drop"),
    ],
)
def test_bad_secrets_name_the_key(data: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        VSphereConfig.from_secret(data)
    assert "'p'" not in str(caught.value)


def test_endpoint_forms() -> None:
    assert parse_endpoint("vc.example.com").url == "https://vc.example.com:443/sdk"
    assert parse_endpoint("https://127.0.0.1:40895/sdk").url == "https://127.0.0.1:40895/sdk"
    assert parse_endpoint("https://[fd00::1]:8443").url == "https://[fd00::1]:8443/sdk"
    with pytest.raises(InvalidArgument):
        parse_endpoint("https://vc:99999/sdk")


def test_thumbprint_spellings() -> None:
    colons = ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_thumbprint(colons) == DIGEST
    assert normalize_thumbprint(f"sha256:{DIGEST}") == DIGEST
    with pytest.raises(InvalidArgument, match="SHA-1"):
        normalize_thumbprint(hashlib.sha1(b"x").hexdigest())
    with pytest.raises(InvalidArgument, match="64"):
        normalize_thumbprint("abcd")
    with pytest.raises(InvalidArgument, match="hexadecimal"):
        normalize_thumbprint("zz" * 32)


def test_check_thumbprint() -> None:
    assert thumbprint_of(b"certificate") == DIGEST
    check_thumbprint(b"certificate", DIGEST)
    with pytest.raises(ThumbprintMismatch) as caught:
        check_thumbprint(b"another certificate", DIGEST)
    assert caught.value.expected == DIGEST
    assert caught.value.actual == hashlib.sha256(b"another certificate").hexdigest()
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    with pytest.raises(ThumbprintMismatch):
        check_thumbprint(None, DIGEST)


def test_contexts_verify_unless_told_otherwise() -> None:
    default = make_context(VSphereConfig(url="vc", username="u", password="p"))
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.check_hostname
    pinned = make_context(VSphereConfig(url="vc", username="u", password="p", thumbprint=DIGEST))
    assert isinstance(pinned, PinnedContext)
    assert pinned.pinned == DIGEST
    insecure = make_context(VSphereConfig(url="vc", username="u", password="p", insecure=True))
    assert insecure.verify_mode == ssl.CERT_NONE


def test_unreadable_ca_bundle_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="ca_bundle"):
        make_context(VSphereConfig(url="vc", username="u", password="p", ca_bundle="/nonexistent/ca.pem"))
