"""Auto-deployment (seed task 3.3): the render service asks the trainer for the character's active LoRA and uses
it for the diffusers provider; `bypass_lora` renders without it; a trainer that does not answer means no LoRA,
said in the provenance. The render replica's copy of a LoRA goes once its stored weights are erased."""

from __future__ import annotations

import asyncio
import hashlib

from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import render_service_pb2 as rpb
from idlock.v1 import render_service_pb2_grpc as rpb_grpc
from services.trainer import models as m
from services.trainer.server import TrainerServicer, spec_for
from services.trainer.settings import TrainerSettings
from tests.fakes.tiny_diffusers import build_tiny_lora
from tests.harness import running_service, started_service

NO_NATS = {"IDLOCK_NATS_URL": "nats://127.0.0.1:1", "IDLOCK_TRAINER_NATS_WAIT_S": "0.5"}


def _render_env(model) -> dict[str, str]:
    return {
        "IDLOCK_RENDER_PROVIDERS": '["diffusers","compositor"]',
        "IDLOCK_RENDER_DIFFUSERS_MODEL_PATH": str(model),
        "IDLOCK_RENDER_DIFFUSERS_DEVICE": "cpu",
        "IDLOCK_RENDER_DIFFUSERS_STEPS": "2",
        "IDLOCK_RENDER_DIFFUSERS_DEFAULT_SIZE": "32",
        "IDLOCK_RENDER_WATERMARK": "false",
        "IDLOCK_RENDER_GEMINI_API_KEY": "",
    }


def _req(character: str, **kw) -> rpb.RenderImageRequest:
    return rpb.RenderImageRequest(
        prompt="a photo of zq person", character_id=character, seed=5, width=32, height=32, **kw
    )


async def test_render_uses_the_active_lora_unless_bypassed(tiny_model, tmp_path) -> None:
    store = await open_store(StorageSettings(), tmp_path)
    data = build_tiny_lora(tiny_model, tmp_path / "lora_src").read_bytes()
    stored = await store.put("loras/c1/lora_c1_v1/pytorch_lora_weights.safetensors", data)
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {**NO_NATS, "IDLOCK_DATA_DIR": str(tmp_path)}):
        settings = TrainerSettings()
        servicer = TrainerServicer(settings, face_finder=None)
    async with started_service(
        "trainer", tmp_path, spec=spec_for(servicer), settings=settings, **NO_NATS
    ) as (trainer, _):
        row = await servicer.repo.register_lora(
            "c1", file_uri=stored.uri, file_sha256=hashlib.sha256(data).hexdigest()
        )
        await servicer.repo.update_lora(row.id, status=m.VALIDATING)
        await servicer.repo.activate(row.id)
        env = {
            **_render_env(tiny_model),
            "IDLOCK_TRAINER_ADDR": trainer.address,
            "IDLOCK_RENDER_LORA_CACHE_SWEEP_S": "0.2",
        }
        async with running_service("render", tmp_path, **env) as channel:
            stub = rpb_grpc.RenderServiceStub(channel)
            with_lora = await stub.RenderImage(_req("c1"))
            prov = with_lora.provenance
            assert (
                prov.provider == "diffusers" and prov.lora.lora_id == "lora_c1_v1" and prov.lora_scale == 1.0
            )
            assert "+lora:" in prov.label and not prov.fallback_reasons

            bypassed = await stub.RenderImage(_req("c1", bypass_lora=True))
            assert not bypassed.provenance.HasField("lora") and "+lora" not in bypassed.provenance.label
            assert bypassed.image.sha256 != with_lora.image.sha256  # same seed: only the LoRA differs

            none_yet = await stub.RenderImage(_req("c2"))  # a character without an active LoRA
            assert not none_yet.provenance.HasField("lora") and not none_yet.provenance.fallback_reasons
            assert none_yet.image.sha256 == bypassed.image.sha256

            compositor = await stub.RenderImage(_req("c1", providers=["compositor"]))
            assert compositor.provenance.provider == "compositor" and not compositor.provenance.HasField(
                "lora"
            )

            # erasing the character deletes its LoRA objects (the trainer); the replica's copy follows
            cached = list((tmp_path / "cache" / "lora").glob("*.safetensors"))
            assert [f.read_bytes() for f in cached] == [data]
            await asyncio.sleep(0.5)  # sweeps while the object exists keep the file
            assert cached[0].exists()
            await store.delete(stored.uri)
            for _ in range(100):
                if not cached[0].exists():
                    break
                await asyncio.sleep(0.1)
            assert not cached[0].exists() and not list((tmp_path / "cache" / "lora").iterdir())


