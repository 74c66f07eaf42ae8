"""Collection queries as ONTAP answers them: field filters, `fields=`, `order_by`, paging.

A collection GET takes equality filters on any gettable field, nested ones by dotted path
(`svm.name=x`, `lun_maps.igroup.name=x`; a list matches when one element does), with `*`
wildcards, `|` for either and `!` for not (`name=/vol/lb_*/*`, `state=!offline`); `fields=`
chooses what each record holds (the keys and `_links` always come along; `*` or `**` means
everything); `max_records` (and the simulator's `--page-size`) cut the answer into pages, and
`_links.next.href` leads to the next one, carrying the whole query along (netapp-ontap's
`get_collection` follows it with no parameters of its own).
"""

from __future__ import annotations

import copy
import re
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from marshmallow import Schema

from tests.lab.ontap import errors
from tests.lab.ontap.schema import gettable_path

Json = dict[str, Any]

# query parameters that are not fields, accepted on every call (return_timeout only on the
# routes that take it: routes.py)
CONTROL = frozenset({"fields", "max_records", "return_records", "order_by", "start.key"})


def values_of(record: Any, dotted: str) -> list[Any]:
    """Every value at `dotted` in `record`, descending through lists."""
    found: list[Any] = [record]
    for part in dotted.split("."):
        nxt: list[Any] = []
        for node in found:
            if isinstance(node, list):
                nxt.extend(item.get(part) for item in node if isinstance(item, dict) and part in item)
            elif isinstance(node, dict) and part in node:
                nxt.append(node[part])
        found = nxt
    flat: list[Any] = []
    for value in found:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _one_matches(value: Any, pattern: str) -> bool:
    negate = pattern.startswith("!")
    pattern = pattern.removeprefix("!")
    text = _text(value)
    for op in ("<=", ">=", "<", ">"):
        if pattern.startswith(op) and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                bound = float(pattern[len(op) :])
            except ValueError:
                return False
            result = {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]
            return result != negate
    regex = "^" + ".*".join(re.escape(piece) for piece in pattern.split("*")) + "$"
    return (re.match(regex, text, re.IGNORECASE) is not None) != negate


def matches(record: Json, dotted: str, query: str) -> bool:
    """A record matches `field=query` when one of its values there matches one `|` alternative
    (a negated query must hold for all of them)."""
    values = values_of(record, dotted)
    alternatives = query.split("|")
    if query.startswith("!"):
        return all(all(_one_matches(v, alt) for alt in alternatives) for v in values)
    return any(_one_matches(v, alt) for v in values for alt in alternatives)


def project(record: Json, fields: Sequence[str], keys: Sequence[str]) -> Json:
    """The parts of `record` named by `fields` (dotted) plus its `keys` and `_links`."""
    if any(f in ("*", "**") for f in fields):
        return copy.deepcopy(record)
    out: Json = {}
    for path in [*keys, *fields, "_links"]:
        _copy_path(record, out, path.split("."))
    return out


def _copy_path(src: Any, dst: Json, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if not isinstance(src, dict) or head not in src:
        return
    value = src[head]
    if not rest or not isinstance(value, (dict, list)):
        dst[head] = copy.deepcopy(value)
        return
    if isinstance(value, list):
        existing = dst.get(head)
        items: list[Any] = existing if isinstance(existing, list) else [{} for _ in value]
        for item, target in zip(value, items, strict=True):
            if isinstance(item, dict) and isinstance(target, dict):
                _copy_path(item, target, rest)
        dst[head] = items
    else:
        node = dst.setdefault(head, {})
        if isinstance(node, dict):
            _copy_path(value, node, rest)


def field_list(query: dict[str, str], schema_cls: type[Schema]) -> list[str]:
    """The `fields=` list, each checked against the schema (262197 naming `fields`, as ONTAP)."""
    raw = query.get("fields", "")
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    for field in fields:
        if field not in ("*", "**") and not gettable_path(schema_cls, field):
            raise errors.bad(
                errors.INVALID_VALUE,
                f'The value "{field}" is invalid for field "fields" (<field,...>)',
                "fields",
            )
    return fields


def filters(query: dict[str, str], schema_cls: type[Schema], allowed: frozenset[str]) -> dict[str, str]:
    """The field filters of a query; anything that is neither a control parameter, nor one the
    endpoint takes (`allowed`), nor a gettable field is an unexpected argument."""
    out: dict[str, str] = {}
    for key, value in query.items():
        if key in CONTROL or key in allowed:
            continue
        if not gettable_path(schema_cls, key):
            raise errors.bad(errors.UNEXPECTED_ARGUMENT, f'Unexpected argument "{key}".', key)
        if not gettable_path(schema_cls, key, leaf=True):
            raise errors.bad(
                errors.INVALID_VALUE, f'Field "{key}" is an object: query one of its fields.', key
            )
        out[key] = value
    return out


def collection(
    path: str,
    query: dict[str, str],
    records: list[Json],
    schema_cls: type[Schema],
    keys: Sequence[str],
    sort_key: Callable[[Json], str],
    page_size: int | None,
    allowed: frozenset[str] = frozenset(),
) -> Json:
    """The answer to a collection GET over full `records`: filtered, ordered, one page of
    them projected to `fields=`, and `_links.next` when more follow."""
    wanted = field_list(query, schema_cls)
    wanted_filters = filters(query, schema_cls, allowed)
    chosen = [r for r in records if all(matches(r, k, v) for k, v in wanted_filters.items())]
    chosen.sort(key=sort_key)
    order = query.get("order_by", "").strip()
    if order:
        name, _, direction = order.partition(" ")
        if not gettable_path(schema_cls, name):
            raise errors.bad(
                errors.INVALID_VALUE, f'The value "{order}" is invalid for field "order_by".', "order_by"
            )
        chosen.sort(key=lambda r: [_text(v) for v in values_of(r, name)], reverse=direction.strip() == "desc")
    start = query.get("start.key")
    if start is not None:
        chosen = [r for r in chosen if sort_key(r) >= start] if not order else chosen[int(start or 0) :]
    limit = _limit(query, page_size)
    page, rest = (chosen[:limit], chosen[limit:]) if limit is not None else (chosen, [])
    body: Json = {"records": [project(r, wanted, keys) for r in page], "num_records": len(page)}
    links: Json = {"self": {"href": _href(path, query)}}
    if rest:
        nxt = dict(query)
        nxt["start.key"] = sort_key(rest[0]) if not order else str(int(start or 0) + len(page))
        nxt["max_records"] = str(limit)
        links["next"] = {"href": _href(path, nxt)}
    body["_links"] = links
    return body


def _limit(query: dict[str, str], page_size: int | None) -> int | None:
    raw = query.get("max_records")
    limit: int | None = None
    if raw not in (None, "", "None"):
        try:
            limit = int(str(raw))
        except ValueError:
            raise errors.bad(
                errors.INVALID_VALUE, f'The value "{raw}" is invalid for field "max_records".', "max_records"
            ) from None
        if limit < 1:
            raise errors.bad(errors.INVALID_VALUE, "max_records must be at least 1.", "max_records")
    if page_size is not None:
        limit = page_size if limit is None else min(limit, page_size)
    return limit


def _href(path: str, query: dict[str, str]) -> str:
    return path + ("?" + urllib.parse.urlencode(query) if query else "")
