"""What the typed models write is what the CRDs declare: every key a model can write (at any
depth) is a property of the CRD's schema, of a matching type, and every enum value a model can
write is allowed there. A key the CRD lacks would be pruned by the API server, and the reader
would never see it."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from lunbridge.models import (
    DiskGroupSnapshotSpec,
    DiskGroupSnapshotStatus,
    DiskRestoreSpec,
    DiskRestoreStatus,
    DiskSnapshotSpec,
    DiskSnapshotStatus,
    DiskVerificationSpec,
    DiskVerificationStatus,
    InitiatorGroupSpec,
    InitiatorGroupStatus,
    LunbridgeNodeSpec,
    LunbridgeNodeStatus,
    VirtualDiskSpec,
    VirtualDiskStatus,
)
from tests.lab.paths import REPO_DIR

JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


def crd_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO_DIR / "crds" / file).read_text())
    [version] = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _args(annotation: Any) -> list[Any]:
    """The non-None members of an Optional/Union annotation (or the annotation itself)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def mismatches(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    """Every way `model` can write something `schema` does not declare."""
    found: list[str] = []
    properties = schema.get("properties", {})
    for name, info in model.model_fields.items():
        key = info.alias or name
        where = f"{path}.{key}"
        if key not in properties:
            found.append(f"{where}: the CRD has no such property")
            continue
        found += _check(info.annotation, properties[key], where)
    return found


def _check(annotation: Any, schema: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    for kind in _args(annotation):
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if schema.get("type") != "object":
                found.append(f"{where}: the model writes an object, the CRD says {schema.get('type')}")
            else:
                found += mismatches(kind, schema, where)
        elif origin is list:
            if schema.get("type") != "array":
                found.append(f"{where}: the model writes a list, the CRD says {schema.get('type')}")
            else:
                found += _check(typing.get_args(kind)[0], schema.get("items", {}), f"{where}[]")
        elif origin is dict:
            extra = schema.get("additionalProperties")
            if schema.get("type") != "object" or not isinstance(extra, dict):
                found.append(f"{where}: the model writes a map, the CRD declares no additionalProperties")
            else:
                found += _check(typing.get_args(kind)[1], extra, f"{where}{{}}")
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            allowed = schema.get("enum")
            values = {member.value for member in kind}
            if schema.get("type") != "string":
                found.append(f"{where}: the model writes a string, the CRD says {schema.get('type')}")
            elif allowed is not None and not values <= set(allowed):
                found.append(f"{where}: the model may write {sorted(values - set(allowed))}, not in the enum")
        elif kind in JSON_TYPES:
            if schema.get("x-kubernetes-int-or-string") and kind in (int, str):
                continue
            if schema.get("type") != JSON_TYPES[kind]:
                said = schema.get("type")
                found.append(f"{where}: the model writes {JSON_TYPES[kind]}, the CRD says {said}")
        else:
            found.append(f"{where}: the test does not know the type {kind!r}")
    return found


@pytest.mark.parametrize(
    ("file", "part", "model"),
    [
        ("virtualdisks.lunbridge.io.yaml", "spec", VirtualDiskSpec),
        ("virtualdisks.lunbridge.io.yaml", "status", VirtualDiskStatus),
        ("initiatorgroups.lunbridge.io.yaml", "spec", InitiatorGroupSpec),
        ("initiatorgroups.lunbridge.io.yaml", "status", InitiatorGroupStatus),
        ("disksnapshots.lunbridge.io.yaml", "spec", DiskSnapshotSpec),
        ("disksnapshots.lunbridge.io.yaml", "status", DiskSnapshotStatus),
        ("diskrestores.lunbridge.io.yaml", "spec", DiskRestoreSpec),
        ("diskgroupsnapshots.lunbridge.io.yaml", "spec", DiskGroupSnapshotSpec),
        ("diskgroupsnapshots.lunbridge.io.yaml", "status", DiskGroupSnapshotStatus),
        ("diskrestores.lunbridge.io.yaml", "status", DiskRestoreStatus),
        ("diskverifications.lunbridge.io.yaml", "spec", DiskVerificationSpec),
        ("diskverifications.lunbridge.io.yaml", "status", DiskVerificationStatus),
        ("lunbridgenodes.lunbridge.io.yaml", "spec", LunbridgeNodeSpec),
        ("lunbridgenodes.lunbridge.io.yaml", "status", LunbridgeNodeStatus),
    ],
)
def test_every_key_a_model_writes_is_in_its_crd(file: str, part: str, model: type[BaseModel]) -> None:
    assert mismatches(model, crd_schema(file)["properties"][part], part) == []


def test_the_check_finds_a_key_the_crd_lacks() -> None:
    class Renamed(BaseModel):
        naa_id: str | None = None

    schema = crd_schema("virtualdisks.lunbridge.io.yaml")["properties"]["status"]["properties"]["lun"]
    assert mismatches(Renamed, schema, "status.lun") == ["status.lun.naa_id: the CRD has no such property"]


def test_the_check_finds_a_type_the_crd_does_not_take() -> None:
    class Widened(BaseModel):
        id: str | None = None

    schema = crd_schema("virtualdisks.lunbridge.io.yaml")["properties"]["status"]["properties"]["lun"]
    assert mismatches(Widened, schema, "status.lun") == [
        "status.lun.id: the model writes string, the CRD says integer"
    ]
