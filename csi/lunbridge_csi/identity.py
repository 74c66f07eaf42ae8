"""The CSI Identity service: the plugin's name and version, what it offers, and whether it is
ready (the controller is ready when the Kubernetes API answers; the node needs no API).

The plugin has a controller service whichever role a process serves, so every role says so:
a CO that asks a node process (csi-sanity does) learns that volumes are controller-published,
and so hands NodeStage the publish context it needs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc.aio
from google.protobuf.wrappers_pb2 import BoolValue

from lunbridge import __version__
from lunbridge.api import CSI_DRIVER_NAME
from lunbridge.errors import LunbridgeError
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.errors import handled

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
Service = csi_pb2.PluginCapability.Service


class IdentityService(csi_pb2_grpc.IdentityServicer):
    def __init__(
        self,
        *,
        driver_name: str = CSI_DRIVER_NAME,
        probe: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.driver_name = driver_name
        self._probe = probe

    @handled
    async def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: Context
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=self.driver_name, vendor_version=__version__)

    @handled
    async def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: Context
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        services = (Service.CONTROLLER_SERVICE, Service.GROUP_CONTROLLER_SERVICE)
        capabilities = [csi_pb2.PluginCapability(service=Service(type=kind)) for kind in services]
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=capabilities)

    @handled
    async def Probe(self, request: csi_pb2.ProbeRequest, context: Context) -> csi_pb2.ProbeResponse:
        if self._probe is None:
            return csi_pb2.ProbeResponse(ready=BoolValue(value=True))
        try:
            await self._probe()
        except LunbridgeError as exc:
            log.warning("Probe: not ready: %s", exc)
            return csi_pb2.ProbeResponse(ready=BoolValue(value=False))
        return csi_pb2.ProbeResponse(ready=BoolValue(value=True))
