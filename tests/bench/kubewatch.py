"""VirtualDisks made and awaited through the API server from one long-lived client, as the
benchmarks time them: one POST per disk, and one watch (from the resourceVersion the creates
left) that notes the moment each disk turns Ready. No process runs inside a timed section and
nothing polls, so a figure is the operator's time plus one watch event's delivery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes

from tests.lab.lab import LabState, kubectl

GROUP, VERSION, PLURAL = "lunbridge.io", "v1alpha1", "virtualdisks"
config: Any = kubernetes.config
watch: Any = kubernetes.watch
client: Any = kubernetes.client


def apply(state: LabState, items: list[dict[str, Any]]) -> None:
    """`kubectl apply` of several objects of any kind (setup outside a timed section)."""
    result = kubectl(
        state, "apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def disk(name: str, node: str, size: str = "64Mi", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualDisk", "metadata": {"name": name},
            "spec": {"size": size, "nodeName": node, **spec}}  # fmt: skip


class VirtualDisks:
    """The lab's VirtualDisks through one API client (the lab's kubeconfig)."""

    def __init__(self, state: LabState) -> None:
        self.api: Any = client.CustomObjectsApi(
            config.new_client_from_config(config_file=str(state.kubeconfig))
        )

    def create(self, bodies: list[dict[str, Any]], workers: int = 8) -> str:
        """POST every body (`workers` at once); the highest resourceVersion the creates left."""

        def one(body: dict[str, Any]) -> int:
            made = self.api.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
            return int(made["metadata"]["resourceVersion"])

        with ThreadPoolExecutor(max_workers=min(workers, len(bodies))) as pool:
            return str(min(pool.map(one, bodies)))

    def ready_at(self, names: Iterable[str], since: str, timeout: float) -> dict[str, float]:
        """`time.monotonic()` at which each disk of `names` was seen Ready, watching from
        resourceVersion `since`; TimeoutError naming those still waited for."""
        waiting, seen = set(names), {}
        deadline = time.monotonic() + timeout
        version = since
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(waiting)} disks not Ready within {timeout:.0f}s: {sorted(waiting)[:5]}"
                )
            stream = watch.Watch().stream(
                self.api.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                resource_version=version, timeout_seconds=max(1, int(min(left, 60))),
                allow_watch_bookmarks=True,
            )  # fmt: skip
            for event in stream:
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                name = obj["metadata"].get("name")
                if name in waiting and (obj.get("status") or {}).get("phase") == "Ready":
                    seen[name] = time.monotonic()
                    waiting.discard(name)
                    if not waiting:
                        break
        return seen

    def phases(self) -> dict[str, dict[str, Any]]:
        listed = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return {i["metadata"]["name"]: i.get("status") or {} for i in listed["items"]}

    def delete(self, names: Iterable[str], timeout: float = 600) -> None:
        """Delete the disks and wait until they are gone (their finalizers done)."""
        names = list(names)
        for name in names:
            self.api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        deadline = time.monotonic() + timeout
        while set(names) & set(self.phases()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"disks not deleted within {timeout:.0f}s")
            time.sleep(0.2)
