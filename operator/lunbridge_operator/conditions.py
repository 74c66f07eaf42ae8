"""Status conditions and the phase that summarises them, in the shape the CRDs declare."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PROVISIONED = "Provisioned"
MAPPED = "Mapped"
ATTACHED = "Attached"
READY = "Ready"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    status: dict[str, Any], kind: str, state: bool | None, reason: str, message: str, generation: int | None
) -> None:
    """Set one condition; lastTransitionTime changes only when its status does."""
    value = "Unknown" if state is None else ("True" if state else "False")
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    old = next((c for c in conditions if c.get("type") == kind), None)
    new: dict[str, Any] = {"type": kind, "status": value, "reason": reason, "message": message}
    if generation is not None:
        new["observedGeneration"] = generation
    new["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == value else now()
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), None)


def is_true(status: dict[str, Any], kind: str) -> bool:
    found = condition(status, kind)
    return found is not None and found.get("status") == "True"
