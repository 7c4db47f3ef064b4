"""gRPC surface of the refiner service."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import pending_service
from idlock.v1 import refiner_service_pb2, refiner_service_pb2_grpc
from services.refiner.settings import RefinerSettings

SETTINGS = RefinerSettings


def build(settings: RefinerSettings) -> ServiceSpec:
    return pending_service("refiner", refiner_service_pb2, refiner_service_pb2_grpc, "RefinerService", "issue #7 (refiner service)")
