"""CSI Identity service: who the plugin is, what it can do, whether it is ready."""

from __future__ import annotations

import grpc
from google.protobuf.wrappers_pb2 import BoolValue

from .. import __version__
from ..proto.csi.v1 import csi_pb2 as csi
from ..proto.csi.v1 import csi_pb2_grpc as csi_grpc
from ..proto.meshblock.v1 import admin_pb2 as admin
from . import DRIVER_NAME
from .admin import AdminClient, csi_method

SERVICE = "csi.v1.Identity"
Svc = csi.PluginCapability.Service


class IdentityServicer(csi_grpc.IdentityServicer):
    def __init__(self, admin_client: AdminClient | None, controller: bool):
        self.admin = admin_client
        self.controller = controller

    @csi_method(SERVICE)
    async def GetPluginInfo(self, request, context) -> csi.GetPluginInfoResponse:
        return csi.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=__version__)

    @csi_method(SERVICE)
    async def GetPluginCapabilities(self, request, context) -> csi.GetPluginCapabilitiesResponse:
        caps = []
        if self.controller:
            caps += [csi.PluginCapability(service=Svc(type=t)) for t in
                     (Svc.CONTROLLER_SERVICE, Svc.VOLUME_ACCESSIBILITY_CONSTRAINTS, Svc.GROUP_CONTROLLER_SERVICE)]
        caps.append(csi.PluginCapability(volume_expansion=csi.PluginCapability.VolumeExpansion(
            type=csi.PluginCapability.VolumeExpansion.ONLINE)))
        return csi.GetPluginCapabilitiesResponse(capabilities=caps)

    @csi_method(SERVICE)
    async def Probe(self, request, context) -> csi.ProbeResponse:
        """Ready when the controller's admin API answers (the controller role cannot work without it)."""
        if self.admin is None or not self.controller:
            return csi.ProbeResponse(ready=BoolValue(value=True))
        try:
            await self.admin.cluster.GetClusterStatus(admin.GetClusterStatusRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            return csi.ProbeResponse(ready=BoolValue(value=False))
        return csi.ProbeResponse(ready=BoolValue(value=True))
