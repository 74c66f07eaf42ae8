"""An in-memory Kubernetes API server for lunbridge's objects and Nodes, serving both clients
lunbridge has: the operator's `Kube` (dicts, `patch_status`) and the CSI controller's
`VirtualDisks` (typed `VirtualDisk`, `patch_spec`, `delete`). One class serves both on one store
so that what the operator writes is exactly what the CSI controller reads.

It keeps the API server rules the code relies on: objects are stored as plain JSON dicts; a
create gets a uid, generation 1 and no status (the status is a subresource); spec and status
are changed by JSON merge patch (None removes a key); generation grows only when the spec
changes, or when deletion starts; a delete of an object with finalizers only sets
deletionTimestamp, and it disappears when the last finalizer is removed. Nodes come back as
the official client's `V1Node.to_dict()` does (snake_case keys). Watchers (the fake operator)
are told of every create, spec change and deletion, as kopf's watch would tell it; the CSI
controller's `changes` is the API server's watch of one object: every version after a
resourceVersion, in order, None for a deletion (`history` keeps them all).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import itertools
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, overload

import kubernetes

from lunbridge.api import DISK_GROUP_SNAPSHOT_PLURAL, DISK_SNAPSHOT_PLURAL, VIRTUAL_DISK_PLURAL
from lunbridge.errors import AlreadyExists, NotFound
from lunbridge.models import DiskGroupSnapshot, DiskSnapshot, VirtualDisk
from lunbridge_csi.feed import Following
from lunbridge_operator.kube import Kube
from tests.fakes.faults import Faults, need

Watcher = Callable[[str, str], Awaitable[None]]  # (plural, name) of an object that changed
DELETED_AT = "2024-01-01T00:00:00Z"
Version = tuple[str, str, int, dict[str, Any] | None]  # plural, name, resourceVersion, the object


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a dict patch merges key by key (None removes); anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any], *names: str) -> dict[str, Any] | None:
    """The call's arguments by name if the call has exactly the parameters `names`, else None."""
    if len(args) > len(names) or set(kwargs) - set(names[len(args) :]):
        return None
    bound = dict(zip(names, args, strict=False)) | kwargs
    return bound if set(bound) == set(names) else None


