"""gRPC surface of the render service."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import pending_service
from idlock.v1 import render_service_pb2, render_service_pb2_grpc
from services.render.settings import RenderSettings

SETTINGS = RenderSettings


def build(settings: RenderSettings) -> ServiceSpec:
    return pending_service("render", render_service_pb2, render_service_pb2_grpc, "RenderService", "issue #5 (render service)")
