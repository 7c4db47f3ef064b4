"""Erasing a character: a job with a record, not a single call. The record (`erasures`) is written before the
first store is touched; each store's step is idempotent; the record is finished once every store is clean and
`idlock.events.character.deleted` is on the bus, which is how the orchestrator (jobs), the trainer (datasets,
LoRAs) and the rest erase their part. An erasure a crash left unfinished is taken up again at start-up, and a
DeleteCharacter called again finishes it too."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from idlock import subjects
from idlock.v1 import events_pb2
from services.memory import characters
from services.memory.characters import StoreReport
from services.memory.models import Erasure, utcnow
from services.memory.runtime import MemoryRuntime
from services.memory.views import now

log = logging.getLogger("idlock.memory")


async def record_erasure(session: AsyncSession, character_id: str, owner_id: str) -> Erasure:
    """The character's erasure record, made before any store is touched (kept when one exists)."""
    row = await session.get(Erasure, character_id)
    if row is None:
        row = Erasure(character_id=character_id, owner_id=owner_id, requested_at=utcnow())
        session.add(row)
        await session.commit()
    return row


async def _finish(session: AsyncSession, character_id: str, removed: Mapping[str, int]) -> None:
    row = await session.get(Erasure, character_id)
    if row is not None and row.finished_at is None:
        row.finished_at = utcnow()
        row.removed = dict(removed)
        await session.commit()


async def _unfinished(session: AsyncSession) -> list[Erasure]:
    q = select(Erasure).where(Erasure.finished_at.is_(None)).order_by(Erasure.requested_at)
    return list((await session.execute(q)).scalars())


#: the report's line for telling the other services (their own stores follow the event)
EVENTS = "events"


class Erasures:
    def __init__(self, rt: MemoryRuntime) -> None:
        self.rt = rt

    async def begin(self, character_id: str, owner_id: str) -> None:
        async with self.rt.db.session() as s:
            await record_erasure(s, character_id, owner_id)

    async def unfinished_owner(self, character_id: str, owner_id: str | None) -> str | None:
        """The owner of the character's unfinished erasure (None: there is none, or it is another owner's)."""
        async with self.rt.db.session(read_only=True) as s:
            row = await s.get(Erasure, character_id)
        if row is None or row.finished_at is not None or (owner_id and row.owner_id != owner_id):
            return None
        return row.owner_id

    async def run(self, character_id: str, owner_id: str, *, resume: bool = False) -> list[StoreReport]:
        """Every store's step, then the event; the record is finished only when all of them went through."""
        rt = self.rt
        rt.states.forget(character_id)
        rt.scene_prompts.forget(character_id)
        reports = await characters.erase_character(
            rt.db.session, rt.store, rt.vectors, rt.cache, character_id, resume=resume
        )
        if all(r.ok for r in reports):
            reports.append(await self._announce(character_id, owner_id))
        if all(r.ok for r in reports):
            async with rt.db.session() as s:
                await _finish(s, character_id, {r.store: r.removed for r in reports})
        await rt.db.scrub()
        return reports

    async def _announce(self, character_id: str, owner_id: str) -> StoreReport:
        report = StoreReport(EVENTS)
        if self.rt.bus is None:
            report.ok = False
            report.error = "no NATS connection: the other services were not told; the erasure resumes later"
            return report
        try:
            await self.rt.bus.publish(
                subjects.CHARACTER_DELETED,
                events_pb2.CharacterDeleted(character_id=character_id, owner_id=owner_id, at=now()),
                msg_id=f"character.deleted.{character_id}",
            )
            report.removed = 1
        except Exception as e:  # noqa: BLE001 - reported; the record stays unfinished and is taken up again
            report.ok = False
            report.error = f"publishing {subjects.CHARACTER_DELETED} failed: {type(e).__name__}: {e}"
        return report

    async def resume(self) -> int:
        """Finish the erasures a previous process left unfinished; how many were taken up."""
        async with self.rt.db.session() as s:
            pending = [(e.character_id, e.owner_id) for e in await _unfinished(s)]
        for character_id, owner_id in pending:
            try:
                reports = await self.run(character_id, owner_id, resume=True)
            except Exception:
                log.exception(
                    "resuming the erasure of %s failed; it is tried again at the next start", character_id
                )
                continue
            failed = [r.store for r in reports if not r.ok]
            if failed:
                log.warning("erasure of %s still unfinished (%s)", character_id, ", ".join(failed))
            else:
                log.info("erasure of %s, left unfinished by an earlier process, is done", character_id)
        return len(pending)


__all__ = ["EVENTS", "Erasures", "record_erasure"]
