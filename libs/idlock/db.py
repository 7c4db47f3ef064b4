"""Relational storage per service: SQLAlchemy 2 async on SQLite (default) or Postgres.

Each service declares its models on `make_base("<service>")`, whose tables carry the schema `<service>`:
- SQLite: one file per service, `<data_dir>/<service>.sqlite3`; the schema is translated away. Statements run on
  the event loop's thread (`InlineSqliteConnection`): fast for a service's small queries, but a long one holds the
  service up meanwhile; Postgres is the store for production.
- Postgres: one schema per service (`CREATE SCHEMA IF NOT EXISTS`); the logical name is translated to the
  physical schema, so tests (or a shared database) can place a service under another name.

`migrate()` is a versioned create_all: a `schema_version` table in the service's schema records which
version of the models the tables match. Code never runs against tables newer than itself (SchemaTooNew).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from idlock.errors import InvalidInput, PreconditionFailed
from idlock.settings import DatabaseSettings

log = logging.getLogger("idlock.db")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLITE_BUSY_TIMEOUT_MS = 5000
#: execution option of read-only transactions (`Database.session(read_only=True)`)
READ_ONLY = "idlock_read_only"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: an upgrade step brings the tables from version N-1 to N; it runs inside the migration transaction
UpgradeStep = Callable[[AsyncConnection], Awaitable[None]]


def add_columns(table: str, *columns: str) -> UpgradeStep:
    """An upgrade step adding columns (each `"name TYPE ..."`) to one of the service's tables. The table name is
    unqualified: the search_path (Postgres) or the file (SQLite) picks the service's own."""

    async def step(conn: AsyncConnection) -> None:
        for column in columns:
            await conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))

    return step


async def new_tables_only(conn: AsyncConnection) -> None:
    """An upgrade step for a version that only adds tables: `create_all` adds them after the steps."""


class SchemaTooNew(PreconditionFailed):
    """The database was migrated by a newer release than this code."""


