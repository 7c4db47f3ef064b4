"""gRPC surface of the orchestrator service."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import pending_service
from idlock.v1 import orchestrator_service_pb2, orchestrator_service_pb2_grpc
from services.orchestrator.settings import OrchestratorSettings

SETTINGS = OrchestratorSettings


def build(settings: OrchestratorSettings) -> ServiceSpec:
    return pending_service("orchestrator", orchestrator_service_pb2, orchestrator_service_pb2_grpc, "OrchestratorService", "issue #6 (orchestrator and gateway)")
