"""Database on SQLite and Postgres: versioned create_all, upgrades, refusal of newer schemas, sessions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import ForeignKey, String, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from idlock.db import Database, SchemaTooNew, SchemaUpgradeMissing, make_base
from idlock.errors import InvalidInput
from idlock.settings import DatabaseSettings

SERVICE = "memory"

# version 1 of a service's models
BaseV1 = make_base(SERVICE)


class CharacterV1(BaseV1):
    __tablename__ = "characters"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class EpisodeV1(BaseV1):
    __tablename__ = "episodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[str] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"))
    summary: Mapped[str] = mapped_column(String(200))


# version 2 adds a column to characters and a new table
BaseV2 = make_base(SERVICE)


class CharacterV2(BaseV2):
    __tablename__ = "characters"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    nickname: Mapped[str | None] = mapped_column(String(50))


class EpisodeV2(BaseV2):
    __tablename__ = "episodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[str] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"))
    summary: Mapped[str] = mapped_column(String(200))


class ConsolidationV2(BaseV2):
    __tablename__ = "consolidations"
    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[str] = mapped_column(ForeignKey("characters.id"))


async def add_nickname(conn: AsyncConnection) -> None:
    # unqualified on purpose: the search_path (Postgres) / the file (SQLite) picks the service's table
    await conn.execute(text("ALTER TABLE characters ADD COLUMN nickname VARCHAR(50)"))


@pytest.fixture
async def db(db_url: str, db_schema: str, data_dir: Path) -> AsyncIterator[Database]:
    d = Database.open(DatabaseSettings(url=db_url), service=SERVICE, data_dir=data_dir, schema=db_schema)
    yield d
    await d.close()


async def columns(db: Database, table: str) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns(table, schema=db.schema)}
        )


async def test_empty_schema_is_created_and_versioned(db: Database, db_schema: str, data_dir: Path) -> None:
    assert await db.stored_version() is None
    assert await db.migrate(BaseV1.metadata, version=1) == 0
    assert await db.stored_version() == 1
    assert await db.migrate(BaseV1.metadata, version=1) == 1  # idempotent

    async with db.session() as s:
        s.add(CharacterV1(id="c1", name="Mira"))
        s.add(EpisodeV1(character_id="c1", summary="red scarf, rain"))
    async with db.session() as s:
        row = (await s.execute(select(CharacterV1).where(CharacterV1.id == "c1"))).scalar_one()
        assert row.name == "Mira"

    if db.dialect == "sqlite":
        assert (data_dir / f"{SERVICE}.sqlite3").is_file()
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            # waiting for the write lock happens in the connection, off SQLite's blocking busy handler
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 0
    else:
        assert db.schema == db_schema
        async with db.engine.connect() as conn:
            tables = set(
                (
                    await conn.execute(
                        text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                        {"s": db_schema},
                    )
                ).scalars()
            )
        assert tables == {"characters", "episodes", "schema_version"}


async def test_sqlite_writers_wait_for_each_other_without_blocking_the_loop(data_dir: Path) -> None:
    # statements run on the loop's thread: a transaction waiting for another's write lock must yield to the loop,
    # or the holder (suspended in an await) could never commit
    a = Database.open(DatabaseSettings(url=""), service=SERVICE, data_dir=data_dir)
    b = Database.open(DatabaseSettings(url=""), service=SERVICE, data_dir=data_dir)  # same file, own pool
    await a.migrate(BaseV1.metadata, version=1)
    ticks = 0
    holding = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async def holder() -> None:
        async with a.session() as s:
            s.add(CharacterV1(id="first", name="A"))
            await s.flush()  # the write lock is taken here
            holding.set()
            await asyncio.sleep(0.3)

    async def waiter() -> float:
        await holding.wait()
        started = time.monotonic()
        async with b.session() as s:
            s.add(CharacterV1(id="second", name="B"))
        return time.monotonic() - started

    tick = asyncio.create_task(ticker())
    try:
        _, waited = await asyncio.gather(holder(), waiter())
    finally:
        tick.cancel()
    assert waited >= 0.2  # it really waited for the holder's commit
    assert ticks >= 20  # and the loop kept running meanwhile
    async with a.session() as s:
        assert {c.id for c in (await s.execute(select(CharacterV1))).scalars()} == {"first", "second"}
    await a.close()
    await b.close()


async def test_sqlite_read_only_transactions_hold_no_writer_up(data_dir: Path) -> None:
    # a read that awaits something else meanwhile (a model, a peer) must not keep writers waiting; an ordinary
    # session would (its transactions take the write lock up front)
    a = Database.open(DatabaseSettings(url=""), service=SERVICE, data_dir=data_dir)
    b = Database.open(DatabaseSettings(url=""), service=SERVICE, data_dir=data_dir)
    await a.migrate(BaseV1.metadata, version=1)

    async def write_while_reading(read_only: bool, name: str) -> float:
        async with a.session(read_only=read_only) as s:
            before = {c.id for c in (await s.execute(select(CharacterV1))).scalars()}
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.3), b.session() as w:
                    w.add(CharacterV1(id=name, name=name))
            waited = time.monotonic() - started
            # the read's snapshot is unchanged, and reading again in it still works
            assert {c.id for c in (await s.execute(select(CharacterV1))).scalars()} == before
        return waited

    assert await write_while_reading(True, "during-read") < 0.2
    assert await write_while_reading(False, "blocked") >= 0.3  # the writer gave up waiting
    async with a.connect(read_only=True) as c:
        rows = (await c.execute(select(CharacterV1.__table__.c.id))).scalars().all()
    assert rows == ["during-read"]
    await a.close()
    await b.close()


async def test_an_embedded_transaction_ends_without_handing_the_loop_to_other_work(data_dir: Path) -> None:
    """On SQLite a short transaction runs to its end on the loop: other ready work waits for it, not it for them
    (SQLAlchemy's own close takes 3 loop turns, in which everything else ready runs first: a job's claim took
    3.8 ms in the pipeline against 1.0 ms alone). Each connection still goes back to the pool, also when the block
    raises or is cancelled while it awaits."""
    db = Database.open(DatabaseSettings(url=""), service=SERVICE, data_dir=data_dir)
    await db.migrate(BaseV1.metadata, version=1)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    try:
        before = turns
        for i in range(20):
            async with db.session() as s:
                s.add(CharacterV1(id=f"c{i}", name="Mira"))
            async with db.connect(read_only=True) as c:
                assert (await c.execute(select(CharacterV1.__table__.c.name))).first() is not None
        assert turns == before
    finally:
        other.cancel()

    pool = db.engine.sync_engine.pool
    with pytest.raises(RuntimeError):
        async with db.connect() as c:
            await c.execute(text("SELECT 1"))
            raise RuntimeError("a step failed")

    async def held_in_a_transaction() -> None:
        async with db.session() as s:
            s.add(CharacterV1(id="cancelled", name="Tove"))
            await s.flush()
            await asyncio.sleep(10)

    held = asyncio.create_task(held_in_a_transaction())
    await asyncio.sleep(0.05)
    assert pool.checkedout() == 1
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert pool.checkedout() == 0  # every connection is back, the cancelled one's write rolled back
    async with db.session() as s:
        assert (await s.get(CharacterV1, "cancelled")) is None
    await db.close()


async def test_foreign_keys_are_enforced(db: Database) -> None:
    await db.migrate(BaseV1.metadata, version=1)
    with pytest.raises(IntegrityError):
        async with db.session() as s:
            s.add(EpisodeV1(character_id="nobody", summary="orphan"))


async def test_session_rolls_back_on_error(db: Database) -> None:
    await db.migrate(BaseV1.metadata, version=1)
    with pytest.raises(RuntimeError):
        async with db.session() as s:
            s.add(CharacterV1(id="c2", name="Tove"))
            await s.flush()
            raise RuntimeError("render failed")
    async with db.session() as s:
        assert (await s.get(CharacterV1, "c2")) is None


async def test_newer_stored_version_is_refused_and_nothing_changes(db: Database) -> None:
    await db.migrate(BaseV2.metadata, version=2, upgrades={})
    before = await columns(db, "characters")
    with pytest.raises(SchemaTooNew, match="version 2, newer than this code's 1"):
        await db.migrate(BaseV1.metadata, version=1)
    assert await db.stored_version() == 2
    assert await columns(db, "characters") == before


async def test_older_version_runs_upgrade_steps(db: Database) -> None:
    await db.migrate(BaseV1.metadata, version=1)
    async with db.session() as s:
        s.add(CharacterV1(id="c1", name="Mira"))

    ran: list[int] = []

    async def step2(conn: AsyncConnection) -> None:
        ran.append(2)
        await add_nickname(conn)

    async def step3(conn: AsyncConnection) -> None:
        ran.append(3)
        await conn.execute(text("UPDATE characters SET nickname = 'M' WHERE nickname IS NULL"))

    assert await db.migrate(BaseV2.metadata, version=3, upgrades={3: step3, 2: step2}) == 1
    assert ran == [2, 3]
    assert await db.stored_version() == 3
    async with db.session() as s:
        c = await s.get(CharacterV2, "c1")
        assert c is not None and c.nickname == "M"
        s.add(ConsolidationV2(character_id="c1"))  # the new table was created


async def test_upgrade_without_steps_is_refused(db: Database) -> None:
    await db.migrate(BaseV1.metadata, version=1)
    with pytest.raises(SchemaUpgradeMissing, match=r"version\(s\) \[2\]"):
        await db.migrate(BaseV2.metadata, version=2)
    with pytest.raises(SchemaUpgradeMissing, match=r"\[3\]"):
        await db.migrate(BaseV2.metadata, version=3, upgrades={2: add_nickname})
    assert await db.stored_version() == 1
    assert "nickname" not in await columns(db, "characters")


async def test_failed_upgrade_rolls_back_everything(db: Database) -> None:
    await db.migrate(BaseV1.metadata, version=1)

    async def broken(conn: AsyncConnection) -> None:
        await add_nickname(conn)
        raise RuntimeError("step failed half way")

    with pytest.raises(RuntimeError, match="half way"):
        await db.migrate(BaseV2.metadata, version=2, upgrades={2: broken})
    assert await db.stored_version() == 1
    assert "nickname" not in await columns(db, "characters")


def test_bad_names_are_refused(data_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="service schema"):
        make_base("Memory; DROP")
    with pytest.raises(InvalidInput, match="database schema"):
        Database.open(
            DatabaseSettings(url="postgresql://u@localhost/db"),
            service="memory",
            data_dir=data_dir,
            schema="x-y",
        )
