"""One object of a lunbridge kind as a reconcile sees it: the typed spec, a working copy of the
status, and the one way that status is written back.

Every kind the operator reconciles (VirtualDisk, DiskSnapshot, DiskRestore, DiskGroupSnapshot)
reads its object and writes its status the same way, so that is written once, here: a
malformed spec is kept as `spec_error` (naming the field) for the steps to report, an
unreadable status reads as empty (the steps find what exists by name), and `save` sends a merge
patch of what changed since the last write, so keys an earlier release wrote are removed too.
A kind's wrapper subclasses `Tracked` and names its plural and models; it adds only what is
its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

from lunbridge.errors import InvalidArgument
from lunbridge.models import ConditionType, Model, merge_patch
from lunbridge.models.conditions import Conditioned
from lunbridge_operator.reconcile.services import Services

SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Conditioned)


@dataclass
class Tracked(Generic[SpecT, StatusT]):
    """`status` is a working copy; `written` is the status as the API server holds it."""

    plural: ClassVar[str]  # where the status is written
    spec_model: ClassVar[type[SpecT]]
    status_model: ClassVar[type[StatusT]]

    name: str
    uid: str
    generation: int | None
    spec: SpecT | None  # None when it could not be read (`spec_error` says why)
    status: StatusT
    written: dict[str, Any] = field(default_factory=dict)
    spec_error: InvalidArgument | None = None

    @classmethod
    def unread_spec(cls) -> SpecT | None:
        """The spec the steps see when the object's does not parse."""
        return None

    @classmethod
    def from_object(cls, name: str, uid: str, generation: int | None, spec: Any, status: Any) -> Self:
        """From the object's parts as kopf hands them (kopf's own status key is left out)."""
        raw = {k: v for k, v in dict(status or {}).items() if k != "kopf"}
        try:
            typed = cls.status_model.from_dict(raw, "status")
        except InvalidArgument:
            typed = cls.status_model()
        try:
            read = cls.spec_model.from_dict(dict(spec or {}), "spec")
        except InvalidArgument as exc:
            return cls(name, uid, generation, cls.unread_spec(), typed, raw, spec_error=exc)
        return cls(name, uid, generation, read, typed, raw)

    def condition(
        self, state: bool | None, reason: str, message: str, kind: ConditionType = ConditionType.READY
    ) -> None:
        """Set condition `kind` for the generation this reconcile works on."""
        self.status.set_condition(kind, state, reason, message, self.generation)

    async def save(self, svc: Services) -> None:
        """Write what changed in status since the last write (nothing if nothing did)."""
        wanted = self.status.to_dict()
        patch = merge_patch(self.written, wanted)
        if patch:
            await svc.kube.patch_status(self.plural, self.name, patch)
            self.written = wanted
