"""gRPC surface of the render service: each RPC hands its request and the time left to a use case
(`rendering.py`), nothing more. Providers are in `providers/`, chosen and retried by `engine.py`."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import servicer_spec
from idlock.nsfw import OutputModerationSettings
from idlock.v1 import render_service_pb2 as pb
from idlock.v1 import render_service_pb2_grpc as pb_grpc
from services.render.rendering import Rendering
from services.render.settings import RenderSettings

SETTINGS = RenderSettings
#: the kernel's settings it reads besides its own (checked at start-up with them)
ALSO_READS = (OutputModerationSettings,)


class RenderServicer(pb_grpc.RenderServiceServicer):
    def __init__(self, settings: RenderSettings) -> None:
        self.settings = settings
        self.rendering = Rendering(settings)

    @property
    def renderer(self):
        return self.rendering.renderer

    async def startup(self) -> None:
        await self.rendering.open()

    async def shutdown(self) -> None:
        await self.rendering.close()

    async def RenderImage(self, request: pb.RenderImageRequest, context) -> pb.RenderImageResponse:
        return await self.rendering.render_image(request, context.time_remaining())

    async def EditImage(self, request: pb.EditImageRequest, context) -> pb.EditImageResponse:
        return await self.rendering.edit_image(request, context.time_remaining())

    async def RenderVideo(self, request: pb.RenderVideoRequest, context) -> pb.RenderVideoResponse:
        return await self.rendering.render_video(request, context.time_remaining())

    async def ListProviders(self, request: pb.ListProvidersRequest, context) -> pb.ListProvidersResponse:
        return self.rendering.providers()


def build(settings: RenderSettings) -> ServiceSpec:
    return servicer_spec("render", pb, pb_grpc, "RenderService", RenderServicer(settings))
