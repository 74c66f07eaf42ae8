"""The few Kubernetes API calls the reconcile steps make themselves (kopf makes the rest):
read Nodes, read and create lunbridge objects, and write status between steps so a restart
resumes where the last run stopped.

The official client is synchronous, so every call runs in a worker thread; API errors come
back as `lunbridge.errors`.
"""

from __future__ import annotations

from typing import Any

from lunbridge.api import GROUP, VERSION
from lunbridge.kubeapi import KubeApi


class Kube(KubeApi):
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
