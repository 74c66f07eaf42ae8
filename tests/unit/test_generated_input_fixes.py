"""Faults the generated-input tests (tests/integration/generated) found, each held here on the
fakes: a publish context with a non-ASCII digit or a number of thousands of digits, and errors
that did not name the field to fix (a bad naa or guestAddress, an unknown pool or snapshot, an
InitiatorGroup whose host or backend does not exist: no Ready condition at all)."""

from __future__ import annotations

from typing import Any

import pytest

from lunbridge.api import INITIATOR_GROUP_PLURAL
from lunbridge.errors import InvalidArgument
from lunbridge.models import (
    ConditionType,
    DiskSource,
    InitiatorGroup,
    InitiatorGroupSpec,
    ObjectMeta,
    PublishContext,
)
from lunbridge.storage.base import check_name
from lunbridge_operator.reconcile import initiatorgroup as reconcile_igroup
from tests.fakes import Lab

NAA = "naa.6001405" + "0" * 25
VALID = {"mode": "hypervisor", "naa": NAA, "pciSlot": "16", "guestAddress": "0:0:1"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pciSlot", "\u00b2"),  # str.isdigit() is True, int() refuses it: was ValueError (UNKNOWN)
        ("pciSlot", "9" * 5000),  # int() refuses over 4300 digits: was ValueError (UNKNOWN)
        ("guestAddress", "0:\u00b9:1"),  # was ValueError (UNKNOWN)
        ("guestAddress", "0:1"),  # was "guest address '0:1' is not ...": no publish_context key
        ("naa", "naa.xyz"),  # was "'naa.xyz' is not an NAA id": no publish_context key
    ],
)
def test_a_bad_publish_context_value_is_refused_naming_its_key(key: str, value: str) -> None:
    with pytest.raises(InvalidArgument, match=f"publish_context {key}"):
        PublishContext.from_dict({**VALID, key: value})


def test_an_initiator_context_with_a_non_ascii_lun_id_is_refused_naming_it() -> None:
    context = {"mode": "initiator", "naa": NAA, "targetIqn": "iqn.2024-01.io.x:t", "portals": "a:3260"}
    with pytest.raises(InvalidArgument, match="publish_context lunId"):
        PublishContext.from_dict({**context, "lunId": "\u0661"})


async def test_an_unknown_pool_is_named_in_the_ready_condition() -> None:
    lab = Lab.build()
    disk = await lab.create_disk("d1", pool="nope")
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert not ready.true
    assert ready.reason == "NotFound"
    assert "spec.pool 'nope'" in ready.message


async def test_an_unknown_snapshot_is_named_in_the_ready_condition() -> None:
    lab = Lab.build()
    disk = await lab.create_disk("d1", source=DiskSource(snapshot="gen-no-such-snapshot"))
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert not ready.true
    assert "spec.source.snapshot gen-no-such-snapshot: the DiskSnapshot does not exist" in ready.message


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        (InitiatorGroupSpec(hosts=["esx-1"], backend="nope"), "InvalidArgument", "spec.backend"),
        (InitiatorGroupSpec(node_names=["gen-no-such-node"]), "NotFound", "spec.nodeNames"),
    ],
)
async def test_a_group_that_cannot_sync_says_why_in_its_ready_condition(
    spec: InitiatorGroupSpec, reason: str, words: str
) -> None:
    lab = Lab.build()
    group = InitiatorGroup(metadata=ObjectMeta(name="mine"), spec=spec)
    await lab.kube.create(INITIATOR_GROUP_PLURAL, group.body())
    stored = InitiatorGroup.from_dict(lab.kube.read(INITIATOR_GROUP_PLURAL, "mine"))
    ready = stored.status.condition(ConditionType.READY)
    assert ready is not None, stored.status
    assert not ready.true
    assert ready.reason == reason
    assert words in ready.message
    assert ready.observed_generation == stored.metadata.generation


async def test_a_group_name_the_backend_cannot_take_is_named_as_metadata_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(backend: Any, name: str, *args: Any) -> Any:
        check_name("igroup", name)  # the tgt backend's rule: 1-63 characters

    monkeypatch.setattr(reconcile_igroup, "ensure_storage_igroup", refuse)
    lab = Lab.build()
    name = "gen-ig-" + "l" * 60  # a valid object name (up to 253), too long for a tgt igroup
    group = InitiatorGroup(metadata=ObjectMeta(name=name), spec=InitiatorGroupSpec(hosts=["esx-1"]))
    await lab.kube.create(INITIATOR_GROUP_PLURAL, group.body())
    stored = InitiatorGroup.from_dict(lab.kube.read(INITIATOR_GROUP_PLURAL, name))
    ready = stored.status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.reason == "InvalidArgument"
    assert f"metadata.name {name!r}" in ready.message
