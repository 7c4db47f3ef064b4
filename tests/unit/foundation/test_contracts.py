"""The committed stubs are exactly what the protos generate; a changed proto makes the check fail."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_protos() -> None:
    assert _gen_module().stale_stubs() == []


def test_changed_proto_without_regeneration_is_detected(tmp_path: Path) -> None:
    gen = _gen_module()
    protos = tmp_path / "protos"
    stubs = tmp_path / "libs"
    shutil.copytree(ROOT / "protos", protos)
    shutil.copytree(ROOT / "libs" / "idlock" / "v1", stubs / "idlock" / "v1")
    assert gen.stale_stubs(protos, stubs) == []

    target = protos / "idlock" / "v1" / "common.proto"
    target.write_text(
        target.read_text().replace("  int32 height = 5;\n}", "  int32 height = 5;\n  string alt = 6;\n}", 1)
    )
    problems = gen.stale_stubs(protos, stubs)
    assert "common_pb2.py: differs" in problems
    assert "common_pb2.pyi: differs" in problems


@pytest.mark.parametrize(
    "module, service",
    [
        ("identity_service_pb2", "IdentityService"),
        ("memory_service_pb2", "MemoryService"),
        ("render_service_pb2", "RenderService"),
        ("refiner_service_pb2", "RefinerService"),
        ("trainer_service_pb2", "TrainerService"),
        ("orchestrator_service_pb2", "OrchestratorService"),
    ],
)
def test_every_service_contract_is_importable(module: str, service: str) -> None:
    pb2 = importlib.import_module(f"idlock.v1.{module}")
    methods = pb2.DESCRIPTOR.services_by_name[service].methods
    assert len(methods) >= 1
    for method in methods:
        # buf STANDARD: unique <Rpc>Request/<Rpc>Response per RPC
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"


def test_events_carry_references_not_image_bytes() -> None:
    from google.protobuf.descriptor import FieldDescriptor

    from idlock.v1 import events_pb2

    for message in events_pb2.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            assert field.type != FieldDescriptor.TYPE_BYTES, f"{message.name}.{field.name} inlines bytes"
