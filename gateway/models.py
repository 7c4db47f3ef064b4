"""The gateway's own tables (schema `gateway`): users, API keys, audit log, rate buckets, reports and frozen
characters."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from idlock.db import add_columns, make_base, new_tables_only

Base = make_base("gateway")
#: 2: users.name; 3: users.failed_logins, users.locked_until; 4: rate_buckets; 5: reports, frozen_characters;
#: 6: login_strikes
SCHEMA_VERSION = 6


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    #: how the user is called (optional)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="", server_default="")
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    #: failed sign-ins in a row, and until when the account refuses sign-ins after them
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RateBucket(Base):
    """A rate limit's token bucket, shared by every gateway replica (`ratelimit.SharedLimiter`)."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    #: unix time of the last take
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class LoginStrike(Base):
    """Failed sign-ins for an email no account has, counted and locked as an account's are, so that a lock-out
    answer (429) tells nothing about whether the account exists. Keyed by the email's sha256; rows idle for a day
    are pruned."""

    __tablename__ = "login_strikes"

    email_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, index=True
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, index=True
    )
    user_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(50), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(30), nullable=False, default="")
    resource_id: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    client_ip: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    request_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    details: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")

    #: reports find a character's owner and a job's character here
    __table_args__ = (Index("ix_audit_log_resource", "resource_type", "resource_id"),)


class Report(Base):
    """A user's report of a character or a job (seed §10). Open until an administrator resolves it."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    reporter_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    target_type: Mapped[str] = mapped_column(String(20), nullable=False)  # character | job
    target_id: Mapped[str] = mapped_column(String(100), nullable=False)
    #: the character the target belongs to; "" when the id names nothing (the reporter is not told)
    character_id: Mapped[str] = mapped_column(String(100), nullable=False, default="", index=True)
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="open", index=True)
    resolution: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_by: Mapped[str] = mapped_column(String(40), nullable=False, default="")


class FrozenCharacter(Base):
    """A reported character: generation, history and its files answer 423 for everyone until resolved."""

    __tablename__ = "frozen_characters"

    character_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(40), nullable=False)
    frozen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


async def _v5_reports(conn) -> None:
    """reports and frozen_characters are new tables; the audit log gets an index on what it is about."""
    await conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_audit_log_resource ON audit_log (resource_type, resource_id)")
    )


#: upgrade steps of earlier schema versions, by the version they bring the tables to
UPGRADES = {
    2: add_columns("users", "name VARCHAR(200) NOT NULL DEFAULT ''"),
    3: add_columns(
        "users", "failed_logins INTEGER NOT NULL DEFAULT 0", "locked_until TIMESTAMP WITH TIME ZONE"
    ),
    4: new_tables_only,
    5: _v5_reports,
    6: new_tables_only,
}
