"""Consumption per user and day for administrators: jobs by status (by the day they were submitted), and the
usage rows (one per job that rendered, written with its end) as renders by provider, credits and cost (by the
day they were billed). Aggregated in SQL; a page is a run of (day, user) keys, newest day first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, union

from idlock.db import Database
from idlock.errors import InvalidInput
from idlock.pages import BAD_TOKEN, decode_token, encode_token
from services.orchestrator.models import Job, Usage

DEFAULT_DAYS = 30
MAX_DAYS = 366
DEFAULT_PAGE = 50
MAX_PAGE = 500
#: a billed job is one credit
CREDITS_PER_JOB = 1


@dataclass
class UsageDay:
    owner_id: str
    day: str
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    renders_by_provider: dict[str, int] = field(default_factory=dict)
    credits: int = 0
    cost_usd: float = 0.0
    job_seconds: float = 0.0


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a day as YYYY-MM-DD, got {value[:40]!r}") from None


def days_asked(from_day: str, to_day: str, today: date | None = None) -> tuple[date, date]:
    """The inclusive range asked for: by default the 30 days up to today (UTC), at most a year."""
    today = today or datetime.now(UTC).date()
    last = _day(to_day, "to_day") if to_day else today
    first = _day(from_day, "from_day") if from_day else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput(f"from_day {first} is after to_day {last}")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(
            f"a usage report spans at most {MAX_DAYS} days; asked for {(last - first).days + 1}"
        )
    return first, last


def _token(offset: int) -> str:
    return encode_token({"o": offset})


def _offset(token: str) -> int:
    if not token:
        return 0
    offset = decode_token(token).get("o")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput(BAD_TOKEN)
    return offset


class UsageReports:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _day_of(self, column: Any) -> Any:
        """The UTC day of a timestamp column, as YYYY-MM-DD text, in this database's dialect."""
        if self.db.dialect == "postgresql":
            return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
        return func.substr(column, 1, 10)  # SQLite keeps UTC timestamps as ISO text

    async def by_day(
        self,
        *,
        owner_id: str = "",
        from_day: str = "",
        to_day: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[UsageDay], str, tuple[date, date]]:
        """A page of (day, user) rows in the range asked, its next page's token, and the range."""
        if page_size < 0:
            raise InvalidInput(f"page_size must be >= 0, got {page_size}")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        first, last = days_asked(from_day, to_day)
        offset = _offset(page_token)
        start = datetime.combine(first, datetime.min.time(), UTC)
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)

        def in_range(model: Any) -> list[Any]:
            where = [model.created_at >= start, model.created_at < end]
            if owner_id:
                where.append(model.owner_id == owner_id)
            return where

        job_day, usage_day = self._day_of(Job.created_at), self._day_of(Usage.created_at)
        keys = union(
            select(job_day.label("day"), Job.owner_id.label("owner")).where(*in_range(Job)),
            select(usage_day.label("day"), Usage.owner_id.label("owner")).where(*in_range(Usage)),
        ).subquery()
        page_keys = (
            select(keys.c.day, keys.c.owner)
            .order_by(keys.c.day.desc(), keys.c.owner)
            .offset(offset)
            .limit(size + 1)
        )
        async with self.db.session() as s:
            found = [(str(d), str(o)) for d, o in (await s.execute(page_keys)).all()]
            more = len(found) > size
            found = found[:size]
            if not found:
                return [], "", (first, last)
            days = {k: UsageDay(owner_id=k[1], day=k[0]) for k in found}
            owners = sorted({o for _, o in found})
            jobs = (
                select(job_day, Job.owner_id, Job.status, func.count())
                .where(*in_range(Job), Job.owner_id.in_(owners))
                .group_by(job_day, Job.owner_id, Job.status)
            )
            for d, o, status, n in (await s.execute(jobs)).all():
                if (str(d), o) in days:
                    days[(str(d), o)].jobs_by_status[status] = int(n)
            usage = (
                select(
                    usage_day,
                    Usage.owner_id,
                    Usage.provider,
                    func.count(),
                    func.sum(Usage.estimated_cost_usd),
                    func.sum(Usage.total_seconds),
                )
                .where(*in_range(Usage), Usage.owner_id.in_(owners))
                .group_by(usage_day, Usage.owner_id, Usage.provider)
            )
            for d, o, provider, n, cost, seconds in (await s.execute(usage)).all():
                row = days.get((str(d), o))
                if row is None:
                    continue
                row.renders_by_provider[provider or "unknown"] = int(n)
                row.credits += int(n) * CREDITS_PER_JOB
                row.cost_usd += float(cost or 0.0)
                row.job_seconds += float(seconds or 0.0)
        return [days[k] for k in found], _token(offset + size) if more else "", (first, last)


__all__ = ["UsageDay", "UsageReports", "days_asked"]
