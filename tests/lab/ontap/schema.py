"""The schema gate: every request and every answer checked against netapp-ontap's schemas.

netapp-ontap 9.19.1.0 ships ONTAP 9.19's OpenAPI definitions as marshmallow schema classes: per
object the fields (name on the wire, type, enum, length), and which may be sent in a POST, sent
in a PATCH or read in a GET (`postable_fields`, `patchable_fields`, `gettable_fields`; an entry
`svm.name` allows only that part of a nested object). marshmallow itself drops unknown nested
keys silently, so the walk here goes through `schema.fields` itself, down every nested object
and list, and names the first offending field with its full dotted path, as ONTAP does:
an unknown field is 262179 `Unexpected argument "x".`, a field not settable in this operation
262196, a value of the wrong type, enum or length 262197.

The same walk checks what the simulator sends: a field it may not send is a simulator bug.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from marshmallow import Schema, ValidationError
from marshmallow import fields as mf

from tests.lab.ontap import errors
from tests.lab.ontap.errors import OntapError

Mode = Literal["post", "patch", "get"]
_LISTS = {"post": "postable_fields", "patch": "patchable_fields", "get": "gettable_fields"}


@functools.cache
def _instance(schema_cls: type[Schema]) -> Schema:
    return schema_cls()


@functools.cache
def _by_key(schema_cls: type[Schema]) -> dict[str, tuple[str, mf.Field]]:
    """Wire name → (attribute name, field) of a schema."""
    return {(f.data_key or name): (name, f) for name, f in _instance(schema_cls).fields.items()}


def _nested_cls(field: mf.Field) -> type[Schema] | None:
    if isinstance(field, mf.Nested):
        return type(field.schema)
    return None


def _entries(schema_cls: type[Schema], mode: Mode) -> frozenset[str]:
    return frozenset(getattr(schema_cls, _LISTS[mode], []))


def _restriction(entries: frozenset[str], attr: str) -> frozenset[str] | Literal[False] | None:
    """None: the whole field is allowed (its own schema's list applies below); a set: only these
    parts of it; False: not allowed at all."""
    if attr in entries:
        return None
    parts = frozenset(e.split(".", 1)[1] for e in entries if e.startswith(attr + "."))
    return parts if parts else False


def expand_dotted(body: dict[str, Any]) -> dict[str, Any]:
    """`{"svm.name": "x"}` → `{"svm": {"name": "x"}}` (ONTAP takes both forms in a body)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        inner = expand_dotted(value) if isinstance(value, dict) else value
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise errors.bad(errors.INVALID_VALUE, f'Field "{key}" is given twice.', key)
            node = nxt
        if isinstance(node.get(parts[-1]), dict) and isinstance(inner, dict):
            node[parts[-1]].update(inner)
        else:
            node[parts[-1]] = inner
    return out


def check_body(schema_cls: type[Schema], body: dict[str, Any], mode: Mode) -> None:
    """Raise the OntapError ONTAP would answer for the first field of `body` that the schema
    does not allow in this operation (POST or PATCH)."""
    _walk(schema_cls, body, mode, None, "")


def _walk(
    schema_cls: type[Schema], data: dict[str, Any], mode: Mode, only: frozenset[str] | None, path: str
) -> None:
    entries = only if only is not None else _entries(schema_cls, mode)
    fields = _by_key(schema_cls)
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in fields:
            raise errors.bad(errors.UNEXPECTED_ARGUMENT, f'Unexpected argument "{full}".', full)
        attr, field = fields[key]
        sub = _restriction(entries, attr)
        if sub is False:
            if mode == "get":
                raise errors.bad(errors.NOT_SETTABLE, f'Field "{full}" is not readable.', full)
            raise errors.bad(errors.NOT_SETTABLE, f'Field "{full}" cannot be set in this operation.', full)
        _value(field, value, mode, sub, full)


def _value(field: mf.Field, value: Any, mode: Mode, only: frozenset[str] | None, full: str) -> None:
    if value is None:
        if not field.allow_none:
            raise _invalid(value, full, "null")
        return
    nested = _nested_cls(field)
    if nested is not None:
        if not isinstance(value, dict):
            raise _invalid(value, full, "an object is expected")
        _walk(nested, value, mode, only, full)
    elif isinstance(field, mf.List):
        if not isinstance(value, list):
            raise _invalid(value, full, "an array is expected")
        for item in value:
            _value(field.inner, item, mode, only, full)
    else:
        _scalar(field, value, full)


def _scalar(field: mf.Field, value: Any, full: str) -> None:
    if isinstance(value, (dict, list)):
        raise _invalid(value, full, "a single value is expected")
    if isinstance(field, (mf.Integer, mf.Number)) and isinstance(value, bool):
        raise _invalid(value, full, "a number is expected")
    if isinstance(field, mf.Boolean) and not isinstance(value, bool):
        raise _invalid(value, full, "true or false is expected")
    if isinstance(field, mf.String) and not isinstance(value, str):
        raise _invalid(value, full, "a string is expected")
    try:
        field.deserialize(value)
    except ValidationError as exc:
        raise _invalid(value, full, _flat(exc.messages)) from None


def _flat(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(_flat(v) for v in messages.values())
    if isinstance(messages, list):
        return "; ".join(_flat(v) for v in messages)
    return str(messages)


def _invalid(value: Any, full: str, why: str) -> OntapError:
    return errors.bad(
        errors.INVALID_VALUE, f'The value "{value}" is invalid for field "{full}" ({why}).', full
    )


def check_record(schema_cls: type[Schema], record: dict[str, Any]) -> str | None:
    """None if every field of an answer record is gettable and well-formed, else what is wrong."""
    try:
        _walk(schema_cls, record, "get", None, "")
    except OntapError as exc:
        return exc.message
    return None


def gettable_path(schema_cls: type[Schema], dotted: str, leaf: bool = False) -> bool:
    """`dotted` (e.g. `svm.name`, `lun_maps.igroup.name`) names a gettable field (with `leaf`:
    one that holds a value, not an object)."""
    cls: type[Schema] | None = schema_cls
    only: frozenset[str] | None = None
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        if cls is None:
            return False
        fields = _by_key(cls)
        if part not in fields:
            return False
        attr, field = fields[part]
        sub = _restriction(only if only is not None else _entries(cls, "get"), attr)
        if sub is False:
            return False
        only = sub
        inner = field.inner if isinstance(field, mf.List) else field
        cls = _nested_cls(inner)
        if cls is None and index < len(parts) - 1:
            return False
    return not (leaf and cls is not None)
