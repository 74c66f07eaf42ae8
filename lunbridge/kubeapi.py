"""The Kubernetes API client the operator and the CSI controller share: the official client
(in-cluster config, else kubeconfig), every call in a worker thread (the client is
synchronous), and API errors turned into `lunbridge.errors` in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from lunbridge.errors import (
    AlreadyExists,
    InvalidArgument,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)

T = TypeVar("T")
# the client's generated signatures say `object`; treat it as untyped and type our own edges
client: Any = kubernetes.client
config: Any = kubernetes.config


def translate(what: str, exc: Exception) -> LunbridgeError:
    """One API failure as a domain error; `what` completes a sentence ("read Node n1: ...")."""
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


class KubeApi:
    """Core and custom-object APIs; subclasses add the calls their component makes."""

    def __init__(self, api_client: Any | None = None) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self._core: Any = client.CoreV1Api(api_client)
        self._custom: Any = client.CustomObjectsApi(api_client)
        self._storage: Any = client.StorageV1Api(api_client)
        # Watches get a connection pool of their own: a watch's connection is closed when it
        # ends, and back in the calls' pool (last in, first out) it made the next call connect
        # again (a TLS handshake: 10-15 ms of every CreateVolume after a watch, on the lab).
        watch_client = client.ApiClient(api_client.configuration)
        self._watch_core: Any = client.CoreV1Api(watch_client)
        self._watch_custom: Any = client.CustomObjectsApi(watch_client)

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(what, exc) from exc
