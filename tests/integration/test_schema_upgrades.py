"""The release's schema upgrades run on tables of the previous release (SQLite and Postgres) and keep their rows:
memory's episodes gain `context` and `provider_label` (2), `copy_check` (3), erasure records (4) and the other
characters of a scene (5); the
gateway's users gain `name` (2) and the failed sign-in count and lock (3), the shared rate buckets (4), and
reports with frozen characters (5), sign-in strikes of unknown emails (6); the orchestrator's jobs gain `erased_at` and an index by character (2), what a job waits for and the outbox (3)
and the cast of a scene of several (4); the trainer gains the degradation
watch's IDR history and decisions (2)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from gateway import models as gateway_models
from idlock.db import Database
from idlock.settings import DatabaseSettings
from services.memory import models as memory_models
from services.orchestrator import models as orchestrator_models
from services.trainer import models as trainer_models


async def _as_release_1(db: Database, metadata, table: str, columns: list[str]) -> None:
    """Today's tables, less the columns release 1 did not have, recorded as version 1."""
    await db.migrate(metadata, version=1)
    async with db.connect() as c:
        for column in columns:
            await c.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))


async def _tables(db: Database) -> set[str]:
    from sqlalchemy import inspect

    async with db.connect() as c:
        return await c.run_sync(lambda sc: set(inspect(sc).get_table_names(schema=db.schema)))


async def _columns(db: Database, table: str) -> set[str]:
    from sqlalchemy import inspect

    async with db.connect() as c:
        return await c.run_sync(
            lambda sc: {col["name"] for col in inspect(sc).get_columns(table, schema=db.schema)}
        )


async def test_memory_episodes_gain_their_context(db_url: str, db_schema: str, data_dir: Path) -> None:
    db = Database.open(DatabaseSettings(url=db_url), service="memory", data_dir=data_dir, schema=db_schema)
    try:
        await _as_release_1(
            db,
            memory_models.Base.metadata,
            "episodes",
            ["context", "provider_label", "copy_check", "cast_members"],
        )
        async with db.session() as s:  # characters did not change: the model writes it
            s.add(memory_models.Character(id="c1", owner_id="u1", name="Aria", consent_given=True))
        async with db.connect() as c:
            await c.execute(
                text(
                    "INSERT INTO episodes (id, character_id, job_id, scene_index, kind, prompt, result_refs, "
                    "tags_added, tags_removed, description, dialogue, frame_idrs, state_source, created_at) VALUES "
                    "('e1', 'c1', 'j1', 1, 'image', 'old scene', '[]', '{}', '{}', '', '', '[]', '', CURRENT_TIMESTAMP)"
                )
            )
        async with db.connect() as c:  # release 1 kept no erasure records nor stored story folds
            await c.execute(text("DROP TABLE erasures"))
            await c.execute(text("DROP TABLE story_folds"))
        assert "context" not in await _columns(db, "episodes")
        version = memory_models.SCHEMA_VERSION
        assert version == 6
        assert (
            await db.migrate(memory_models.Base.metadata, version=version, upgrades=memory_models.UPGRADES)
            == 1
        )
        assert {"context", "provider_label", "copy_check", "cast_members"} <= await _columns(db, "episodes")
        async with db.session() as s:
            old = await s.get(memory_models.Episode, "e1")
            assert old.prompt == "old scene" and old.context is None and old.provider_label == ""
            assert old.copy_check is None and old.cast_members is None
        assert {"erasures", "story_folds"} <= await _tables(db)
    finally:
        await db.close()