class FakeKube(Faults, Kube):
    def __init__(self) -> None:  # no API client: nothing here leaves the process
        Faults.__init__(self)
        self.users: dict[str, list[str]] = {}  # volume handle -> the PVs/VolumeAttachments using it
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.watchers: list[Watcher] = []
        self.history: list[Version] = []  # every version of every object, in order
        self._uids = itertools.count(1)
        self._version = 0
        self._wakers: list[asyncio.Future[None]] = []
        self._drops = 0
        self.feed_live = True  # False: the shared feed is not running (every wait watches alone)
        self._following: dict[tuple[str, str], list[Following]] = {}

    # --- what tests use -------------------------------------------------------------------------
    @property
    def disks(self) -> dict[str, dict[str, Any]]:
        """The stored VirtualDisks by name, as the API server holds them."""
        return self.objects.setdefault(VIRTUAL_DISK_PLURAL, {})

    def disk(self, name: str) -> VirtualDisk:
        return VirtualDisk.from_dict(self.read(VIRTUAL_DISK_PLURAL, name))

    def read(self, plural: str, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects.get(plural, {})[name])
        except KeyError:
            raise NotFound(f"read {plural}/{name}: not found") from None

    def add_node(self, name: str, provider_id: str | None) -> None:
        client: Any = kubernetes.client
        spec = client.V1NodeSpec(provider_id=provider_id)
        self.nodes[name] = client.V1Node(metadata=client.V1ObjectMeta(name=name), spec=spec).to_dict()

    def watch(self, watcher: Watcher) -> None:
        self.watchers.append(watcher)

    def add_finalizer(self, plural: str, name: str, finalizer: str) -> None:
        meta = self._stored(plural, name)["metadata"]
        if finalizer not in meta.setdefault("finalizers", []):
            meta["finalizers"].append(finalizer)
            self._touch(meta)
            self._changed(plural, name)

    def remove_finalizer(self, plural: str, name: str, finalizer: str) -> None:
        meta = self._stored(plural, name)["metadata"]
        finalizers = [f for f in meta.get("finalizers", []) if f != finalizer]
        meta["finalizers"] = finalizers
        self._touch(meta)
        if meta.get("deletionTimestamp") and not finalizers:
            del self.objects[plural][name]
        self._changed(plural, name)

    async def delete_object(self, plural: str, name: str) -> None:
        """DELETE: gone at once without finalizers, else marked (deletionTimestamp, generation+1)."""
        self._record("delete_object", plural, name)
        await self._delete(plural, name)

    # --- helpers ----------------------------------------------------------------------------
    async def _delete(self, plural: str, name: str) -> None:
        meta = self._stored(plural, name)["metadata"]
        if meta.get("deletionTimestamp"):
            return
        if not meta.get("finalizers"):
            del self.objects[plural][name]
            self._changed(plural, name)
            return
        meta["deletionTimestamp"] = DELETED_AT
        meta["generation"] += 1
        self._touch(meta)
        self._changed(plural, name)
        await self._tell(plural, name)

    def _stored(self, plural: str, name: str) -> dict[str, Any]:
        try:
            return self.objects.get(plural, {})[name]
        except KeyError:
            raise NotFound(f"{plural}/{name}: not found") from None

    def _touch(self, meta: dict[str, Any]) -> None:
        self._version += 1
        meta["resourceVersion"] = str(self._version)

    def _changed(self, plural: str, name: str) -> None:
        """Keep the object's new version (None: deleted) for `changes`, and wake its watches."""
        stored = self.objects.get(plural, {}).get(name)
        if stored is None:
            self._version += 1
        version = int(stored["metadata"]["resourceVersion"]) if stored is not None else self._version
        self.history.append((plural, name, version, copy.deepcopy(stored)))
        self._wake()
        kind = "DELETED" if stored is None else "MODIFIED"
        body = stored or {"metadata": {"name": name, "resourceVersion": str(version)}}
        for follower in self._following.get((plural, name), []):
            follower.put(kind, copy.deepcopy(body))

    def _wake(self) -> None:
        for waker in self._wakers:
            if not waker.done():
                waker.set_result(None)
        self._wakers.clear()

    async def _tell(self, plural: str, name: str) -> None:
        for watcher in list(self.watchers):
            await watcher(plural, name)

    async def _create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        store = self.objects.setdefault(plural, {})
        if name in store:
            raise AlreadyExists(f"create {plural}/{name}: already exists (AlreadyExists)")
        stored = {k: copy.deepcopy(v) for k, v in body.items() if k != "status"}
        meta = stored["metadata"]
        meta.update(uid=str(uuid.UUID(int=next(self._uids))), generation=1)
        meta.pop("deletionTimestamp", None)
        self._touch(meta)
        store[name] = stored
        self._changed(plural, name)
        created = copy.deepcopy(stored)
        await self._tell(plural, name)
        return created

    async def _patch_spec(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        stored = self._stored(plural, name)
        spec = apply_merge_patch(stored.get("spec"), patch)
        changed = spec != stored.get("spec")
        stored["spec"] = spec
        if changed:
            stored["metadata"]["generation"] += 1
        self._touch(stored["metadata"])
        self._changed(plural, name)
        patched = copy.deepcopy(stored)
        if changed:
            await self._tell(plural, name)
        return patched

    # --- the operator's Kube and the CSI controller's VirtualDisks ---------------------------
    async def node(self, name: str) -> dict[str, Any]:
        self._record("node", name)
        try:
            return copy.deepcopy(self.nodes[name])
        except KeyError:
            raise NotFound(f"read Node {name}: not found") from None

    @overload
    async def get(self, name: str) -> VirtualDisk: ...
    @overload
    async def get(self, plural: str, name: str) -> dict[str, Any]: ...
    async def get(self, *args: Any, **kwargs: Any) -> VirtualDisk | dict[str, Any]:
        """The operator's `get(plural, name)` (the stored dict) or the CSI's `get(name)` (typed)."""
        self._record("get", *args, *kwargs.values())
        operator = _bind(args, kwargs, "plural", "name")
        if operator is not None:
            return self.read(operator["plural"], operator["name"])
        csi = _bind(args, kwargs, "name")
        assert csi is not None, f"get{args} matches neither client"
        return VirtualDisk.from_dict(self.read(VIRTUAL_DISK_PLURAL, csi["name"]))

    @overload
    async def list(self) -> list[VirtualDisk]: ...
    @overload
    async def list(self, plural: str) -> list[dict[str, Any]]: ...
    async def list(self, *args: Any, **kwargs: Any) -> list[VirtualDisk] | list[dict[str, Any]]:
        self._record("list", *args, *kwargs.values())
        operator = _bind(args, kwargs, "plural")
        if operator is not None:
            return [copy.deepcopy(o) for o in self.objects.get(operator["plural"], {}).values()]
        return [VirtualDisk.from_dict(copy.deepcopy(o)) for o in self.disks.values()]

    @overload
    async def create(self, disk: VirtualDisk) -> VirtualDisk: ...
    @overload
    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def create(self, *args: Any, **kwargs: Any) -> VirtualDisk | dict[str, Any]:
        self._record("create", *args, *kwargs.values())
        operator = _bind(args, kwargs, "plural", "body")
        if operator is not None:
            return await self._create(operator["plural"], operator["body"])
        csi = _bind(args, kwargs, "disk")
        assert csi is not None, f"create{args} matches neither client"
        return VirtualDisk.from_dict(await self._create(VIRTUAL_DISK_PLURAL, csi["disk"].body()))

    async def patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        self._record("patch_status", plural, name, status)
        stored = self._stored(plural, name)
        stored["status"] = apply_merge_patch(stored.get("status"), status)
        self._touch(stored["metadata"])
        self._changed(plural, name)

    async def patch_labels(self, plural: str, name: str, labels: dict[str, str | None]) -> None:
        self._record("patch_labels", plural, name, labels)
        meta = self._stored(plural, name)["metadata"]
        meta["labels"] = apply_merge_patch(meta.get("labels"), labels) or {}
        self._touch(meta)
        self._changed(plural, name)

    async def patch_spec(self, name: str, patch: dict[str, Any]) -> VirtualDisk:
        self._record("patch_spec", name, patch)
        return VirtualDisk.from_dict(await self._patch_spec(VIRTUAL_DISK_PLURAL, name, patch))

    async def delete(self, name: str) -> None:
        self._record("delete", name)
        await self._delete(VIRTUAL_DISK_PLURAL, name)

    # --- the CSI controller's DiskSnapshots --------------------------------------------------
    async def get_snapshot(self, name: str) -> DiskSnapshot:
        self._record("get_snapshot", name)
        return DiskSnapshot.from_dict(self.read(DISK_SNAPSHOT_PLURAL, name))

    async def list_snapshots(self, label_selector: str | None = None) -> builtins.list[DiskSnapshot]:
        """Every DiskSnapshot, or those whose labels have every `key=value` of `label_selector`."""
        self._record("list_snapshots", label_selector)
        wanted = dict(term.split("=", 1) for term in label_selector.split(",")) if label_selector else {}
        return [
            DiskSnapshot.from_dict(copy.deepcopy(o))
            for o in self.objects.get(DISK_SNAPSHOT_PLURAL, {}).values()
            if wanted.items() <= ((o.get("metadata") or {}).get("labels") or {}).items()
        ]

    async def create_snapshot(self, snapshot: DiskSnapshot) -> DiskSnapshot:
        self._record("create_snapshot", snapshot.name)
        return DiskSnapshot.from_dict(await self._create(DISK_SNAPSHOT_PLURAL, snapshot.body()))

    async def delete_snapshot(self, name: str) -> None:
        self._record("delete_snapshot", name)
        await self._delete(DISK_SNAPSHOT_PLURAL, name)

    async def get_group_snapshot(self, name: str) -> DiskGroupSnapshot:
        self._record("get_group_snapshot", name)
        return DiskGroupSnapshot.from_dict(self.read(DISK_GROUP_SNAPSHOT_PLURAL, name))

    async def create_group_snapshot(self, group: DiskGroupSnapshot) -> DiskGroupSnapshot:
        self._record("create_group_snapshot", group.name)
        return DiskGroupSnapshot.from_dict(await self._create(DISK_GROUP_SNAPSHOT_PLURAL, group.body()))

    async def delete_group_snapshot(self, name: str) -> None:
        self._record("delete_group_snapshot", name)
        await self._delete(DISK_GROUP_SNAPSHOT_PLURAL, name)

    async def changes(
        self, plural: str, name: str, since: str | None, seconds: float
    ) -> AsyncGenerator[dict[str, Any] | None, None]:
        """Each version of object `name` of `plural` after resourceVersion `since` (None: its
        current version first, if it exists), None for a deletion, as they are written; ends
        after `seconds`, or when `drop_watches` drops it."""
        self._record("changes", plural, name, since)
        loop = asyncio.get_running_loop()
        deadline, drops = loop.time() + seconds, self._drops
        after = int(since) if since else self._version
        if not since and name in self.objects.get(plural, {}):
            yield self.read(plural, name)
        seen = 0
        while drops == self._drops:
            if seen < len(self.history):
                entry, seen = self.history[seen], seen + 1
                if entry[:2] == (plural, name) and entry[2] > after:
                    yield copy.deepcopy(entry[3])
                continue
            waker: asyncio.Future[None] = loop.create_future()
            self._wakers.append(waker)
            try:
                await asyncio.wait_for(waker, max(deadline - loop.time(), 0.0))
            except TimeoutError:
                return

    @contextlib.contextmanager
    def following(self, plural: str, name: str) -> Iterator[Following]:
        """The shared feed (`lunbridge_csi.feed`): every later version of the object, from the
        registration on, in order; only VirtualDisks have one, as with the real client."""
        self._record("following", plural, name)
        follower = Following(name, usable=self.feed_live and plural == VIRTUAL_DISK_PLURAL)
        self._following.setdefault((plural, name), []).append(follower)
        try:
            yield follower
        finally:
            self._following[(plural, name)].remove(follower)

    def feed_gap(self) -> None:
        """Tell every registered wait that the feed lost events, as a failed feed watch does."""
        for followers in self._following.values():
            for follower in followers:
                follower.gap()

    def drop_watches(self) -> None:
        """End every open `changes` stream, as a dropped connection would."""
        self._drops += 1
        self._wake()

    async def node_by_id(self, node_id: str) -> str:
        self._record("node_by_id", node_id)
        for name, node in self.nodes.items():
            if (node.get("spec") or {}).get("provider_id") == node_id:
                return name
        if node_id in self.nodes:
            return node_id
        raise NotFound(f"no Node has spec.providerID {node_id} or is named {node_id}")

    async def node_provider_id(self, name: str) -> str | None:
        self._record("node_provider_id", name)
        node = need(self.nodes, name, f"Node {name}")
        provider_id: str | None = (node.get("spec") or {}).get("provider_id")
        return provider_id

    async def volume_users(self, volume_handle: str) -> builtins.list[str]:
        """PVs and VolumeAttachments using a volume, as a test set them in `users`."""
        return [*self.users.get(volume_handle, [])]

    async def ping(self) -> None:
        self._record("ping")
