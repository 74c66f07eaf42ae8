"""The TLS context every connection to vCenter is made with.

It exists because pyvmomi's own defaults are unsafe for us: given no context it silently
skips verification for `localhost`/`127.0.0.1`, and its thumbprint pinning turns
verification off on the shared context after the first pinned handshake, so later
connections are not checked at all. Here the context is always explicit, and a pinned
context checks the SHA-256 digest of the peer certificate on *every* handshake.

A certificate that fails verification or the pin is reported as `Unauthenticated` (see
`faults`), not `Unavailable`: the server failed to prove who it is, so retrying cannot
help; the cure is the Secret's `ca_bundle`/`thumbprint` (or finding who answers instead).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.vsphere.config import VSphereConfig

log = logging.getLogger(__name__)


class ThumbprintMismatch(ssl.SSLCertVerificationError):
    """The server's certificate is not the pinned one."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"certificate SHA-256 {actual or '<none>'} is not the pinned {expected}")
        self.expected = expected
        self.actual = actual


def thumbprint_of(der_certificate: bytes) -> str:
    """The SHA-256 thumbprint (64 lowercase hex digits) of a DER certificate."""
    return hashlib.sha256(der_certificate).hexdigest()


def check_thumbprint(der_certificate: bytes | None, pinned: str) -> None:
    """Raise ThumbprintMismatch unless the certificate's SHA-256 digest is `pinned`."""
    actual = thumbprint_of(der_certificate) if der_certificate else ""
    if not hmac.compare_digest(actual, pinned):
        raise ThumbprintMismatch(pinned, actual)


class PinnedContext(ssl.SSLContext):
    """An SSLContext that, after each handshake, also requires the peer certificate to have
    the pinned SHA-256 digest. Without a CA bundle the chain itself is not checked: the pin
    is the trust (what vSphere admins do for self-signed vCenters)."""

    pinned: str = ""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        try:
            check_thumbprint(wrapped.getpeercert(binary_form=True), self.pinned)
        except ThumbprintMismatch:
            wrapped.close()
            raise
        return wrapped


def _load_ca(context: ssl.SSLContext, bundle: str) -> None:
    try:
        if "-----BEGIN" in bundle:
            context.load_verify_locations(cadata=bundle)
        else:
            context.load_verify_locations(cafile=str(Path(bundle)))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise InvalidArgument(
            f"the vSphere 'ca_bundle' cannot be loaded ({exc}); give PEM certificates or a path to them"
        ) from None


def make_context(config: VSphereConfig) -> ssl.SSLContext:
    """The SSLContext for `config`: CA-verified (system CAs by default), pinned, or, only
    when `insecure` is set, unverified."""
    if config.thumbprint:
        pinned = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.pinned = config.thumbprint
        if config.ca_bundle:
            _load_ca(pinned, config.ca_bundle)
        else:
            pinned.check_hostname = False
            pinned.verify_mode = ssl.CERT_NONE
        return pinned
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.insecure:
        log.warning("TLS verification of vCenter %s is OFF (insecure: true in the Secret)", config.url)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.ca_bundle:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, config.ca_bundle)
    return context
