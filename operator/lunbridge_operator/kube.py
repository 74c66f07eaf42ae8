"""The few Kubernetes API calls the reconcile steps make themselves (kopf makes the rest):
read Nodes, read and create lunbridge objects, and write status between steps so a restart
resumes where the last run stopped.

The official client is synchronous, so every call runs in a worker thread; API errors come
back as `lunbridge.errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from lunbridge.api import GROUP, VERSION
from lunbridge.errors import AlreadyExists, Conflict, LunbridgeError, NotFound, Unavailable

T = TypeVar("T")
# the client's generated signatures say `object`; treat it as untyped and type our own edges
client: Any = kubernetes.client
config: Any = kubernetes.config


def _translate(what: str, exc: Exception) -> LunbridgeError:
    if isinstance(exc, ApiException):
        if exc.status == 404:
            return NotFound(f"{what}: not found")
        if exc.status == 409:
            return AlreadyExists(f"{what}: already exists ({exc.reason})")
        if exc.status == 422:
            return Conflict(f"{what}: the API server refused it: {exc.body}")
        return Unavailable(f"{what}: the Kubernetes API answered {exc.status} {exc.reason}")
    return Unavailable(f"{what}: the Kubernetes API cannot be reached ({exc})")


class Kube:
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
            raise _translate(what, exc) from exc

    async def node(self, name: str) -> dict[str, Any]:
        found = await self._call(f"read Node {name}", lambda: self._core.read_node(name))
        result: dict[str, Any] = found.to_dict()
        return result

    async def get(self, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._call(
            f"read {plural}/{name}",
            lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, plural, name),
        )
        return found

    async def list(self, plural: str) -> list[dict[str, Any]]:
        found: dict[str, Any] = await self._call(
            f"list {plural}", lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, plural)
        )
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._call(
            f"create {plural}/{body['metadata']['name']}",
            lambda: self._custom.create_cluster_custom_object(GROUP, VERSION, plural, body),
        )
        return created

    async def patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            f"write the status of {plural}/{name}",
            lambda: self._custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, {"status": status}
            ),
        )
