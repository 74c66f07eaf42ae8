"""The part of Kubernetes object metadata lunbridge reads and writes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from lunbridge.api import API_VERSION
from lunbridge.models._base import Model


class ObjectMeta(Model):
    name: str
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
    finalizers: list[str] = Field(default_factory=list)


class KubeObject(Model):
    """A whole lunbridge object as the API server returns it; subclasses type spec and status."""

    kind: ClassVar[str]
    metadata: ObjectMeta

    @field_validator("status", mode="before", check_fields=False)
    @classmethod
    def _no_status(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def name(self) -> str:
        return self.metadata.name

    def body(self) -> dict[str, Any]:
        """The object to create (apiVersion, kind, metadata, spec; no status)."""
        spec: Model = getattr(self, "spec")  # noqa: B009  (every subclass has one)
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": self.metadata.to_dict(),
                "spec": spec.to_dict()}  # fmt: skip
