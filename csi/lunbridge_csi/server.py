"""The gRPC server: the Identity service always, the Controller service for `--mode controller`
or `all`, the Node service (`lunbridge_csi.node`) for `--mode node` or `all`, on a unix socket
(a stale one from an earlier run is removed) or a TCP port; SIGTERM/SIGINT stop it gracefully
(calls in progress get a few seconds to finish)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio

from lunbridge.api import CSI_DRIVER_NAME
from lunbridge_csi._proto import csi_pb2_grpc
from lunbridge_csi.controller import ControllerService
from lunbridge_csi.groups import GroupControllerService
from lunbridge_csi.guest.scsi import DEFAULT_KVM_MAX_VOLUMES
from lunbridge_csi.identity import IdentityService
from lunbridge_csi.volume_rules import Timeouts

log = logging.getLogger(__name__)
stubs: Any = csi_pb2_grpc  # the generated registration functions are untyped
GRACE_SECONDS = 5.0


class EndpointError(ValueError):
    """The --endpoint is not unix:///path or tcp://host:port."""


@dataclass(frozen=True)
class Endpoint:
    address: str  # as grpc takes it
    socket: Path | None = None


def parse_endpoint(text: str) -> Endpoint:
    if text.startswith("unix://"):
        path = text.removeprefix("unix://")
        if not path.startswith("/"):
            raise EndpointError(f"endpoint {text!r}: a unix socket needs an absolute path (unix:///path)")
        return Endpoint(f"unix://{path}", Path(path))
    if text.startswith("tcp://"):
        hostport = text.removeprefix("tcp://")
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise EndpointError(f"endpoint {text!r}: expected tcp://host:port")
        return Endpoint(hostport)
    raise EndpointError(f"endpoint {text!r}: expected unix:///path or tcp://host:port")


def remove_stale_socket(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise EndpointError(f"{path} exists and is not a socket; refusing to remove it")
        path.unlink()
        log.info("removed the stale socket %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)


def node_service(settings: Settings) -> Any:
    """The Node service, from `lunbridge_csi.node` (imported only when a node role is served)."""
    try:
        module = importlib.import_module("lunbridge_csi.node")
    except ImportError as exc:
        raise RuntimeError(f"the node service is not part of this build ({exc})") from exc
    return module.NodeService(
        node_id=settings.node_id,
        max_volumes=settings.max_volumes,
        kvm_max_volumes=settings.kvm_max_volumes,
    )


@dataclass(frozen=True)
class Settings:
    mode: str
    endpoint: str
    driver_name: str = CSI_DRIVER_NAME
    node_id: str | None = None
    capacity_bytes: int = 0
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_volumes: int | None = None  # the node's max_volumes_per_node, when not counted
    kvm_max_volumes: int = DEFAULT_KVM_MAX_VOLUMES  # lunbridge disks per KVM guest


def build(settings: Settings, kube: Any | None = None) -> tuple[grpc.aio.Server, Endpoint]:
    """A server with the services of `settings.mode`, bound but not started."""
    endpoint = parse_endpoint(settings.endpoint)
    server = grpc.aio.server()
    controller = settings.mode in ("controller", "all")
    probe = None
    if controller:
        if kube is None:
            from lunbridge_csi.kube import Kube

            try:
                kube = Kube()
            except Exception as exc:  # the client raises its own ConfigException or OSError
                raise RuntimeError(
                    f"cannot load a Kubernetes configuration (KUBECONFIG or in-cluster): {exc}"
                ) from exc
        probe = kube.ping
        stubs.add_ControllerServicer_to_server(
            ControllerService(kube, settings.timeouts, settings.capacity_bytes), server
        )
        stubs.add_GroupControllerServicer_to_server(GroupControllerService(kube, settings.timeouts), server)
    if settings.mode in ("node", "all"):
        stubs.add_NodeServicer_to_server(node_service(settings), server)
    identity = IdentityService(driver_name=settings.driver_name, probe=probe)
    stubs.add_IdentityServicer_to_server(identity, server)
    if endpoint.socket is not None:
        remove_stale_socket(endpoint.socket)
    if server.add_insecure_port(endpoint.address) == 0 and endpoint.socket is None:
        raise EndpointError(f"cannot listen on {settings.endpoint}")
    return server, endpoint


async def serve(settings: Settings, kube: Any | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    server, endpoint = build(settings, kube)
    await server.start()
    log.info("lunbridge-csi serves %s on %s", settings.mode, settings.endpoint)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("stopping (grace %.0fs)", GRACE_SECONDS)
    await server.stop(GRACE_SECONDS)
    if endpoint.socket is not None:
        endpoint.socket.unlink(missing_ok=True)
    log.info("stopped")