async def test_trainer_unreachable_renders_without_lora_and_says_so(tiny_model, tmp_path) -> None:
    from idlock.natsd import free_port

    env = {**_render_env(tiny_model), "IDLOCK_TRAINER_ADDR": f"127.0.0.1:{free_port()}"}
    async with running_service("render", tmp_path, **env) as channel:
        resp = await rpb_grpc.RenderServiceStub(channel).RenderImage(_req("c1"))
        prov = resp.provenance
        assert prov.provider == "diffusers" and not prov.HasField("lora")
        assert any(
            r.startswith("lora: the trainer did not answer GetActiveLora") for r in prov.fallback_reasons
        )


async def test_validate_against_the_active_lora_rejects_a_worse_one(tiny_model, tmp_path) -> None:
    import grpc
    import pytest

    from idlock.v1 import trainer_service_pb2 as tpb
    from idlock.v1 import trainer_service_pb2_grpc as tpb_grpc

    store = await open_store(StorageSettings(), tmp_path)
    files = []
    for v, seed in ((1, 1), (2, 2)):
        data = build_tiny_lora(tiny_model, tmp_path / f"src{v}", seed=seed).read_bytes()
        files.append((await store.put(f"loras/c1/lora_c1_v{v}/pytorch_lora_weights.safetensors", data), data))

    async def worse(character_id: str):
        calls = iter(range(100))
        return lambda image: 0.4 if next(calls) % 2 == 0 else 0.8  # new render first, then the baseline's

    env = {
        **NO_NATS,
        "IDLOCK_TRAINER_BASE_MODEL_PATH": str(tiny_model),
        "IDLOCK_TRAINER_DEVICE": "cpu",
        "IDLOCK_TRAINER_VALIDATION_SIZE": "32",
        "IDLOCK_TRAINER_VALIDATION_STEPS": "2",
        "IDLOCK_TRAINER_VALIDATION_SEEDS": "[4]",
        "IDLOCK_TRAINER_TEST_SCENES": '["portrait"]',
    }
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {**env, "IDLOCK_DATA_DIR": str(tmp_path)}):
        settings = TrainerSettings()
        servicer = TrainerServicer(settings, face_finder=None, scorer_factory=worse)
    async with started_service("trainer", tmp_path, spec=spec_for(servicer), settings=settings, **env) as (
        _,
        channel,
    ):
        ids = []
        for stored, data in files:
            row = await servicer.repo.register_lora(
                "c1", file_uri=stored.uri, file_sha256=hashlib.sha256(data).hexdigest()
            )
            await servicer.repo.update_lora(row.id, status=m.VALIDATING)
            ids.append(row.id)
        stub = tpb_grpc.TrainerServiceStub(channel)
        await stub.ActivateLora(tpb.ActivateLoraRequest(lora_id=ids[0]))
        resp = await stub.ValidateLora(tpb.ValidateLoraRequest(lora_id=ids[1]))
        assert not resp.approved and "does not beat" in resp.reason
        assert resp.lora.status == tpb.LORA_STATUS_REJECTED
        assert resp.lora.final_idr == pytest.approx(0.4) and resp.lora.baseline_idr == pytest.approx(0.8)
        assert resp.lora.metrics["baseline_is_active_lora"] == 1.0 and resp.lora.metrics["approved"] == 0.0
        active = await stub.GetActiveLora(tpb.GetActiveLoraRequest(character_id="c1"))
        assert active.lora.id == ids[0]  # the active one stays
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ValidateLora(tpb.ValidateLoraRequest(lora_id=ids[0]))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ActivateLora(tpb.ActivateLoraRequest(lora_id=ids[1]))  # rejected: never activated
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        rolled = await stub.RollbackLora(tpb.RollbackLoraRequest(character_id="c1"))
        assert not rolled.HasField("active")
        assert not (await stub.GetActiveLora(tpb.GetActiveLoraRequest(character_id="c1"))).HasField("lora")