async def test_gateway_users_gain_a_name(db_url: str, db_schema: str, data_dir: Path) -> None:
    db = Database.open(DatabaseSettings(url=db_url), service="gateway", data_dir=data_dir, schema=db_schema)
    try:
        await _as_release_1(
            db, gateway_models.Base.metadata, "users", ["name", "failed_logins", "locked_until"]
        )
        async with db.connect() as c:  # release 1 had no shared rate buckets, reports or freezes
            for table in ("rate_buckets", "reports", "frozen_characters", "login_strikes"):
                await c.execute(text(f"DROP TABLE {table}"))
            await c.execute(
                text("DROP INDEX " + ("" if db.schema is None else f"{db.schema}.") + "ix_audit_log_resource")
            )
        async with db.connect() as c:
            await c.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, is_admin, disabled, created_at) VALUES "
                    "('usr_1', 'a@example.com', 'x', false, false, CURRENT_TIMESTAMP)"
                )
            )
        version = gateway_models.SCHEMA_VERSION
        assert version == 6
        assert (
            await db.migrate(gateway_models.Base.metadata, version=version, upgrades=gateway_models.UPGRADES)
            == 1
        )
        async with db.session() as s:
            user = await s.get(gateway_models.User, "usr_1")
            assert user.email == "a@example.com" and user.name == ""
            assert user.failed_logins == 0 and user.locked_until is None
        assert {"rate_buckets", "reports", "frozen_characters", "login_strikes"} <= await _tables(db)
        assert "ix_audit_log_resource" in await _indexes(db, "audit_log")
    finally:
        await db.close()


async def test_orchestrator_jobs_gain_their_tombstone_waits_and_outbox(
    db_url: str, db_schema: str, data_dir: Path
) -> None:
    db = Database.open(
        DatabaseSettings(url=db_url), service="orchestrator", data_dir=data_dir, schema=db_schema
    )
    try:
        v3 = ["waiting_for", "waiting_since", "committed_at", "cancel_requested_at"]
        await _as_release_1(db, orchestrator_models.Base.metadata, "jobs", [*v3, "cast_members"])
        async with db.connect() as c:
            await c.execute(
                text("DROP INDEX " + ("" if db.schema is None else f"{db.schema}.") + "ix_jobs_character")
            )
            await c.execute(text("ALTER TABLE jobs DROP COLUMN erased_at"))
            await c.execute(text("DROP TABLE outbox"))
            await c.execute(
                text(
                    "INSERT INTO jobs (id, owner_id, character_id, prompt, pose_image_uri, style_overrides, options, "
                    "status, step, attempts, requeues, checkpoint, result_image, metrics, error_code, error_message, "
                    "lease_owner, created_at, updated_at) VALUES ('j1', 'u1', 'c1', 'a walk', '', '[]', '{}', "
                    "'running', '', 1, 0, '{}', '{}', '{}', '', '', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        version = orchestrator_models.SCHEMA_VERSION
        assert version == 4
        assert (
            await db.migrate(
                orchestrator_models.Base.metadata, version=version, upgrades=orchestrator_models.UPGRADES
            )
            == 1
        )
        async with db.session() as s:
            job = await s.get(orchestrator_models.Job, "j1")
            assert job.prompt == "a walk" and job.erased_at is None
            assert job.waiting_for == "" and job.committed_at is None and job.cancel_requested_at is None
            assert job.cast_members is None
        assert "ix_jobs_character" in await _indexes(db, "jobs")
        assert "outbox" in await _tables(db) and {*v3, "cast_members"} <= await _columns(db, "jobs")
    finally:
        await db.close()


async def _indexes(db: Database, table: str) -> set[str]:
    from sqlalchemy import inspect

    async with db.connect() as c:
        return await c.run_sync(
            lambda sc: {i["name"] for i in inspect(sc).get_indexes(table, schema=db.schema)}
        )


async def test_trainer_gains_the_degradation_watch_tables(
    db_url: str, db_schema: str, data_dir: Path
) -> None:
    db = Database.open(DatabaseSettings(url=db_url), service="trainer", data_dir=data_dir, schema=db_schema)
    try:
        await db.migrate(trainer_models.Base.metadata, version=1)
        async with db.connect() as c:  # release 1 had no IDR history or decisions
            for table in ("idr_observations", "learning_decisions"):
                await c.execute(text(f"DROP TABLE {table}"))
        async with db.session() as s:
            s.add(trainer_models.LoraModel(id="lora_c1_v1", character_id="c1", version=1, status="active"))
        assert "idr_observations" not in await _tables(db)
        version = trainer_models.SCHEMA_VERSION
        assert version == 2
        found = await db.migrate(
            trainer_models.Base.metadata, version=version, upgrades=trainer_models.UPGRADES
        )
        assert found == 1
        assert {"idr_observations", "learning_decisions"} <= await _tables(db)
        async with db.session() as s:
            assert (await s.get(trainer_models.LoraModel, "lora_c1_v1")).status == "active"
    finally:
        await db.close()
