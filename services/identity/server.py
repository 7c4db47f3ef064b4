"""gRPC surface of the identity service."""

from __future__ import annotations

from idlock.grpc_server import ServiceSpec
from idlock.launch import pending_service
from idlock.v1 import identity_service_pb2, identity_service_pb2_grpc
from services.identity.settings import IdentitySettings

SETTINGS = IdentitySettings


def build(settings: IdentitySettings) -> ServiceSpec:
    return pending_service("identity", identity_service_pb2, identity_service_pb2_grpc, "IdentityService", "issue #3 (identity service)")
