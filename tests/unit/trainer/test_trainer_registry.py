"""The LoRA registry: versions, activation and rollback keep exactly one active LoRA per character."""

from __future__ import annotations

import pytest

from idlock.db import Database
from idlock.errors import NotFound, PreconditionFailed
from idlock.settings import DatabaseSettings
from services.trainer import models as m
from services.trainer.registry import DOWN, UP, TrainerRepository


@pytest.fixture
async def repo(tmp_path):
    db = Database.open(DatabaseSettings(url=""), service="trainer", data_dir=tmp_path)
    await db.migrate(m.Base.metadata, version=m.SCHEMA_VERSION)
    yield TrainerRepository(db)
    await db.close()


async def _actives(repo: TrainerRepository, character: str) -> list[str]:
    return [r.id for r in await repo.list_loras(character) if r.status == m.ACTIVE]


async def _ready(repo: TrainerRepository, character: str) -> str:
    row = await repo.register_lora(character, file_uri=f"file:///x/{character}.safetensors")
    await repo.update_lora(row.id, status=m.VALIDATING)
    return row.id


async def test_activation_and_rollback_keep_exactly_one_active(repo) -> None:
    v1, v2, v3 = [await _ready(repo, "c1") for _ in range(3)]
    other = await _ready(repo, "c2")
    assert (v1, v2, v3) == ("lora_c1_v1", "lora_c1_v2", "lora_c1_v3")
    assert await repo.get_active("c1") is None

    await repo.activate(v1)
    assert await _actives(repo, "c1") == [v1]
    _, previous = await repo.activate(v2)
    assert previous.id == v1 and await _actives(repo, "c1") == [v2]
    await repo.activate(other)
    assert await _actives(repo, "c2") == [other] and await _actives(repo, "c1") == [v2]
    await repo.activate(v3)
    assert await _actives(repo, "c1") == [v3]
    assert (await repo.get_lora(v1)).status == m.ARCHIVED

    active, archived = await repo.rollback("c1")  # back to v2, the one active before v3
    assert (active.id, archived.id) == (v2, v3) and await _actives(repo, "c1") == [v2]
    active, archived = await repo.rollback("c1")  # v3 was archived just now, v1 before it: most recent first
    assert active.id == v3 and await _actives(repo, "c1") == [v3]
    await repo.activate(v3)  # already active: a no-op
    assert await _actives(repo, "c1") == [v3]

    history = await repo.list_loras("c1")
    assert [r.version for r in history] == [1, 2, 3]


async def test_refusals(repo) -> None:
    training = await repo.register_lora("c1")
    with pytest.raises(PreconditionFailed):
        await repo.activate(training.id)  # still training, no weights
    rejected = await _ready(repo, "c1")
    await repo.update_lora(rejected, status=m.REJECTED)
    with pytest.raises(PreconditionFailed, match="rejected"):
        await repo.activate(rejected)
    with pytest.raises(PreconditionFailed, match="no active LoRA"):
        await repo.rollback("c1")
    with pytest.raises(NotFound):
        await repo.activate("lora_nope_v1")
    only = await _ready(repo, "c3")
    await repo.activate(only)
    active, archived = await repo.rollback("c3")  # nothing earlier: no active LoRA afterwards
    assert active is None and archived.id == only and await repo.get_active("c3") is None


async def test_feedback_excludes_and_boosts_golden_images(repo) -> None:
    def fields(job: str) -> dict:
        return {
            "character_id": "c1",
            "job_id": job,
            "image": {"uri": f"file:///{job}.png"},
            "idr_calibrated": 0.9,
        }

    row, created = await repo.add_golden(**fields("j1"))
    assert created and (await repo.add_golden(**fields("j1")))[1] is False  # idempotent per job
    assert await repo.record_feedback("j1", "c1", DOWN) == 1  # rated down: removed
    assert await repo.count_goldens("c1") == 0
    await repo.record_feedback("j2", "c1", DOWN)  # the rating arrives before the job event
    assert (await repo.add_golden(**fields("j2"))) == (None, False)
    await repo.record_feedback("j3", "c1", UP)
    row, _ = await repo.add_golden(**fields("j3"))
    assert row.boosted
    assert await repo.delete_character("c1") >= 3 and await repo.count_goldens("c1") == 0
