"""Initiator groups on both sides: the InitiatorGroup object users see, and the storage
server's igroup that holds exactly the initiators the hypervisor reports (or, for a node that
logs in itself, the initiators the operator accepted for that node)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from lunbridge.api import INITIATOR_GROUP_PLURAL
from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.hypervisor.base import Host, Initiator, Scope
from lunbridge.models import InitiatorGroup as InitiatorGroupObject
from lunbridge.models import InitiatorGroupSpec, InitiatorRow, ObjectMeta
from lunbridge.models.initiatorgroup import MANAGED_LABEL, MANAGED_VALUE
from lunbridge.san import Transport
from lunbridge.storage.base import DEFAULT_OS_TYPE, InitiatorGroup, Mapping, OsType, StorageBackend
from lunbridge_operator.kube import Kube

# an InitiatorGroup's body (metadata and spec) as kopf's watch last saw it, or None
Known = Callable[[str], dict[str, Any] | None]


async def ensure_storage_igroup(
    storage: StorageBackend,
    name: str,
    transport: Transport,
    addresses: list[str],
    os_type: OsType = DEFAULT_OS_TYPE,
    *,
    remove: bool = True,
) -> InitiatorGroup:
    """The storage igroup `name` holding exactly `addresses` (created, or corrected); with
    `remove` False, holding at least them (others it holds are left)."""
    try:
        current = await storage.get_igroup(name)
    except NotFound:
        try:
            return await storage.create_igroup(name, transport, addresses, os_type)
        except AlreadyExists:  # made concurrently by another reconcile
            current = await storage.get_igroup(name)
    wanted = set(addresses)
    have = set(current.initiators)
    if wanted - have:
        current = await storage.add_initiators(name, sorted(wanted - have))
    if remove and have - wanted:
        current = await storage.remove_initiators(name, sorted(have - wanted))
    if current.os_type != os_type:
        current = await storage.create_igroup(name, transport, list(current.initiators), os_type)
    return current


async def map_keeping_id(storage: StorageBackend, lun: str, igroup: str, lun_id: int | None) -> Mapping:
    """Map `lun` to `igroup` as LUN `lun_id` (the id it has in the igroup it moves from), or as
    the lowest free id when there is none or it is taken there (compare the result's id).

    An RDM names its LUN by the id as well as by the NAA, so a VM moves between the hosts of
    two igroups (vMotion, or a cold migration to a host outside the old igroup) only if the LUN
    has the same id in both (vSphere's rule for RDMs: one LUN id on every host)."""
    if lun_id is None:
        return await storage.map_lun(lun, igroup)
    try:
        return await storage.map_lun(lun, igroup, lun_id)
    except (Conflict, AlreadyExists):  # taken by another LUN, or mapped there as another id
        return await storage.map_lun(lun, igroup)


def addresses(initiators: list[Initiator], transport: Transport) -> list[str]:
    return sorted({i.address for i in initiators if i.transport is transport})


def initiator_rows(initiators: list[Initiator], transport: Transport) -> list[InitiatorRow]:
    return [
        InitiatorRow(
            host=i.host, adapter=i.adapter, protocol=i.transport, address=i.address, node_name=i.node_name
        )
        for i in sorted(initiators, key=lambda i: (i.host, i.adapter, i.address))
        if i.transport is transport
    ]


async def _ensure_object(
    kube: Kube, name: str, spec: InitiatorGroupSpec, known: Known | None = None
) -> InitiatorGroupObject:
    """InitiatorGroup `name` as it is (as kopf's watch last saw it, when `known` has it: no
    read), or made managed with `spec` when nobody has made it."""
    seen = known(name) if known is not None else None
    if seen is not None:
        with contextlib.suppress(InvalidArgument):  # then read it, to say what is wrong
            return InitiatorGroupObject.from_dict(seen)
    try:
        return InitiatorGroupObject.from_dict(await kube.get(INITIATOR_GROUP_PLURAL, name))
    except NotFound:
        pass
    group = InitiatorGroupObject(
        metadata=ObjectMeta(name=name, labels={MANAGED_LABEL: MANAGED_VALUE}), spec=spec
    )
    with contextlib.suppress(AlreadyExists):
        await kube.create(INITIATOR_GROUP_PLURAL, group.body())
    return group


async def ensure_igroup_object(
    kube: Kube, name: str, host: Host, scope: Scope, transport: Transport, known: Known | None = None
) -> InitiatorGroupObject:
    """The InitiatorGroup object of a host (or its cluster), made if nobody has. One a user
    made (`managed` False) is left as written."""
    spec = InitiatorGroupSpec(hosts=[host.name], protocol=transport, scope=scope, os_type=OsType.VMWARE)
    return await _ensure_object(kube, name, spec, known)


async def ensure_node_igroup_object(
    kube: Kube, name: str, node_name: str, transport: Transport
) -> InitiatorGroupObject:
    """The InitiatorGroup object of a node that logs in itself (`spec.nodeNames`: that node,
    OS type linux), made if nobody has. One a user made is left as written."""
    spec = InitiatorGroupSpec(
        node_names=[node_name], protocol=transport, scope=Scope.HOST, os_type=OsType.LINUX
    )
    return await _ensure_object(kube, name, spec)
