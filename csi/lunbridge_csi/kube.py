"""The few Kubernetes API calls the controller service makes: VirtualDisks (read, list, create,
merge-patch the spec, delete), DiskSnapshots (read, list, create, delete) and Nodes (find one
by its providerID or name, read one's providerID).

The official client is synchronous, so each call runs in a worker thread; API errors come back
as `lunbridge.errors`, which `lunbridge_csi.errors` turns into gRPC codes. VirtualDisks come
and go as the typed `lunbridge.models.VirtualDisk`.
"""

from __future__ import annotations

from typing import Any, Protocol

from lunbridge.api import (
    DISK_GROUP_SNAPSHOT_PLURAL,
    DISK_SNAPSHOT_PLURAL,
    GROUP,
    VERSION,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.errors import NotFound
from lunbridge.kubeapi import KubeApi
from lunbridge.models import DiskGroupSnapshot, DiskSnapshot, VirtualDisk


class VirtualDisks(Protocol):
    """What the controller needs from the API server (a fake implements it in unit tests)."""

    async def get(self, name: str) -> VirtualDisk: ...
    async def list(self) -> list[VirtualDisk]: ...
    async def create(self, disk: VirtualDisk) -> VirtualDisk: ...
    async def patch_spec(self, name: str, patch: dict[str, Any]) -> VirtualDisk: ...
    async def delete(self, name: str) -> None: ...
    async def node_by_id(self, node_id: str) -> str: ...
    async def node_provider_id(self, name: str) -> str | None: ...
    async def ping(self) -> None: ...


class DiskSnapshots(Protocol):
    """The DiskSnapshot calls of the controller's snapshot RPCs."""

    async def get_snapshot(self, name: str) -> DiskSnapshot: ...
    async def list_snapshots(self, label_selector: str | None = None) -> list[DiskSnapshot]: ...
    async def create_snapshot(self, snapshot: DiskSnapshot) -> DiskSnapshot: ...
    async def delete_snapshot(self, name: str) -> None: ...


class DiskGroupSnapshots(Protocol):
    """The DiskGroupSnapshot calls of the GroupController service."""

    async def get_group_snapshot(self, name: str) -> DiskGroupSnapshot: ...
    async def create_group_snapshot(self, group: DiskGroupSnapshot) -> DiskGroupSnapshot: ...
    async def delete_group_snapshot(self, name: str) -> None: ...


class ControllerKube(VirtualDisks, DiskSnapshots, DiskGroupSnapshots, Protocol):
    """Everything the controller and group controller services ask of the API server."""


class Kube(KubeApi):
    """VirtualDisks, DiskSnapshots and Nodes through the official client (in-cluster config,
    else kubeconfig)."""

    async def get_snapshot(self, name: str) -> DiskSnapshot:
        found: dict[str, Any] = await self._call(
            f"read DiskSnapshot {name}",
            lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, DISK_SNAPSHOT_PLURAL, name),
        )
        return DiskSnapshot.from_dict(found)

    async def list_snapshots(self, label_selector: str | None = None) -> list[DiskSnapshot]:
        """Every DiskSnapshot, or those `label_selector` (`key=value`) selects."""
        selecting = {"label_selector": label_selector} if label_selector else {}
        found: dict[str, Any] = await self._call(
            f"list DiskSnapshots ({label_selector})" if label_selector else "list DiskSnapshots",
            lambda: self._custom.list_cluster_custom_object(
                GROUP, VERSION, DISK_SNAPSHOT_PLURAL, **selecting
            ),
        )
        return [DiskSnapshot.from_dict(item) for item in found.get("items", [])]

    async def create_snapshot(self, snapshot: DiskSnapshot) -> DiskSnapshot:
        body = snapshot.body()
        created: dict[str, Any] = await self._call(
            f"create DiskSnapshot {snapshot.name}",
            lambda: self._custom.create_cluster_custom_object(GROUP, VERSION, DISK_SNAPSHOT_PLURAL, body),
        )
        return DiskSnapshot.from_dict(created)

    async def delete_snapshot(self, name: str) -> None:
        await self._call(
            f"delete DiskSnapshot {name}",
            lambda: self._custom.delete_cluster_custom_object(GROUP, VERSION, DISK_SNAPSHOT_PLURAL, name),
        )

    async def get_group_snapshot(self, name: str) -> DiskGroupSnapshot:
        found: dict[str, Any] = await self._call(
            f"read DiskGroupSnapshot {name}",
            lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, DISK_GROUP_SNAPSHOT_PLURAL, name),
        )
        return DiskGroupSnapshot.from_dict(found)

    async def create_group_snapshot(self, group: DiskGroupSnapshot) -> DiskGroupSnapshot:
        body = group.body()
        created: dict[str, Any] = await self._call(
            f"create DiskGroupSnapshot {group.name}",
            lambda: self._custom.create_cluster_custom_object(
                GROUP, VERSION, DISK_GROUP_SNAPSHOT_PLURAL, body
            ),
        )
        return DiskGroupSnapshot.from_dict(created)

    async def delete_group_snapshot(self, name: str) -> None:
        await self._call(
            f"delete DiskGroupSnapshot {name}",
            lambda: self._custom.delete_cluster_custom_object(
                GROUP, VERSION, DISK_GROUP_SNAPSHOT_PLURAL, name
            ),
        )

    async def get(self, name: str) -> VirtualDisk:
        found: dict[str, Any] = await self._call(
            f"read VirtualDisk {name}",
            lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, name),
        )
        return VirtualDisk.from_dict(found)

    async def list(self) -> list[VirtualDisk]:
        found: dict[str, Any] = await self._call(
            "list VirtualDisks",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL),
        )
        return [VirtualDisk.from_dict(item) for item in found.get("items", [])]

    async def create(self, disk: VirtualDisk) -> VirtualDisk:
        body = disk.body()
        created: dict[str, Any] = await self._call(
            f"create VirtualDisk {disk.name}",
            lambda: self._custom.create_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, body),
        )
        return VirtualDisk.from_dict(created)

    async def patch_spec(self, name: str, patch: dict[str, Any]) -> VirtualDisk:
        """A JSON merge patch of spec (`VirtualDiskSpec.patch(...)`; a None value removes the field)."""
        patched: dict[str, Any] = await self._call(
            f"patch VirtualDisk {name}",
            lambda: self._custom.patch_cluster_custom_object(
                GROUP, VERSION, VIRTUAL_DISK_PLURAL, name, {"spec": patch}
            ),
        )
        return VirtualDisk.from_dict(patched)

    async def delete(self, name: str) -> None:
        await self._call(
            f"delete VirtualDisk {name}",
            lambda: self._custom.delete_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, name),
        )

    async def node_by_id(self, node_id: str) -> str:
        """The name of the Node a CSI node_id names: the Node whose spec.providerID it is (a
        guest the hypervisor attaches disks to), else the Node of that name (a node that logs in
        with its own initiators gives its Node name). NotFound when neither exists."""
        nodes: Any = await self._call("list Nodes", lambda: self._core.list_node())
        for node in nodes.items:
            if node.spec is not None and node.spec.provider_id == node_id:
                name: str = node.metadata.name
                return name
        if any(node.metadata.name == node_id for node in nodes.items):
            return node_id
        raise NotFound(f"no Node has spec.providerID {node_id} or is named {node_id}")

    async def node_provider_id(self, name: str) -> str | None:
        """The spec.providerID of Node `name` (None if it has none); NotFound if there is no such Node."""
        node: Any = await self._call(f"read Node {name}", lambda: self._core.read_node(name))
        provider_id: str | None = node.spec.provider_id if node.spec is not None else None
        return provider_id

    async def ping(self) -> None:
        """Raise Unavailable unless the API server answers (and serves VirtualDisks)."""
        await self._call(
            "list VirtualDisks",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, limit=1),
        )
