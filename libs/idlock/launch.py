"""Process entry point shared by every service: `python -m services.<name>` and `idlock serve <name>`.

Each service package has `server.py` exposing `SETTINGS` (its settings class) and `build(settings) -> ServiceSpec`.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from types import ModuleType
from typing import TypeVar

from pydantic import ValidationError

from idlock import telemetry
from idlock.grpc_server import ServiceSpec, pending_rpcs, run_forever
from idlock.settings import MeshSettings
from idlock.threads import limit_cpu_threads

T = TypeVar("T")

SERVICES = ("identity", "memory", "render", "refiner", "trainer", "orchestrator")
#: the services running models on threads of their own (settings: `ModelServiceSettings`)
MODEL_SERVICES = ("identity", "render", "refiner")


def server_module(component: str) -> ModuleType:
    if component not in SERVICES:
        raise SystemExit(f"unknown service {component!r}; choose one of: {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{component}.server")


def serve_main(component: str) -> None:
    module = server_module(component)
    # Fail fast and name the variables: configuration errors are the operator's to fix. The peers' settings are
    # read where a channel is made, so they are checked here too.
    settings = _checked(component, module.SETTINGS)
    _checked(component, MeshSettings)
    telemetry.setup(component)
    limit_cpu_threads(settings.cpu_threads)
    try:
        asyncio.run(run_forever(module.build(settings), settings))
    except KeyboardInterrupt:
        pass


def _checked(component: str, cls: type[T]) -> T:
    try:
        return cls()
    except ValidationError as err:
        print(f"{component}: invalid configuration:", file=sys.stderr)
        for e in err.errors():
            name = "_".join(str(p) for p in e["loc"]).upper()
            print(f"  {settings_prefix(cls)}{name}: {e['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


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
