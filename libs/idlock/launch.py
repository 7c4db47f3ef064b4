"""Process entry point shared by every service: `python -m services.<name>` and `idlock serve <name>`.

Each service package has `server.py` exposing `SETTINGS` (its settings class), optionally `ALSO_READS` (the kernel's
settings classes it reads besides its own), and `build(settings) -> ServiceSpec`.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from types import ModuleType
from typing import Any, TypeVar

from pydantic import ValidationError

from idlock import telemetry
from idlock.grpc_server import ServiceSpec, pending_rpcs, run_forever
from idlock.mesh_auth import MeshAuthSettings
from idlock.settings import (
    DatabaseSettings,
    MeshSettings,
    NatsSettings,
    PathsSettings,
    StorageSettings,
    TelemetrySettings,
)
from idlock.threads import limit_cpu_threads

T = TypeVar("T")

SERVICES = ("identity", "memory", "render", "refiner", "trainer", "orchestrator")
#: the services running models on threads of their own (settings: `ModelServiceSettings`)
MODEL_SERVICES = ("identity", "render", "refiner")
#: what every process reads besides its own settings (where its peers are and the key their calls are signed with,
#: its data, the bus, the database, the object store, telemetry), most of it where a runtime opens: checked at
#: start-up with its own
SHARED_SETTINGS: tuple[type, ...] = (
    MeshSettings,
    MeshAuthSettings,
    PathsSettings,
    NatsSettings,
    DatabaseSettings,
    StorageSettings,
    TelemetrySettings,
)


def server_module(component: str) -> ModuleType:
    if component not in SERVICES:
        raise SystemExit(f"unknown service {component!r}; choose one of: {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{component}.server")


def serve_main(component: str) -> None:
    module = server_module(component)
    settings = checked_settings(component, module.SETTINGS, *getattr(module, "ALSO_READS", ()))
    telemetry.setup(component)
    limit_cpu_threads(settings.cpu_threads)
    try:
        asyncio.run(run_forever(module.build(settings), settings))
    except KeyboardInterrupt:
        pass


def checked_settings(component: str, cls: type[T], *also: type) -> T:
    """The process's own settings, read with `SHARED_SETTINGS` and what else it reads (`also`: a server module's
    `ALSO_READS`). Fails fast and names the variables: a bad value is the operator's to fix, so every bad variable
    is said on stderr (not a traceback where it is first read) and the process exits with code 2."""
    bad: list[str] = []
    made: dict[type, Any] = {}
    for settings_cls in (cls, *SHARED_SETTINGS, *also):
        try:
            made[settings_cls] = settings_cls()
        except ValidationError as err:
            prefix = settings_prefix(settings_cls)
            bad += [f"  {prefix}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors()]
    if bad:
        print(f"{component}: invalid configuration:", *bad, sep="\n", file=sys.stderr)
        raise SystemExit(2)
    return made[cls]


def settings_prefix(cls: type) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def servicer_spec(
    component: str, pb2: ModuleType, pb2_grpc: ModuleType, service: str, servicer: object
) -> ServiceSpec:
    """The spec of a service served by one servicer; its `startup`/`shutdown` coroutines, when it has them, run
    before SERVING and after the graceful stop."""
    add = getattr(pb2_grpc, f"add_{service}Servicer_to_server")
    startup = getattr(servicer, "startup", None)
    shutdown = getattr(servicer, "shutdown", None)
    return ServiceSpec(
        component=component,
        service_names=[pb2.DESCRIPTOR.services_by_name[service].full_name],
        registrations=[lambda server: add(servicer, server)],
        on_startup=[startup] if startup else [],
        on_shutdown=[shutdown] if shutdown else [],
    )


def pending_service(
    component: str, pb2: ModuleType, pb2_grpc: ModuleType, service: str, issue: str
) -> ServiceSpec:
    """A service whose RPCs all answer UNIMPLEMENTED, naming the issue that brings them."""
    base = getattr(pb2_grpc, f"{service}Servicer")
    servicer = type(f"Pending{service}", (base,), pending_rpcs(base, issue))()
    return servicer_spec(component, pb2, pb2_grpc, service, servicer)
