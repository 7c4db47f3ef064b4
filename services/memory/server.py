"""gRPC surface of the memory service."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import pending_service
from idlock.v1 import memory_service_pb2, memory_service_pb2_grpc
from services.memory.settings import MemorySettings

SETTINGS = MemorySettings


def build(settings: MemorySettings) -> ServiceSpec:
    return pending_service("memory", memory_service_pb2, memory_service_pb2_grpc, "MemoryService", "issue #4 (memory service)")
