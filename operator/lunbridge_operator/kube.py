"""The few Kubernetes API calls the reconcile steps make themselves (kopf makes the rest):
read Nodes, read and create lunbridge objects, and write status between steps so a restart
resumes where the last run stopped.

The official client is synchronous, so every call runs in a worker thread; API errors come
back as `lunbridge.errors`.
"""

from __future__ import annotations

from typing import Any

from lunbridge.api import CSI_DRIVER_NAME, GROUP, VERSION
from lunbridge.kubeapi import KubeApi


class Kube(KubeApi):
    async def node(self, name: str) -> dict[str, Any]:
        found = await self._call(f"read Node {name}", lambda: self._core.read_node(name))
        result: dict[str, Any] = found.to_dict()
        return result

    async def volume_users(self, volume_handle: str) -> list[str]:
        """What still uses the CSI volume `volume_handle` (a VirtualDisk's name), in words: a
        PersistentVolume of lunbridge's driver with that handle that is not Released or Failed
        (a pod may mount it through its claim), and every VolumeAttachment of such a PV."""
        pvs: Any = await self._call("list PersistentVolumes", lambda: self._core.list_persistent_volume())
        mine = {
            pv.metadata.name: pv
            for pv in pvs.items
            if pv.spec.csi is not None
            and pv.spec.csi.driver == CSI_DRIVER_NAME
            and pv.spec.csi.volume_handle == volume_handle
        }
        if not mine:
            return []
        users = [
            f"PersistentVolume {name} ({pv.status.phase})"
            for name, pv in sorted(mine.items())
            if pv.status is not None and pv.status.phase not in ("Released", "Failed")
        ]
        attachments: Any = await self._call(
            "list VolumeAttachments", lambda: self._storage.list_volume_attachment()
        )
        users += [
            f"VolumeAttachment {va.metadata.name} (node {va.spec.node_name})"
            for va in attachments.items
            if va.spec.source.persistent_volume_name in mine
        ]
        return users

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

    async def delete_object(self, plural: str, name: str) -> None:
        """DELETE a lunbridge object (its finalizer, if any, keeps it until its teardown ran)."""
        await self._call(
            f"delete {plural}/{name}",
            lambda: self._custom.delete_cluster_custom_object(GROUP, VERSION, plural, name),
        )

    async def patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            f"write the status of {plural}/{name}",
            lambda: self._custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, {"status": status}
            ),
        )

    async def patch_labels(self, plural: str, name: str, labels: dict[str, str | None]) -> None:
        """Merge `labels` into the object's labels (a None value removes that label)."""
        await self._call(
            f"label {plural}/{name}",
            lambda: self._custom.patch_cluster_custom_object(
                GROUP, VERSION, plural, name, {"metadata": {"labels": labels}}
            ),
        )
