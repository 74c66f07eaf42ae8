"""CHAP credentials for nodes that log in with their own initiators, read from a Kubernetes
Secret in the shape Kubernetes' own iSCSI volumes use (Secret type `kubernetes.io/iscsi-chap`):

- `node.session.auth.username`, `node.session.auth.password`: the initiator proves these to
  the target (one-way CHAP);
- `node.session.auth.username_in`, `node.session.auth.password_in`: the target proves these
  back (mutual CHAP; both or neither).

The same Secret reaches both ends: the operator reads it from the folder it is mounted at (a
backend section's `chapDir`) and gives the node igroups on that backend those accounts; the
node plugin gets it from the StorageClass's node-stage secret (`secrets` of NodeStageVolume)
and puts it on its open-iscsi node record. Every secret read is registered with
`lunbridge.redact`, so it is masked wherever it would show; errors name keys, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lunbridge import redact
from lunbridge.errors import InvalidArgument
from lunbridge.storage.base import Chap

USERNAME = "node.session.auth.username"
PASSWORD = "node.session.auth.password"
USERNAME_IN = "node.session.auth.username_in"
PASSWORD_IN = "node.session.auth.password_in"
KEYS = (USERNAME, PASSWORD, USERNAME_IN, PASSWORD_IN)

MIN_SECRET = 12  # RFC 3720 §8.2.1: at least 96 bits when the secret is not random
MAX_FIELD = 255  # bytes: open-iscsi's AUTH_STR_MAX_LEN is 256 with the zero; tgtd fails logins past it


def _field(values: Mapping[str, str], key: str, where: str, *, secret: bool) -> str:
    value = values.get(key, "")
    if not value:
        raise InvalidArgument(f"{where} lacks {key}")
    if len(value.encode()) > MAX_FIELD or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidArgument(f"{where} {key} must be at most {MAX_FIELD} bytes, printable, without spaces")
    if not secret and "," in value:  # tgtadm cuts a user name at the first comma
        raise InvalidArgument(f"{where} {key} must not contain ','")
    if secret and len(value.encode()) < MIN_SECRET:
        raise InvalidArgument(f"{where} {key} must be at least {MIN_SECRET} bytes (RFC 3720 §8.2.1)")
    if secret:
        redact.register(value)
    return value


def from_values(raw: Mapping[str, str], where: str = "the CHAP secret") -> Chap | None:
    """The CHAP those Secret keys describe; None when none of them is there (no CHAP). Each
    value is read without the whitespace around it (a Secret made from a file ends in a newline),
    the same on the node and in the operator. InvalidArgument names the key that is missing or
    unusable (`where` says whose)."""
    values = {key: raw[key].strip() for key in KEYS if key in raw}
    if not values.get(USERNAME):
        if any(values.get(key) for key in KEYS):
            raise InvalidArgument(f"{where} lacks {USERNAME}")
        return None
    user = _field(values, USERNAME, where, secret=False)
    secret = _field(values, PASSWORD, where, secret=True)
    if not values.get(USERNAME_IN) and not values.get(PASSWORD_IN):
        return Chap(user, secret)
    mutual_user = _field(values, USERNAME_IN, where, secret=False)
    mutual_secret = _field(values, PASSWORD_IN, where, secret=True)
    if mutual_secret == secret:
        raise InvalidArgument(f"{where}: {PASSWORD_IN} must differ from {PASSWORD} (RFC 3720 §8.2.1)")
    return Chap(user, secret, mutual_user, mutual_secret)


def from_folder(folder: Path) -> Chap:
    """The CHAP of a Secret mounted at `folder` (a file per key), read anew on every call so a
    rotated Secret is used; InvalidArgument when the folder or a key is unusable."""
    where = f"the CHAP secret at {folder}"
    if not folder.is_dir():
        raise InvalidArgument(f"{where} does not exist (is the Secret mounted?)")
    values: dict[str, str] = {}
    for key in KEYS:
        try:
            values[key] = (folder / key).read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InvalidArgument(f"{where}: {key} cannot be read ({exc.strerror})") from None
    chap = from_values(values, where)
    if chap is None:
        raise InvalidArgument(f"{where} lacks {USERNAME}")
    return chap
