"""A character's self-learning over REST, against a real trainer service: the owner lists its LoRA versions,
activates one, rolls back, and reads the identity-retention report; another user gets 404, nothing is changed for
bad input."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pytest

from services.trainer import models as tm
from services.trainer.server import TrainerServicer, spec_for
from services.trainer.settings import TrainerSettings
from tests.harness import started_service
from tests.integration.gateway.test_gateway_api import Api, Mesh, assert_error, make_character, running


@pytest.fixture
async def learning_api(mesh: Mesh, tmp_path: Path) -> AsyncIterator[tuple[Api, TrainerServicer]]:
    env = {"IDLOCK_NATS_URL": "nats://127.0.0.1:1", "IDLOCK_TRAINER_AUTO_TRAIN_MIN_IMAGES": "30"}
    with mock.patch.dict(os.environ, {**env, "IDLOCK_DATA_DIR": str(tmp_path), "IDLOCK_TRAINER_PORT": "0"}):
        settings = TrainerSettings()
        servicer = TrainerServicer(settings, face_finder=None)
    async with started_service("trainer", tmp_path, spec=spec_for(servicer), settings=settings, **env) as (
        service,
        _channel,
    ):
        mesh.addresses["trainer"] = service.address
        async with running(mesh, tmp_path) as api:
            yield api, servicer


async def test_the_owner_lists_activates_and_rolls_back_lora_versions(learning_api) -> None:
    api, trainer = learning_api
    alice, bob = await api.user("alice@example.com"), await api.user("bob@example.com")
    cid = await make_character(api, alice)
    c = api.client
    base = f"/api/v1/characters/{cid}"

    empty = await c.get(f"{base}/loras", headers=alice)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"character_id": cid, "active_version": None, "items": []}
    assert_error(
        await c.post(f"{base}/loras/rollback", headers=alice), 409, "failed_precondition", "no active"
    )

    for k, (baseline, final) in enumerate(((0.61, 0.72), (0.72, 0.70)), start=1):
        row = await trainer.repo.register_lora(cid, run_id=f"run{k}", dataset_uri="", training_images=10 * k)
        await trainer.repo.update_lora(
            row.id, file_uri=f"s3://b/{row.id}", status="validating", baseline_idr=baseline, final_idr=final
        )
    listed = (await c.get(f"{base}/loras", headers=alice)).json()
    assert [(i["version"], i["status"], i["training_images"]) for i in listed["items"]] == [
        (1, "validating", 10),
        (2, "validating", 20),
    ]
    assert listed["items"][0]["gain"] == pytest.approx(0.11) and listed["items"][1]["gain"] == pytest.approx(
        -0.02
    )

    one = await c.post(f"{base}/loras/1/activate", headers=alice)
    assert one.status_code == 200, one.text
    assert one.json()["active_version"] == 1 and one.json()["items"][0]["activated_at"]
    two = (await c.post(f"{base}/loras/2/activate", headers=alice)).json()
    assert two["active_version"] == 2 and two["items"][0]["status"] == "archived"
    back = (await c.post(f"{base}/loras/rollback", headers=alice)).json()
    assert back["active_version"] == 1 and back["items"][1]["status"] == "archived"
    assert len(await api.audit("lora_activate")) == 2 and len(await api.audit("lora_rollback")) == 1

    assert_error(
        await c.post(f"{base}/loras/3/activate", headers=alice), 404, "not_found", "no LoRA version 3"
    )
    assert (await c.post(f"{base}/loras/0/activate", headers=alice)).status_code == 400
    # another user's character does not exist for them, and nothing changes
    for method, path in (
        ("get", "loras"),
        ("post", "loras/2/activate"),
        ("post", "loras/rollback"),
        ("get", "metrics"),
    ):
        assert_error(await getattr(c, method)(f"{base}/{path}", headers=bob), 404, "not_found")
    assert (await trainer.repo.get_active(cid)).version == 1
    report = (await c.get(f"{base}/metrics", headers=alice)).json()
    assert report["stage"] == "rolled_back"  # v1 renders again, after the owner's rollback
    assert [(d["decision"], d["lora_id"]) for d in report["decisions"]] == [
        ("activated", f"lora_{cid}_v1"),
        ("activated", f"lora_{cid}_v2"),
        ("rolled_back", f"lora_{cid}_v2"),
    ]
    assert report["decisions"][-1]["reason"].endswith("rolled back by request")
    again = await c.post(f"{base}/loras/2/activate", headers=alice)
    assert again.json()["active_version"] == 2
    assert (await c.get(f"{base}/metrics", headers=alice)).json()["stage"] == "active"


async def test_the_report_shows_idr_by_lora_and_the_watch_state(learning_api) -> None:
    api, trainer = learning_api
    alice = await api.user("carol@example.com")
    cid = await make_character(api, alice)
    fresh = (await api.client.get(f"/api/v1/characters/{cid}/metrics", headers=alice)).json()
    assert fresh["idr"] == {"count": 0, "mean": None, "std": None, "min": None}
    assert fresh["state"] == "ok" and fresh["decisions"] == [] and fresh["golden_until_training"] == 30
    assert fresh["stage"] == "idle"

    history = trainer.watch.history
    for idr, lora in ((0.8, ""), (0.7, ""), (0.6, "lora_x_v1")):
        await history.add(
            tm.IdrObservation(
                job_id=f"job_{uuid.uuid4().hex[:8]}",
                character_id=cid,
                idr=idr,
                provider="gemini",
                lora_id=lora,
            )
        )
    r = await api.client.get(f"/api/v1/characters/{cid}/metrics", headers=alice)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["idr"]["count"] == 3 and report["idr"]["mean"] == pytest.approx(0.7, abs=1e-6)
    assert report["idr"]["min"] == pytest.approx(0.6, abs=1e-6)
    assert report["idr_by_lora"]["none"]["count"] == 2 and report["idr_by_lora"]["lora_x_v1"]["count"] == 1
    assert [(p["idr"], p["lora_id"], p["provider"]) for p in report["recent"]] == [
        (pytest.approx(0.8), None, "gemini"),
        (pytest.approx(0.7), None, "gemini"),
        (pytest.approx(0.6), "lora_x_v1", "gemini"),
    ]
    assert all(p["at"] and p["job_id"].startswith("job_") for p in report["recent"])
    assert list(report["idr_by_provider"]) == ["gemini"] and len(report["idr_by_week"]) == 1
