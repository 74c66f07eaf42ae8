"""Translation of libvirt errors into the one error set of `lunbridge.errors`, with messages
that say what failed and what to do.

libvirt raises one exception class for everything; its error code tells what happened. Only
this module knows the codes, so the rest of the layer reasons in NotFound / Busy / … alone.
libvirt's texts quote the connection URI; like the URI given here, they are masked by
`lunbridge.redact` (a `user:password@` in the URI shows as `user:***@`), as in every
`LunbridgeError`.
"""

from __future__ import annotations

from typing import Any

from lunbridge.errors import (
    Busy,
    Conflict,
    InvalidArgument,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from lunbridge.hypervisor.libvirt._libvirt import LibvirtError, libvirt


def _codes(*names: str) -> frozenset[int]:
    return frozenset(int(getattr(libvirt, name)) for name in names if hasattr(libvirt, name))


NOT_FOUND = _codes("VIR_ERR_NO_DOMAIN", "VIR_ERR_NO_NODE_DEVICE", "VIR_ERR_DEVICE_MISSING")
GONE_CONNECTION = _codes("VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_CONN", "VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC")
AUTH = _codes(
    "VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE", "VIR_ERR_ACCESS_DENIED"
)
BUSY = _codes("VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE")
INVALID = _codes("VIR_ERR_XML_ERROR", "VIR_ERR_XML_DETAIL", "VIR_ERR_INVALID_ARG")
UNSUPPORTED = _codes("VIR_ERR_NO_SUPPORT", "VIR_ERR_OPERATION_UNSUPPORTED")


def code_of(exc: BaseException) -> int | None:
    if not isinstance(exc, LibvirtError):
        return None
    error: Any = exc
    code = error.get_error_code()
    return int(code) if code is not None else None


def message_of(exc: BaseException) -> str:
    error: Any = exc
    text = error.get_error_message() if isinstance(exc, LibvirtError) else None
    return str(text or exc or type(exc).__name__)


def connection_lost(exc: BaseException) -> bool:
    """True if `exc` means the connection to libvirtd is gone (reopen before the next call)."""
    return code_of(exc) in GONE_CONNECTION


def unsupported(exc: BaseException) -> bool:
    return code_of(exc) in UNSUPPORTED


def translate(exc: BaseException, what: str, uri: str) -> LunbridgeError | None:
    """The lunbridge error for `exc` raised while doing `what`, or None for an exception that
    is a bug of ours (it is then re-raised unchanged)."""
    if isinstance(exc, LunbridgeError):
        return exc
    if not isinstance(exc, LibvirtError):
        return None
    code, text = code_of(exc), message_of(exc)
    if code in NOT_FOUND:
        return NotFound(f"cannot {what}: {text}")
    if code in GONE_CONNECTION:
        return Unavailable(
            f"libvirt {uri} cannot be reached while trying to {what}: {text}; check the URI and "
            "that libvirtd runs on the host"
        )
    if code in AUTH:
        return Unauthenticated(
            f"libvirt {uri} refused access while trying to {what}: {text}; fix the account or the "
            "credentials lunbridge connects with"
        )
    if code in BUSY:
        return Busy(f"cannot {what} now: {text}; another job holds the domain, retry later")
    if code in INVALID:
        return InvalidArgument(f"cannot {what}: libvirt refused the request ({text})")
    return Conflict(f"cannot {what}: libvirt {uri} refused it ({text})")
