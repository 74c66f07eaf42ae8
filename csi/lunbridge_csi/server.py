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


class SettingsError(ValueError):
    """A setting the plugin cannot start with (it refuses at start, naming the option)."""


class EndpointError(SettingsError):
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
        node_name=settings.node_name,
        attach_mode=settings.attach_mode,
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
    node_name: str | None = None  # the node's Kubernetes name: the node channel runs when given
    verify_checks: tuple[str, ...] = ()  # NAME=COMMAND checks a snapshot verification may name
    attach_mode: str = "auto"  # the node's attachment mode: auto, hypervisor or initiator


def build(settings: Settings, kube: Any | None = None) -> tuple[grpc.aio.Server, Endpoint]:
    """A server with the services of `settings.mode`, bound but not started."""
    server, endpoint, _ = _build(settings, kube)
    return server, endpoint


def _build(settings: Settings, kube: Any | None) -> tuple[grpc.aio.Server, Endpoint, Any | None]:
    """The server, its endpoint, and the Node service it serves (None for a controller)."""
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
    node = None
    if settings.mode in ("node", "all"):
        node = node_service(settings)
        stubs.add_NodeServicer_to_server(node, server)
    identity = IdentityService(driver_name=settings.driver_name, probe=probe)
    stubs.add_IdentityServicer_to_server(identity, server)
    if endpoint.socket is not None:
        remove_stale_socket(endpoint.socket)
    if server.add_insecure_port(endpoint.address) == 0 and endpoint.socket is None:
        raise EndpointError(f"cannot listen on {settings.endpoint}")
    return server, endpoint, node


async def run_node_channel(settings: Settings, node: Any) -> None:
    """The node channel (`lunbridge_csi.channel`) of `settings.node_name`, until cancelled. The
    Kubernetes client loads here, off the event loop, after the gRPC server is serving, in a
    daemon thread: a SIGTERM while it loads (seconds on a small VM) stops the plugin at once,
    where an executor thread would keep the process alive until the import ended."""
    from lunbridge.api import DISK_VERIFICATION_PLURAL
    from lunbridge_csi import node_tasks
    from lunbridge_csi.channel import NodeChannel
    from lunbridge_csi.guest.filesystem import in_thread
    from lunbridge_csi.guest.initiators import publication
    from lunbridge_csi.guest.verify import parse_checks

    checks = parse_checks(settings.verify_checks)
    publish = publication(node.root, settings.attach_mode)
    log.info("attachment mode: %s", publish()["mode"])
    module = await in_thread(
        lambda: importlib.import_module("lunbridge_csi.channel_kube"), None, "load client"
    )
    while True:
        try:
            api = await in_thread(module.ChannelKube, None, "load client")
            break
        except Exception as exc:  # the client raises its own ConfigException or OSError
            log.error("node channel: cannot load a Kubernetes configuration (KUBECONFIG or in-cluster): "
                      "%s; again in 30s", exc)  # fmt: skip
            await asyncio.sleep(30)
    workers = node_tasks.workers(node, checks)
    channel = NodeChannel(api, settings.node_name or "", workers, (DISK_VERIFICATION_PLURAL,), publish)
    await channel.run()


def check_node_settings(settings: Settings) -> None:
    """The node role's options, read before anything is served: a bad `--verify-check` or
    `--attach-mode` (LUNBRIDGE_VERIFY_CHECKS, LUNBRIDGE_ATTACH_MODE) is a SettingsError naming
    it, not a node channel that dies later in the background."""
    if settings.mode not in ("node", "all"):
        return
    from lunbridge.errors import InvalidArgument
    from lunbridge_csi.guest.initiators import check_wanted_mode
    from lunbridge_csi.guest.verify import parse_checks

    try:
        parse_checks(settings.verify_checks)
        check_wanted_mode(settings.attach_mode)
    except InvalidArgument as exc:
        raise SettingsError(str(exc)) from None


async def serve(settings: Settings, kube: Any | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully; SettingsError at start for a bad
    option."""
    check_node_settings(settings)
    server, endpoint, node = _build(settings, kube)
    await server.start()
    log.info("lunbridge-csi serves %s on %s", settings.mode, settings.endpoint)
    channel = None
    if node is not None and settings.node_name:
        channel = asyncio.create_task(run_node_channel(settings, node), name="node channel")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("stopping (grace %.0fs)", GRACE_SECONDS)
    if channel is not None:
        channel.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await channel
    await server.stop(GRACE_SECONDS)
    if endpoint.socket is not None:
        endpoint.socket.unlink(missing_ok=True)
    log.info("stopped")
