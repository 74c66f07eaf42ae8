"""The few Kubernetes API calls the controller service makes: VirtualDisks (read, list, create,
merge-patch the spec, delete), DiskSnapshots (read, list, create, delete), a watch of one
object of any of these kinds (the waits on the operator's status: `lunbridge_csi.waiting`) and
Nodes (find one by its providerID or name, from an index a watch keeps: `lunbridge_csi.nodes`;
read one's providerID).

The official client is synchronous, so each call runs in a worker thread and each watch in a
thread of its own (`lunbridge_csi.kube_watch`); API errors come back as `lunbridge.errors`,
which `lunbridge_csi.errors` turns into gRPC codes. VirtualDisks come and go as the typed
`lunbridge.models.VirtualDisk`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from lunbridge.api import (
    DISK_GROUP_SNAPSHOT_PLURAL,
    DISK_SNAPSHOT_PLURAL,
    GROUP,
    VERSION,
    VIRTUAL_DISK_PLURAL,
)
from lunbridge.errors import LunbridgeError
from lunbridge.kubeapi import KubeApi
from lunbridge.models import DiskGroupSnapshot, DiskSnapshot, VirtualDisk
from lunbridge_csi import kube_watch
from lunbridge_csi.feed import Feed, Following
from lunbridge_csi.nodes import NodeIndex

log = logging.getLogger(__name__)
NODE_WATCH_SECONDS = 240  # the server ends the Node watch this often; the index watches again
FEED_WATCH_SECONDS = 240  # and the VirtualDisk feed's watch
Nodes = list[dict[str, Any]]


class Watches(Protocol):
    """A watch of one lunbridge object, for the bounded waits on its status; and the shared feed
    a wait registers with before its write (`lunbridge_csi.feed`)."""

    def changes(
        self, plural: str, name: str, since: str | None, seconds: float
    ) -> AsyncGenerator[dict[str, Any] | None, None]: ...

    def following(self, plural: str, name: str) -> AbstractContextManager[Following]: ...


class VirtualDisks(Watches, Protocol):
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

    def __init__(self, api_client: Any | None = None) -> None:
        super().__init__(api_client)
        self.nodes = NodeIndex(self._list_nodes, self._watch_nodes)
        self.disk_feed = Feed("VirtualDisk", self._disks_version, self._watch_disks)

    def following(self, plural: str, name: str) -> AbstractContextManager[Following]:
        """Register a wait on object `name` of `plural` with the shared feed, before its write
        (`lunbridge_csi.feed`). VirtualDisks have a feed; another kind's wait watches alone."""
        if plural == VIRTUAL_DISK_PLURAL:
            return self.disk_feed.following(name)
        return contextlib.nullcontext(Following(name, usable=False))

    async def _disks_version(self) -> str:
        found: dict[str, Any] = await self._call(
            "list VirtualDisks",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, limit=1),
        )
        return str((found.get("metadata") or {}).get("resourceVersion", ""))

    def _watch_disks(self, since: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return kube_watch.events(
            self._watch_custom.list_cluster_custom_object, GROUP, VERSION, VIRTUAL_DISK_PLURAL,
            what="watch VirtualDisks", since=since, seconds=FEED_WATCH_SECONDS,
            allow_watch_bookmarks=True,
        )  # fmt: skip

    async def changes(
        self, plural: str, name: str, since: str | None, seconds: float
    ) -> AsyncGenerator[dict[str, Any] | None, None]:
        """Each later version of lunbridge object `name` of `plural` (cluster-scoped), as the
        API server sends it (a camelCase dict), None when it is deleted; from resourceVersion
        `since` (None: its current version first, if it exists). A watch with the field
        selector metadata.name, which the server ends after `seconds`. It never raises for the
        watch itself: an expired resourceVersion, a refused or dropped watch end it (logged),
        and the caller reads the object again."""
        what = f"watch {plural} {name}"
        stream = kube_watch.events(
            self._watch_custom.list_cluster_custom_object, GROUP, VERSION, plural, what=what, since=since,
            seconds=seconds, field_selector=f"metadata.name={name}",
        )  # fmt: skip
        try:
            async for kind, body in stream:
                if kind == "DELETED":
                    yield None
                elif kind in ("ADDED", "MODIFIED"):
                    yield body
        except kube_watch.Expired:
            log.debug("%s: resourceVersion %s expired", what, since)
        except LunbridgeError as exc:
            log.warning("%s: %s; reading it again", what, exc)
        finally:
            await stream.aclose()

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
        with its own initiators gives its Node name). NotFound when neither exists. From the
        Node index (`lunbridge_csi.nodes`): a LIST only when it misses or its watch stopped."""
        return await self.nodes.node_by_id(node_id)

    async def _list_nodes(self) -> tuple[Nodes, str]:
        """Every Node as JSON (not decoded into the client's models) and the list's resourceVersion."""
        data: bytes = await self._call(
            "list Nodes", lambda: self._core.list_node(_preload_content=False).data
        )  # read in the worker thread too: an unread response reads its body on first use
        found: dict[str, Any] = json.loads(data)
        return list(found.get("items") or []), str((found.get("metadata") or {}).get("resourceVersion", ""))

    def _watch_nodes(self, since: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return kube_watch.events(
            self._watch_core.list_node, what="watch Nodes", since=since, seconds=NODE_WATCH_SECONDS,
            allow_watch_bookmarks=True,
        )  # fmt: skip

    async def node_provider_id(self, name: str) -> str | None:
        """The spec.providerID of Node `name` (None if it has none); NotFound if there is no such Node."""
        node: Any = await self._call(f"read Node {name}", lambda: self._core.read_node(name))
        provider_id: str | None = node.spec.provider_id if node.spec is not None else None
        return provider_id

    async def ping(self) -> None:
        """Raise Unavailable unless the API server answers (and serves VirtualDisks). Starts the
        VirtualDisk feed (the sidecars probe before their first call), which then keeps running."""
        await self._call(
            "list VirtualDisks",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, VIRTUAL_DISK_PLURAL, limit=1),
        )
        self.disk_feed.start()
