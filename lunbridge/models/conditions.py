"""Status conditions as every lunbridge object carries them (the Kubernetes convention:
`type`, `status` True/False/Unknown, a CamelCase `reason`, a `message`, the time of the last
change of `status`, and the generation it describes)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from pydantic import Field

from lunbridge.models._base import Model


class ConditionType(enum.StrEnum):
    PROVISIONED = "Provisioned"
    MAPPED = "Mapped"
    ATTACHED = "Attached"
    READY = "Ready"
    # every host of the disk's scope sees the LUN: its VM may move to any (vMotion, DRS, HA)
    CLUSTER_READY = "ClusterReady"
    # every link of the chain (LUN, map, hosts, RDM) was in place at the last check; False names
    # the link that broke (lunbridge_operator.reconcile.health)
    HEALTHY = "Healthy"


# a DiskSnapshot's condition (not a VirtualDisk's): its last verification, True when it passed,
# False when it failed or the snapshot was not verifiable (the reason says which)
VERIFIED = "Verified"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def now() -> str:
    """The current time as the API server writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Condition(Model):
    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None

    @property
    def true(self) -> bool:
        return self.status is ConditionStatus.TRUE


class Conditioned(Model):
    """A status with conditions; mixed into each kind's status model."""

    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def is_true(self, kind: str, generation: int | None = None) -> bool:
        """True when condition `kind` is True (and, if `generation` is given, describes it)."""
        found = self.condition(kind)
        if found is None or not found.true:
            return False
        return generation is None or found.observed_generation == generation

    def set_condition(
        self, kind: str, state: bool | None, reason: str, message: str, generation: int | None
    ) -> None:
        """Set one condition; lastTransitionTime changes only when its status does."""
        status = (
            ConditionStatus.UNKNOWN
            if state is None
            else (ConditionStatus.TRUE if state else ConditionStatus.FALSE)
        )
        old = self.condition(kind)
        same = old is not None and old.status is status and old.last_transition_time
        new = Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message,
            observed_generation=generation,
            last_transition_time=old.last_transition_time if same and old else now(),
        )
        if old is None:
            self.conditions.append(new)
        else:
            self.conditions[self.conditions.index(old)] = new