class SchemaUpgradeMissing(PreconditionFailed):
    """The stored schema is older than the code, and no upgrade step covers the gap."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=dt.UTC)


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(
            f"{kind} {name!r} must be lowercase letters, digits and '_' (at most 63), not a digit first"
        )
    return name


def make_base(service: str, *, type_annotation_map: Mapping[Any, Any] | None = None) -> type[DeclarativeBase]:
    """A declarative base whose tables live in the schema `service` (translated per backend at run time)."""
    _check_name("service schema", service)
    attrs: dict[str, Any] = {"metadata": MetaData(schema=service, naming_convention=NAMING_CONVENTION)}
    if type_annotation_map:
        attrs["type_annotation_map"] = dict(type_annotation_map)
    return type(f"{service.title().replace('_', '')}Base", (DeclarativeBase,), attrs)


def _version_table(service: str) -> Table:
    return Table(
        "schema_version",
        MetaData(schema=service),
        Column("version", Integer, primary_key=True),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("note", String(200), nullable=False, default=""),
    )


class Database:
    """One service's database: an async engine, a session factory and the schema it owns."""

    def __init__(self, engine: AsyncEngine, *, service: str, schema: str | None) -> None:
        self._base_engine = engine
        self.service = service
        #: physical Postgres schema, None on SQLite
        self.schema = schema
        self.translate_map: dict[str | None, str | None] = {service: schema}
        self.engine = engine.execution_options(schema_translate_map=self.translate_map)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: SQLite: a read-only transaction begins deferred, so it neither takes nor waits for the write lock
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._versions = _version_table(service)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    def open(
        cls,
        settings: DatabaseSettings,
        *,
        service: str,
        data_dir: Path,
        schema: str | None = None,
    ) -> Database:
        """The service's database. `schema` overrides the Postgres schema name (default: the service name)."""
        _check_name("service schema", service)
        url = settings.url
        if not url:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            url = f"sqlite+aiosqlite:///{Path(data_dir).resolve() / f'{service}.sqlite3'}"
        if url.startswith("sqlite"):
            engine = create_async_engine(url, echo=settings.echo, async_creator=_inline_sqlite(url))
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            return cls(engine, service=service, schema=None)
        physical = _check_name("database schema", schema or service)
        engine = create_async_engine(
            url,
            echo=settings.echo,
            pool_size=settings.pool_size,
            pool_pre_ping=True,
            # raw SQL in upgrade steps finds the service's tables without qualifying them
            connect_args={"server_settings": {"search_path": f"{physical},public"}},
        )
        return cls(engine, service=service, schema=physical)

    @contextlib.asynccontextmanager
    async def session(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block succeeds and rolls back when it raises.

        `read_only`: the block only reads. On SQLite its transactions do not take the write lock, so a read that
        awaits something else meanwhile (a model, a peer) holds no writer up; a write in it may fail as busy."""
        async with self._closing((self._read_sessions if read_only else self._sessions)()) as s:
            try:
                yield s
                await s.commit()
            except BaseException:
                await s.rollback()
                raise

    @contextlib.asynccontextmanager
    async def connect(self, *, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction (committed on success), with the schema translation applied;
        `read_only` as for `session`."""
        engine = self._read_engine if read_only else self.engine
        async with self._closing(engine.connect()) as conn, conn.begin():
            yield conn

    @contextlib.asynccontextmanager
    async def _closing(self, handle: Any) -> AsyncIterator[Any]:
        """A session or connection, given back to the pool at the end. SQLAlchemy's own context managers close in
        a task of their own, so that a cancel cannot cut the close short; that costs each transaction 3 loop turns,
        in which any other ready work runs first (in the pipeline a job's claim took 3.8 ms at the median, 1.0 ms
        alone). An inline SQLite connection closes without suspending, so no cancel can reach the close: it
        closes at once. Other engines close the guarded way."""
        if self.dialect != "sqlite":
            async with handle as entered:
                yield entered
            return
        if isinstance(handle, AsyncConnection):
            await handle.start()
        try:
            yield handle
        finally:
            await handle.close()

    async def stored_version(self) -> int | None:
        """The recorded schema version; None for an empty schema."""
        async with self.engine.connect() as conn:
            return await self._read_version(conn)

    async def _read_version(self, conn: AsyncConnection) -> int | None:
        def has_table(sync_conn: Any) -> bool:
            from sqlalchemy import inspect

            return inspect(sync_conn).has_table("schema_version", schema=self.schema)

        if not await conn.run_sync(has_table):
            return None
        return (await conn.execute(select(func.max(self._versions.c.version)))).scalar_one_or_none()

    async def migrate(
        self,
        metadata: MetaData,
        *,
        version: int,
        upgrades: Mapping[int, UpgradeStep] | None = None,
    ) -> int:
        """Bring the schema to `version`: create everything on an empty schema, run upgrade steps
        `stored+1 … version` on an older one, refuse a newer one. Returns the version it found (0 if empty).

        Steps run before create_all (which then adds any brand-new tables), all in one transaction.
        """
        if version < 1:
            raise InvalidInput(f"schema version must be >= 1, got {version}")
        upgrades = dict(upgrades or {})
        async with self.engine.begin() as conn:
            if self.schema is not None:
                # one migrator at a time when several replicas start together
                lock_id = int.from_bytes(
                    hashlib.sha256(self.schema.encode()).digest()[:8], "big", signed=True
                )
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            stored = await self._read_version(conn)
            if stored is not None and stored > version:
                raise SchemaTooNew(
                    f"{self.service} database schema is at version {stored}, "
                    f"newer than this code's {version}; run the newer release or restore a backup",
                    details={"service": self.service, "stored": stored, "code": version},
                )
            if stored == version:
                return stored
            if stored is not None:
                missing = [v for v in range(stored + 1, version + 1) if v not in upgrades]
                if missing:
                    raise SchemaUpgradeMissing(
                        f"{self.service} database schema is at version {stored}, code needs {version}, "
                        f"but no upgrade step is given for version(s) {missing}",
                        details={
                            "service": self.service,
                            "stored": stored,
                            "code": version,
                            "missing": missing,
                        },
                    )
                for v in range(stored + 1, version + 1):
                    await upgrades[v](conn)
            await conn.run_sync(metadata.create_all, checkfirst=True)
            await conn.run_sync(self._versions.metadata.create_all, checkfirst=True)
            await conn.execute(
                self._versions.insert().values(
                    version=version,
                    applied_at=dt.datetime.now(dt.UTC),
                    note="created" if stored is None else f"upgraded from {stored}",
                )
            )
            return stored or 0

    async def scrub(self) -> None:
        """After an erasure: SQLite keeps old page images in its WAL file until a checkpoint rewrites and
        truncates it (deleted rows are zeroed in the database file itself: secure_delete is on). Postgres leaves
        dead rows to autovacuum; nothing reads them through SQL."""
        path = self._base_engine.url.database
        if self.dialect != "sqlite" or not path or path == ":memory:":
            return
        for _ in range(50):  # a reader in the middle of a transaction holds the WAL: wait for it, briefly
            if await asyncio.to_thread(_checkpoint_truncate, path):
                return
            await asyncio.sleep(0.1)
        log.warning(
            "the SQLite WAL of %s was not emptied after an erasure: readers kept it busy", self.service
        )

    async def close(self) -> None:
        await self._base_engine.dispose()


#: loop turns a call started just before a statement needs to send its request: a unary gRPC call through the
#: mesh's client interceptors takes 2-3 (its task, the interceptor's, the call's own, then the send); a turn with
#: nothing ready costs microseconds
SEND_TURNS = 6


async def let_started_calls_leave(turns: int = SEND_TURNS) -> None:
    """Give calls started just now (`asyncio.ensure_future`) the loop turns they need to send their requests before
    a statement runs: an inline SQLite statement holds the loop, and one turn was not enough (the request of a
    memory read started before a job's claim left only after the claim, measured 4.8 ms later at the median). On
    Postgres the statement awaits its server anyway; the turns cost nothing there."""
    for _ in range(turns):
        await asyncio.sleep(0)


class _RunNow:
    """Takes the place of aiosqlite's queue to its worker thread: runs each call at once, on the caller's thread."""

    def put_nowait(self, item: tuple[asyncio.Future | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as e:  # noqa: BLE001 - handed to the awaiting caller, as the worker thread does
            if future is not None:
                future.set_exception(e)
            return
        if future is not None:
            future.set_result(result)


class InlineSqliteConnection(aiosqlite.Connection):
    """aiosqlite's connection without its worker thread: statements run on the event loop's own thread.

    A service's statements take tens of microseconds, while handing each to a thread and back took ~0.2 ms and a
    query takes ~9 such hops (2.5 ms for one primary-key select, measured). What must not block the loop is waiting
    for another transaction's write lock: SQLite's busy handler is off (busy_timeout=0) and a statement refused
    with SQLITE_BUSY (which has had no effect) is retried here after an asyncio sleep, so the lock holder runs.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Any:
        return self._connect().__await__()  # no worker thread to start

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.0005
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as e:
                code = getattr(e, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
                busy = code == sqlite3.SQLITE_BUSY or "locked" in str(e)
                if not busy or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.01)


def _inline_sqlite(url: str) -> Callable[[], Awaitable[InlineSqliteConnection]]:
    path = make_url(url).database or ":memory:"

    async def connect() -> InlineSqliteConnection:
        return await InlineSqliteConnection(lambda: sqlite3.connect(path, timeout=0, check_same_thread=False))

    return connect


def _checkpoint_truncate(path: str) -> bool:
    """Copy the WAL into the database and empty it, on a connection of its own (outside any transaction);
    False when a reader kept it busy."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    finally:
        conn.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # the driver's own transaction handling skips DDL; _sqlite_begin makes migrations truly transactional
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cur.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
        cur.execute(
            "PRAGMA busy_timeout=0"
        )  # waiting for a lock happens in InlineSqliteConnection, not the loop
        cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, much faster commits
        cur.execute("PRAGMA secure_delete=ON")  # an erased row's bytes are zeroed, not left in free pages
    finally:
        cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes while another
    # connection writes fails at once with "database is locked", without waiting out busy_timeout. A read-only
    # one begins deferred: under WAL it reads a snapshot and never waits for writers, nor they for it.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")
