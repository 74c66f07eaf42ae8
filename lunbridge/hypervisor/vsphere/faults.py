"""Translation of what pyvmomi raises (vSphere faults, TLS, socket and HTTP errors) into the
one error set of `lunbridge.errors`, with messages that say what failed and what to do.

It exists so that no other module needs to know pyvmomi's exception zoo. Messages name the
URL (never with user info: `config` refuses that) and the user, never the password; what a
fault's or a socket error's own text quotes is masked by `lunbridge.redact` (the password is
registered there), as in every `LunbridgeError`.
"""

from __future__ import annotations

import http.client
import ssl
from typing import Any

from lunbridge.errors import (
    Busy,
    Conflict,
    HypervisorUnreachable,
    InvalidArgument,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from lunbridge.hypervisor.vsphere._vmomi import MethodFault, vim, vmodl
from lunbridge.hypervisor.vsphere.tls import ThumbprintMismatch

# pyVim.connect.SmartConnect raises a bare Exception with this text when the version probe
# finds no SOAP endpoint (wrong path, not a vCenter).
_NOT_VIM = "is down or is not a VIM server"


def fault_message(fault: Any) -> str:
    """The most specific text a vSphere fault carries (msg, else its localized messages)."""
    msg = getattr(fault, "msg", None)
    if msg:
        return str(msg)
    messages = [m.message for m in (getattr(fault, "faultMessage", None) or []) if getattr(m, "message", "")]
    if messages:
        return "; ".join(str(m) for m in messages)
    return type(fault).__name__.rsplit(".", 1)[-1]


def login_refused(url: str, user: str) -> Unauthenticated:
    return Unauthenticated(
        f"vCenter {url} refused the login of user {user!r}: wrong user name or password; "
        "fix the vSphere credentials Secret"
    )


def translate(exc: BaseException, what: str, url: str, user: str) -> LunbridgeError | None:
    """The lunbridge error for `exc` raised while doing `what`, or None for an exception
    that is a bug of ours (it is then re-raised unchanged)."""
    if isinstance(exc, LunbridgeError):
        return exc
    if isinstance(exc, ThumbprintMismatch):
        return Unauthenticated(
            f"TLS: vCenter {url} presented a certificate with SHA-256 thumbprint {exc.actual}, "
            f"but the Secret pins {exc.expected}; if the certificate was renewed, put the new "
            "thumbprint in the Secret, otherwise something is impersonating vCenter"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Unauthenticated(
            f"TLS: the certificate of vCenter {url} could not be verified ({exc.verify_message or exc}); "
            "put vCenter's CA in the Secret's 'ca_bundle', or pin it with 'thumbprint'"
        )
    if isinstance(exc, MethodFault):
        return _translate_fault(exc, what, url, user)
    if isinstance(exc, (ssl.SSLError, OSError, http.client.HTTPException)):  # ConnectionError, timeouts
        return HypervisorUnreachable(
            f"vCenter {url} cannot be reached while trying to {what}: {exc or type(exc).__name__}; "
            "check the URL and that vCenter is up"
        )
    if type(exc) is Exception and _NOT_VIM in str(exc):
        return Unavailable(
            f"cannot {what}: vCenter {url} does not answer as a vSphere SDK endpoint; "
            "check the URL (https://<vcenter>/sdk) and that vCenter is up"
        )
    return None


def _translate_fault(fault: Any, what: str, url: str, user: str) -> LunbridgeError:
    text = fault_message(fault)
    if isinstance(fault, vim.fault.InvalidLogin):
        return login_refused(url, user)
    if isinstance(fault, vim.fault.NotAuthenticated):
        return Unauthenticated(
            f"vCenter {url} did not accept the session of user {user!r} even after a fresh login "
            f"while trying to {what}; check the account in vCenter"
        )
    if isinstance(fault, vim.fault.NoPermission):
        privilege = getattr(fault, "privilegeId", None) or "?"
        return Unauthenticated(
            f"user {user!r} lacks the vCenter privilege {privilege} needed to {what}; "
            "grant it to the account's role"
        )
    if isinstance(fault, vmodl.fault.ManagedObjectNotFound):
        return NotFound(f"cannot {what}: the object no longer exists in vCenter {url} ({text})")
    if isinstance(fault, vim.fault.NotFound):
        return NotFound(f"cannot {what}: {text}")
    if isinstance(fault, (vim.fault.TaskInProgress, vim.fault.ConcurrentAccess)):
        return Busy(f"cannot {what} now: another task holds the object ({text}); retry later")
    if isinstance(fault, (vim.fault.HostConnectFault, vmodl.fault.HostCommunication, vim.fault.Timedout)):
        return Unavailable(f"cannot {what}: vCenter {url} could not reach the host or itself ({text})")
    if isinstance(fault, vmodl.fault.SystemError):
        return Unavailable(f"cannot {what}: vCenter {url} had an internal error ({text}); retry later")
    if isinstance(fault, (vmodl.fault.InvalidArgument, vim.fault.InvalidName)):
        return InvalidArgument(f"cannot {what}: vCenter refused an argument ({text})")
    return Conflict(f"cannot {what}: vCenter {url} refused it ({type(fault).__name__}: {text})")
