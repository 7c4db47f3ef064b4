"""Settings shared by every component. Each service adds its own class in `services/<name>/settings.py`.

Configuration comes from the environment only (prefix `IDLOCK_...`); a bad value fails at start-up with the
variable's name. Every field carries a description: the README's configuration table is generated from them.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.cwd() / ".idlock"


class IdlockSettings(BaseSettings):
    """Base class: env-only, unknown variables ignored, validation on assignment."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True, frozen=False)
    #: human name of the component these settings configure (used by the README table)
    component: ClassVar[str] = "common"


class PathsSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_")
    component: ClassVar[str] = "common"

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the embedded defaults: SQLite files, Qdrant Edge vector shards, objects on disk, "
        "NATS data; also the text model's exported ONNX graph (models/).",
    )


class NatsSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_NATS_")
    component: ClassVar[str] = "nats"

    url: str = Field("nats://127.0.0.1:4222", description="NATS server URL(s), comma separated.")
    stream_replicas: int = Field(1, ge=1, le=5, description="Replicas for the JOBS and EVENTS streams.")
    events_max_age_s: int = Field(
        7 * 24 * 3600, ge=60, description="How long EVENTS keeps messages (seconds)."
    )
    duplicate_window_s: int = Field(
        2 * 3600, ge=1, description="JetStream de-duplication window for Nats-Msg-Id (seconds)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Timeout for connecting to NATS (seconds).")
    setup_timeout_s: float = Field(
        30.0,
        gt=0,
        description=(
            "Timeout of the JetStream calls that create or check streams, buckets and consumers at start-up "
            "(seconds): creating a file-backed stream on a busy disk can take longer than a message does."
        ),
    )


class DatabaseSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_DATABASE_")
    component: ClassVar[str] = "database"

    url: str = Field(
        "",
        description=(
            "SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db. Empty: a SQLite file per service "
            "under the data directory."
        ),
    )
    echo: bool = Field(False, description="Log every SQL statement.")
    pool_size: int = Field(5, ge=1, description="Connection pool size (Postgres).")

    @field_validator("url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+asyncpg://" + v[len("postgresql://") :]
        if v and not (v.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://"))):
            raise ValueError("IDLOCK_DATABASE_URL must be a postgresql:// or sqlite+aiosqlite:// URL")
        return v


class StorageSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_STORAGE_")
    component: ClassVar[str] = "storage"

    backend: Literal["local", "s3"] = Field(
        "local", description="Object storage backend: local folder or S3."
    )
    local_root: Path | None = Field(
        None, description="Root folder of the local backend. Empty: <data_dir>/objects."
    )
    s3_bucket: str = Field("idlock", description="S3 bucket name.")
    s3_endpoint_url: str = Field("", description="S3 endpoint URL (MinIO, moto); empty for AWS.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_create_bucket: bool = Field(False, description="Create the bucket at start-up when it does not exist.")
    presign_ttl_s: int = Field(3600, ge=60, description="Lifetime of presigned download URLs (seconds).")


class TelemetrySettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_")
    component: ClassVar[str] = "telemetry"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_json: bool = Field(True, description="Write JSON log lines (false: human-readable lines).")
    otlp_endpoint: str = Field("", description="OTLP gRPC endpoint for traces; empty disables export.")
    metrics_port: int = Field(
        -1,
        ge=-1,
        le=65535,
        description="Prometheus metrics port for this process; -1 disables, 0 picks a free one.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the metrics endpoint binds (0.0.0.0 in a pod, so Prometheus can scrape it).",
    )


class GrpcServerSettings(IdlockSettings):
    """Base of every gRPC service's settings; subclasses set `env_prefix` to IDLOCK_<SERVICE>_."""

    host: str = Field("127.0.0.1", description="Address the gRPC server binds.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    max_message_mb: int = Field(32, ge=1, le=512, description="Largest gRPC message accepted or sent (MiB).")
    grace_s: float = Field(10.0, ge=0, description="Grace period for in-flight RPCs on shutdown (seconds).")
    max_concurrent_rpcs: int = Field(
        64, ge=1, description="RPCs served at once; more are refused with RESOURCE_EXHAUSTED (callers retry)."
    )
    max_connection_age_s: float = Field(
        300.0,
        ge=0,
        description="Seconds after which a client connection is asked to go (GOAWAY; its calls finish first), so "
        "that callers resolve the service again and spread over replicas added since; 0 keeps connections.",
    )
    drain_s: float = Field(
        1.0,
        ge=0,
        description="On SIGTERM: seconds between reporting NOT_SERVING and stopping, so load balancers move away.",
    )
    cpu_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="Threads the CPU model libraries (torch, OpenCV, OpenMP/BLAS) may use in this process; 0: the "
        "CPUs it may run on (affinity and cgroup quota). The local mesh sets half the machine's CPUs per service.",
    )


class ModelServiceSettings(GrpcServerSettings):
    """Base of the services that run models on their own threads (identity, render, refiner)."""

    model_thread_priority: Literal["normal", "idle"] = Field(
        "normal",
        description="Scheduling priority of the threads running models: idle (Linux SCHED_IDLE) lets every other "
        "thread on the host go first, so request hops never queue behind model work; a host kept busy by other "
        "programs then starves the models. The local mesh (all services on one host) sets idle.",
    )


#: default ports of the local mesh (`idlock up`); Kubernetes uses the same numbers.
DEFAULT_PORTS: dict[str, int] = {
    "identity": 50051,
    "memory": 50052,
    "render": 50053,
    "refiner": 50054,
    "trainer": 50055,
    "orchestrator": 50056,
    "gateway": 8000,
}


#: gRPC load-balancing policies a channel may use over a peer's addresses
PeerBalancing = Literal["pick_first", "round_robin"]


class MeshSettings(IdlockSettings):
    """Where each service finds its peers."""

    model_config = SettingsConfigDict(env_prefix="IDLOCK_")
    component: ClassVar[str] = "mesh"

    identity_addr: str = Field(
        f"127.0.0.1:{DEFAULT_PORTS['identity']}", description="Identity service address."
    )
    memory_addr: str = Field(f"127.0.0.1:{DEFAULT_PORTS['memory']}", description="Memory service address.")
    render_addr: str = Field(f"127.0.0.1:{DEFAULT_PORTS['render']}", description="Render service address.")
    refiner_addr: str = Field(f"127.0.0.1:{DEFAULT_PORTS['refiner']}", description="Refiner service address.")
    trainer_addr: str = Field(f"127.0.0.1:{DEFAULT_PORTS['trainer']}", description="Trainer service address.")
    orchestrator_addr: str = Field(
        f"127.0.0.1:{DEFAULT_PORTS['orchestrator']}", description="Orchestrator service address."
    )
    rpc_timeout_s: float = Field(30.0, gt=0, description="Default deadline of a call to a peer (seconds).")
    peer_balancing: PeerBalancing = Field(
        "pick_first",
        description="How a channel spreads its calls over the addresses a peer's name resolves to: pick_first uses "
        "one (a call made while it reconnects waits for the connection); round_robin uses every ready one (for "
        "headless Services with several replicas, as k8s/ sets; while no replica is ready, calls fail at once).",
    )


def dev_secret(path: Path, setting: str) -> str:
    """A development secret for an unset `setting`: made once at `path` (0600) and reused, so every process on one
    data dir shares it (the first writer wins when several start together)."""
    path = Path(path)
    if path.exists() and len(path.read_text().strip()) >= 32:
        logging.getLogger("idlock.settings").warning(
            "%s is not set: using the development secret in %s; set a real one in production", setting, path
        )
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    try:
        os.link(tmp, path)
    except FileExistsError:
        if len(path.read_text().strip()) < 32:  # a short or empty file from elsewhere: replace it
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logging.getLogger("idlock.settings").warning(
        "%s is not set: generated a development secret in %s; set a real one in production", setting, path
    )
    return path.read_text().strip()
