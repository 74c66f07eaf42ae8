"""The base of every typed model: camelCase keys as the CRDs spell them, one to/from-dict, and
errors that name the field.

pydantic does the conversion and the checks; this module only fixes the conventions once, so
that a model written by the operator is read back identically by the CSI plugin and the tests.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from lunbridge.errors import InvalidArgument


def _field_path(where: str, loc: tuple[int | str, ...]) -> str:
    path = where
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


class Model(BaseModel):
    """A part of a lunbridge object. Keys are camelCase (`sizeBytes`); absent and None fields
    are left out of `to_dict`; keys a model does not know are ignored when read (a newer
    writer's additions), never an error."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_default=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-shaped dict the API server stores (enums as their values, no None)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """Read `data` (a dict from the API server, a manifest, a publish context).

        Raises InvalidArgument naming the first bad field as a path from `where`
        (`spec.size`, `status.lun.naa`)."""
        try:
            return cls.model_validate(data if data is not None else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            path = _field_path(where, tuple(first["loc"]))
            raise InvalidArgument(f"{path or cls.__name__}: {first['msg']}") from None


def merge_patch(written: dict[str, Any] | None, wanted: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `written` into `wanted`: changed and new
    keys with their value, removed keys as None; unchanged keys are left out."""
    written = written or {}
    patch: dict[str, Any] = {}
    for key in written.keys() - wanted.keys():
        patch[key] = None
    for key, value in wanted.items():
        old = written.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            inner = merge_patch(old, value)
            if inner:
                patch[key] = inner
        elif value != old or key not in written:
            patch[key] = value
    return patch
