"""The few Kubernetes API calls the controller service makes: VirtualDisks (read, list, create,
merge-patch the spec, delete) and Nodes (find one by its providerID).

The official client is synchronous, so each call runs in a worker thread; API errors come back
as `lunbridge.errors`, which `lunbridge_csi.errors` turns into gRPC codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from lunbridge.api import GROUP, VERSION, VIRTUAL_DISK_PLURAL
from lunbridge.errors import (
    AlreadyExists,
    InvalidArgument,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)

T = TypeVar("T")
client: Any = kubernetes.client
config: Any = kubernetes.config


class VirtualDisks(Protocol):
    """What the controller needs from the API server (a fake implements it in unit tests)."""

    async def get(self, name: str) -> dict[str, Any]: ...
    async def list(self) -> list[dict[str, Any]]: ...
    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]: ...
    async def delete(self, name: str) -> None: ...
    async def node_by_provider_id(self, provider_id: str) -> str: ...
    async def ping(self) -> None: ...


def translate(what: str, exc: Exception) -> LunbridgeError:
    if isinstance(exc, ApiException):
        if exc.status == 404:
            return NotFound(f"{what}: not found")
        if exc.status == 409:
            return AlreadyExists(f"{what}: already exists ({exc.reason})")
        if exc.status in (400, 422):
            return InvalidArgument(f"{what}: the API server refused it: {exc.body}")
        if exc.status in (401, 403):
            return Unauthenticated(f"{what}: the API server refused the credentials ({exc.status})")
        return Unavailable(f"{what}: the Kubernetes API answered {exc.status} {exc.reason}")
    return Unavailable(f"{what}: the Kubernetes API cannot be reached ({exc})")


class Kube:
    """VirtualDisks and Nodes through the official client (in-cluster config, else kubeconfig)."""

    def __init__(self, api_client: Any | None = None) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self._core: Any = client.CoreV1Api(api_client)
        self._custom: Any = client.CustomObjectsApi(api_client)

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(what, exc) from exc

    async def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._call(
            f"read VirtualDisk {name}",
            lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, name),
        )
        return found

    async def list(self) -> list[dict[str, Any]]:
        found: dict[str, Any] = await self._call(
            "list VirtualDisks",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL),
        )
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._call(
            f"create VirtualDisk {body['metadata']['name']}",
            lambda: self._custom.create_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, body),
        )
        return created

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of spec (a None value removes the field)."""
        patched: dict[str, Any] = await self._call(
            f"patch VirtualDisk {name}",
            lambda: self._custom.patch_cluster_custom_object(
                GROUP, VERSION, VIRTUAL_DISK_PLURAL, name, {"spec": spec}
            ),
        )
        return patched

    async def delete(self, name: str) -> None:
        await self._call(
            f"delete VirtualDisk {name}",
            lambda: self._custom.delete_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, name),
        )

    async def node_by_provider_id(self, provider_id: str) -> str:
        """The name of the Node whose spec.providerID is `provider_id`."""
        nodes: Any = await self._call("list Nodes", lambda: self._core.list_node())
        for node in nodes.items:
            if node.spec is not None and node.spec.provider_id == provider_id:
                name: str = node.metadata.name
                return name
        raise NotFound(f"no Node has spec.providerID {provider_id}")

    async def ping(self) -> None:
        """Raise Unavailable unless the API server answers (and serves VirtualDisks)."""
        await self._call(
            "list VirtualDisks",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, limit=1),
        )
