"""How the endpoints answer: a collection page, one record, a creation (201 + Location), and the
refusal of a field the schema allows but the simulator does not model (code 3, "not
supported", saying so, rather than pretending to have done it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from marshmallow import Schema

from tests.lab.ontap import errors, query
from tests.lab.ontap.errors import OntapError
from tests.lab.ontap.sim import Json, Request, Response, Sim

NOT_SUPPORTED = "3"


def listing(
    sim: Sim,
    req: Request,
    records: list[Json],
    schema_cls: type[Schema],
    keys: Sequence[str] = ("uuid", "name"),
    sort_key: Callable[[Json], str] | None = None,
    allowed: frozenset[str] = frozenset(),
) -> Response:
    def by_uuid(record: Json) -> str:
        return str(record.get("uuid", ""))

    body = query.collection(
        req.path, req.query, records, schema_cls, keys, sort_key or by_uuid, sim.config.page_size, allowed
    )
    return Response(200, body)


def single(
    req: Request, record: Json, schema_cls: type[Schema], keys: Sequence[str] = ("uuid", "name")
) -> Response:
    """One record: all of it, or the keys and what `fields=` names."""
    wanted = query.field_list(req.query, schema_cls)
    return Response(200, query.project(record, wanted, keys) if wanted else record)


def created(req: Request, record: Json, location: str) -> Response:
    body: Json = {}
    if req.query.get("return_records", "false").lower() == "true":
        body = {"num_records": 1, "records": [record]}
    return Response(201, body, location)


def flag(req: Request, name: str) -> bool:
    value = req.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise errors.bad(errors.INVALID_VALUE, f'The value "{value}" is invalid for field "{name}".', name)
    return value == "true"


def unmodelled(body: Json, handled: Iterable[str], prefix: str = "") -> None:
    """Refuse any (dotted) field of `body` that is valid for ONTAP but not in `handled`
    (paths relative to `body`; `prefix` only names the field in the error)."""
    _unmodelled(body, set(handled), "", prefix)


def _unmodelled(body: Json, handled: set[str], path: str, prefix: str) -> None:
    for key, value in body.items():
        full = f"{path}{key}"
        if full in handled:
            continue
        if isinstance(value, dict) and any(h.startswith(full + ".") for h in handled):
            _unmodelled(value, handled, full + ".", prefix)
            continue
        raise OntapError(
            400,
            NOT_SUPPORTED,
            f'The simulator does not model field "{prefix}{full}" in this operation.',
            prefix + full,
        )


def ref(name: str, uuid: str, href: str) -> Json:
    return {"name": name, "uuid": uuid, "_links": {"self": {"href": href}}}


def dig(body: Json, dotted: str) -> Any:
    node: Any = body
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
