"""Initiator groups on both sides: the InitiatorGroup object users see, and the storage
server's igroup that holds exactly the initiators the hypervisor reports."""

from __future__ import annotations

import contextlib
from typing import Any

from lunbridge.api import API_VERSION, INITIATOR_GROUP_KIND, INITIATOR_GROUP_PLURAL
from lunbridge.errors import AlreadyExists, NotFound
from lunbridge.hypervisor.base import Host, Initiator, Scope
from lunbridge.san import Transport
from lunbridge.storage.base import InitiatorGroup, StorageBackend
from lunbridge_operator.kube import Kube

MANAGED_LABEL = "lunbridge.io/managed-by"
MANAGED_VALUE = "lunbridge-operator"


async def ensure_storage_igroup(
    storage: StorageBackend, name: str, transport: Transport, addresses: list[str]
) -> InitiatorGroup:
    """The storage igroup `name` holding exactly `addresses` (created, or corrected)."""
    try:
        current = await storage.get_igroup(name)
    except NotFound:
        try:
            return await storage.create_igroup(name, transport, addresses)
        except AlreadyExists:  # made concurrently by another reconcile
            current = await storage.get_igroup(name)
    wanted = set(addresses)
    have = set(current.initiators)
    if wanted - have:
        current = await storage.add_initiators(name, sorted(wanted - have))
    if have - wanted:
        current = await storage.remove_initiators(name, sorted(have - wanted))
    return current


def addresses(initiators: list[Initiator], transport: Transport) -> list[str]:
    return sorted({i.address for i in initiators if i.transport is transport})


def initiators_status(initiators: list[Initiator], transport: Transport) -> list[dict[str, Any]]:
    rows = []
    for i in sorted(initiators, key=lambda i: (i.host, i.adapter, i.address)):
        if i.transport is not transport:
            continue
        row = {"host": i.host, "adapter": i.adapter, "protocol": i.transport.value, "address": i.address}
        if i.node_name:
            row["nodeName"] = i.node_name
        rows.append(row)
    return rows


async def ensure_igroup_object(kube: Kube, name: str, host: Host, scope: Scope, transport: Transport) -> bool:
    """Make the InitiatorGroup object for a host (or its cluster) if nobody has. True when the
    operator manages it; False for one a user made, which is left as written."""
    try:
        found = await kube.get(INITIATOR_GROUP_PLURAL, name)
    except NotFound:
        pass
    else:
        labels = (found.get("metadata") or {}).get("labels") or {}
        return bool(labels.get(MANAGED_LABEL) == MANAGED_VALUE)
    body = {
        "apiVersion": API_VERSION,
        "kind": INITIATOR_GROUP_KIND,
        "metadata": {"name": name, "labels": {MANAGED_LABEL: MANAGED_VALUE}},
        "spec": {"hosts": [host.name], "protocol": transport.value, "scope": scope.value, "osType": "vmware"},
    }
    with contextlib.suppress(AlreadyExists):
        await kube.create(INITIATOR_GROUP_PLURAL, body)
    return True
