"""gRPC surface of the trainer service."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import pending_service
from idlock.v1 import trainer_service_pb2, trainer_service_pb2_grpc
from services.trainer.settings import TrainerSettings

SETTINGS = TrainerSettings


def build(settings: TrainerSettings) -> ServiceSpec:
    return pending_service("trainer", trainer_service_pb2, trainer_service_pb2_grpc, "TrainerService", "issue #8 (trainer service)")
