"""The reconciler: Postgres (or SQLite) is the source of truth for job state, so jobs stuck in queued or running
(a lost message, a dead worker whose lease ran out) are re-enqueued; one that keeps getting stuck ends `failed`."""

from __future__ import annotations

import asyncio
import logging

from idlock.v1 import common_pb2
from services.orchestrator.job_events import job_event
from services.orchestrator.models import FAILED
from services.orchestrator.runtime import OrchestratorRuntime

log = logging.getLogger("idlock.orchestrator")


class Reconciler:
    def __init__(self, rt: OrchestratorRuntime) -> None:
        self.rt = rt

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.rt.settings.reconcile_interval_s)
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciler round failed")

    async def once(self) -> list[str]:
        """Re-enqueue jobs stuck in queued/running; give up after max_requeues. Returns the ids re-enqueued."""
        rt, s = self.rt, self.rt.settings
        out: list[str] = []
        for job in await rt.store.stuck(s.stuck_after_s):
            if job.requeues >= s.max_requeues:
                msg = f"stuck in {job.status} after {job.requeues} re-enqueues; gave up"
                if await rt.store.finish(job.id, FAILED, error_code="stuck", error_message=msg):
                    await rt.jobs.events.emit(
                        "failed",
                        job_event(job, common_pb2.JOB_STATUS_FAILED, error_code="stuck", message=msg),
                        f"{job.id}:failed",
                    )
                continue
            n = await rt.store.bump_requeue(job.id, job.updated_at)
            if n is None:
                continue
            await rt.publish_work(job, msg_id=f"{job.id}:r{n}")
            log.info("re-enqueued job %s (stuck in %s), requeue %d", job.id, job.status, n)
            out.append(job.id)
        return out


__all__ = ["Reconciler"]
