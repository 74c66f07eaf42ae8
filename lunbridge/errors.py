"""The one error set of the domain library.

Hypervisor and storage backends raise only these, so the operator can decide between
retry and give-up, and the CSI plugin can map each to one gRPC code in one table.
Every message says what failed and what to do about it, and never shows a secret: the
message passes through `lunbridge.redact` when the error is made and again whenever it is
shown (a value registered in between is masked too), so statuses, Events, gRPC errors and the
log lines that quote an error are clean wherever the text came from (a URL, a command line,
a peer's fault text).
"""

from __future__ import annotations

from lunbridge.redact import redact


class LunbridgeError(Exception):
    """Base of every error the domain library raises."""

    retryable: bool = False

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))

    def __str__(self) -> str:
        return redact(super().__str__())


class NotFound(LunbridgeError):
    """The named object does not exist (deleting it is therefore already done)."""


class AlreadyExists(LunbridgeError):
    """An object of that name exists with different properties."""


class Conflict(LunbridgeError):
    """The request contradicts the object's current state (e.g. delete of a mapped LUN)."""


class InvalidArgument(LunbridgeError):
    """The request itself is malformed; retrying it unchanged cannot succeed."""


class Busy(LunbridgeError):
    """Another operation on the same object is in flight; retry later."""

    retryable = True


class LimitExceeded(LunbridgeError):
    """A hard limit (units per controller, controllers per VM, LUNs per target) is reached."""


class Unavailable(LunbridgeError):
    """A peer (hypervisor, storage server) cannot be reached or failed transiently."""

    retryable = True


class HypervisorUnreachable(Unavailable):
    """The hypervisor's manager itself (vCenter) cannot be reached: every host's call fails
    alike, so a step that goes on past one host's failure (a rescan after an unmap) waits for
    it instead of leaving every host with a dead LUN."""


class Unauthenticated(LunbridgeError):
    """A peer refused the credentials; fix the Secret, retrying will not help."""
