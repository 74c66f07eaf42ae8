"""kopf handlers only (@kopf.on.*); each delegates to a step in `lunbridge_operator.reconcile`.
Importing this package registers them all."""

from lunbridge_operator.handlers import (
    diskgroupsnapshot,
    diskrestore,
    disksnapshot,
    diskverification,
    initiatorgroup,
    lifecycle,
    login,
    lunbridgenode,
    virtualdisk,
)

__all__ = [
    "diskgroupsnapshot",
    "diskrestore",
    "disksnapshot",
    "diskverification",
    "initiatorgroup",
    "lifecycle",
    "login",
    "lunbridgenode",
    "virtualdisk",
]
