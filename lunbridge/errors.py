"""The one error set of the domain library.

Hypervisor and storage backends raise only these, so the operator can decide between
retry and give-up, and the CSI plugin can map each to one gRPC code in one table.
Every message says what failed and what to do about it.
"""

from __future__ import annotations


class LunbridgeError(Exception):
    """Base of every error the domain library raises."""

    retryable: bool = False


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


class Unauthenticated(LunbridgeError):
    """A peer refused the credentials; fix the Secret, retrying will not help."""
