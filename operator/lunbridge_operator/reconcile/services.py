"""What the reconcile steps work with: the two layers, the Kubernetes API, the settings, and
a place to tell the user (Events). The handlers build it; the steps never import kopf."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lunbridge.hypervisor.base import Host, Hypervisor, Scope
from lunbridge.san import Transport
from lunbridge.storage.factory import Backends
from lunbridge_operator.kube import Kube


class Events(Protocol):
    def __call__(self, reason: str, message: str, *, warning: bool = False) -> None: ...


@dataclass
class Services:
    hypervisor: Hypervisor
    backends: Backends
    kube: Kube
    transport: Transport
    default_scope: Scope | None
    portals: dict[str, str]  # backend name -> its iSCSI portal, for the hosts' send-target discovery
    # how often Ready disks are checked again; their checks share hosts' LUN listings half that old
    resync_seconds: float = 60.0
    # called after each recorded step; tests use it to crash the operator at a chosen step
    after_step: Callable[[str, str], Awaitable[None]] | None = None
    # InitiatorGroup `name` as kopf's watch last saw it (metadata and spec), None when it has
    # not; without it (tests) the group is read from the API
    known_igroup: Callable[[str], dict[str, Any] | None] | None = None
    # Node `name`'s spec.providerID as kopf's watch last saw it ("" or None: read the Node)
    known_provider_id: Callable[[str], str | None] | None = None
    # LunbridgeNode `name`'s spec.mode as kopf's watch last saw it (None: read the object)
    known_node_mode: Callable[[str], str | None] | None = None

    async def provider_id(self, node_name: str) -> str:
        """Node `node_name`'s spec.providerID ("" when it has none): as kopf's watch last saw
        it, else read from the API (NotFound when the Node does not exist)."""
        seen = self.known_provider_id(node_name) if self.known_provider_id is not None else None
        if seen:
            return seen
        node = await self.kube.node(node_name)
        return str((node.get("spec") or {}).get("provider_id") or "")

    def scope_for(self, host: Host, wanted: str | None) -> Scope:
        if wanted:
            return Scope(wanted)
        if self.default_scope is not None:
            return self.default_scope
        return Scope.CLUSTER if host.cluster else Scope.HOST
