"""How lunbridge reaches a vCenter: the address, the account and how its TLS certificate is
trusted, read from a Kubernetes Secret's data.

It exists so that the one place that knows the password also makes sure it never leaks:
the password is kept out of `repr` (and therefore out of logs and tracebacks) and registered
with `lunbridge.redact` (so it is masked in any text lunbridge shows, wherever it turns up),
and every error about a bad or missing value names the key, never a secret. A URL that
carries a user or password (`https://admin:pw@vc/sdk`) is refused: the account belongs in
`username` and `password`, and quoting such a URL would show the password. TLS is verified by
default; skipping verification takes an explicit `insecure: "true"`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lunbridge import redact
from lunbridge.errors import InvalidArgument

DEFAULT_PORT = 443
DEFAULT_PATH = "/sdk"

# Secret keys, first spelling wins; the alternatives are what other vSphere tools use.
_URL_KEYS = ("url", "server", "host")
_USER_KEYS = ("username", "user")
_CA_KEYS = ("ca_bundle", "ca.crt", "caBundle")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_HEX = re.compile(r"^[0-9a-f]+$")


def normalize_thumbprint(value: str) -> str:
    """A SHA-256 certificate thumbprint as 64 lowercase hex digits.

    Accepts the spellings tools print (`AB:CD:...`, `ab cd ...`, `sha256:ABCD...`). SHA-1
    thumbprints (40 digits, what older vSphere screens show) are refused: SHA-1 is not a
    safe pin, and accepting it would silently weaken the check.
    """
    text = value.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=")
    digits = re.sub(r"[:\s-]", "", text)
    if not _HEX.match(digits):
        raise InvalidArgument(
            "the vSphere 'thumbprint' is not hexadecimal; give the server's SHA-256 fingerprint"
        )
    if len(digits) == 40:
        raise InvalidArgument(
            "the vSphere 'thumbprint' is a SHA-1 fingerprint; give the SHA-256 one "
            "(openssl x509 -noout -fingerprint -sha256 -in vcenter.pem)"
        )
    if len(digits) != 64:
        raise InvalidArgument(
            f"the vSphere 'thumbprint' has {len(digits)} hex digits; a SHA-256 fingerprint has 64"
        )
    return digits


@dataclass(frozen=True)
class Endpoint:
    """Where the SOAP API listens: `https://host:port/path`."""

    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{self.path}"


def parse_endpoint(value: str) -> Endpoint:
    """`https://vc.example.com/sdk`, `vc.example.com:8443` or a bare host → an Endpoint."""
    text = value.strip()
    if not text:
        raise InvalidArgument("the vSphere 'url' is empty; give https://<vcenter>/sdk")
    if "://" not in text:
        text = "https://" + text
    if "@" in text:  # user info; where urlsplit sees the host depends on the password's characters
        redact.register_url(text)
        raise InvalidArgument(
            "the vSphere 'url' carries a user name or password (user:password@); give the URL "
            "without them (https://<vcenter>/sdk) and the account as 'username' and 'password'"
        )
    parts = urlsplit(text)
    shown = redact.redact(repr(value))
    if parts.scheme.lower() != "https":
        raise InvalidArgument(
            f"the vSphere 'url' {shown} does not use https; vCenter's SDK is served over TLS only"
        )
    if not parts.hostname:
        raise InvalidArgument(f"the vSphere 'url' {shown} names no host; give https://<vcenter>/sdk")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise InvalidArgument(f"the vSphere 'url' {shown} has a bad port: {exc}") from None
    path = parts.path.rstrip("/") or DEFAULT_PATH
    return Endpoint(host=parts.hostname, port=port, path=path)


@dataclass(frozen=True)
class VSphereConfig:
    """Connection settings of one vCenter.

    TLS trust, in order: `thumbprint` pins the server certificate by its SHA-256 digest (with
    `ca_bundle` as well, both must hold); `ca_bundle` (PEM text, or a path to a PEM file)
    replaces the system CAs; neither → the system CAs. `insecure` turns verification off and
    cannot be combined with the others.
    """

    url: str
    username: str
    password: str = field(repr=False)
    ca_bundle: str | None = field(default=None, repr=False)
    thumbprint: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        redact.register(self.password)  # first: whatever is refused below, it stays masked
        object.__setattr__(self, "url", parse_endpoint(self.url).url)
        if not self.username:
            raise InvalidArgument("the vSphere 'username' is empty; set it in the credentials Secret")
        if not self.password:
            raise InvalidArgument("the vSphere 'password' is empty; set it in the credentials Secret")
        if self.thumbprint is not None:
            object.__setattr__(self, "thumbprint", normalize_thumbprint(self.thumbprint))
        if self.insecure and (self.thumbprint or self.ca_bundle):
            raise InvalidArgument(
                "the vSphere Secret sets 'insecure' together with 'thumbprint' or 'ca_bundle'; "
                "drop 'insecure' to verify the certificate, or drop the others to skip verification"
            )

    @property
    def endpoint(self) -> Endpoint:
        return parse_endpoint(self.url)

    @classmethod
    def from_secret(cls, data: Mapping[str, str | bytes]) -> VSphereConfig:
        """Read a Secret's decoded `data` (bytes) or `stringData` (str).

        Keys: `url` (or `server`/`host`), `username` (or `user`), `password`, and optionally
        `ca_bundle` (or `ca.crt`), `thumbprint`, `insecure`.
        """
        text = {key: _text(key, value) for key, value in data.items()}

        def first(keys: tuple[str, ...], required: bool) -> str | None:
            for key in keys:
                if text.get(key, "").strip():
                    return text[key].strip()
            if required:
                raise InvalidArgument(
                    f"the vSphere credentials Secret has no {keys[0]!r} key (or it is empty)"
                )
            return None

        insecure = (first(("insecure",), False) or "").lower()
        if insecure not in _TRUE | _FALSE:
            raise InvalidArgument("the vSphere Secret's 'insecure' must be 'true' or 'false'")
        # a trailing newline is what `echo pw | base64` leaves behind, never part of a password
        password = text.get("password", "").rstrip("\r\n")
        redact.register(password)
        if not password:
            raise InvalidArgument("the vSphere credentials Secret has no 'password' key (or it is empty)")
        return cls(
            url=first(_URL_KEYS, True) or "",
            username=first(_USER_KEYS, True) or "",
            password=password,
            ca_bundle=first(_CA_KEYS, False),
            thumbprint=first(("thumbprint",), False),
            insecure=insecure in _TRUE,
        )


def _text(key: str, value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"the vSphere Secret's {key!r} is not UTF-8 text") from None
