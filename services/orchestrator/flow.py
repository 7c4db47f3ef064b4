"""The generation pipeline of one job (seed §5.2), over injected peers: no gRPC or NATS imports here.

    claim → consent re-check → context → render → score → refine gate → state → record → succeeded

A step that cost money or long work (render, refinement, a vision model's state) is checkpointed in the job row
before the next starts; a redelivered job (a worker crashed, a reconciler re-enqueue) skips what is done, so it
never renders twice. Steps that are cheap and safe to redo (context, score, the heuristic state, the idempotent
RecordEpisode) ride along with the next write instead of costing one each. Before a paid step the flow makes a
conditional write, so a job cancelled meanwhile stops there. Permanent errors (bad input, not found, no consent)
end the job `failed` at once; transient ones (unavailable, deadline, quota) are raised so the message is redelivered with backoff, and on the final
delivery the job ends `failed` before the bus writes the dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from google.protobuf import timestamp_pb2

from idlock import telemetry
from idlock.errors import (
    IdlockError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
    Unimplemented,
)
from idlock.storage import ObjectStore
from idlock.v1 import (
    common_pb2,
    events_pb2,
    identity_service_pb2,
    memory_service_pb2,
    refiner_service_pb2,
    render_service_pb2,
)
from idlock.v1 import (
    orchestrator_service_pb2 as pb,
)
from services.orchestrator.jobs import JobStore, dict_to_msg, msg_to_dict, to_proto
from services.orchestrator.models import FAILED, NEEDS_MORE_REFS, RUNNING, SUCCEEDED, Job, aware, utcnow
from services.orchestrator.state_extraction import HEURISTIC, StateExtractor

log = logging.getLogger("idlock.orchestrator.flow")

STEPS = ("context", "render", "score", "refine", "state", "record")
PERMANENT = (InvalidInput, NotFound, PreconditionFailed, PermissionDenied, Unimplemented)
#: refine_note prefix when the refiner could not run (the job goes on with the unrefined image)
REFINER_UNAVAILABLE = "refiner could not run; the image was kept"


#: steps that call a paid provider: a cancelled job must not start them (the refiner is guarded where it is called)
PAID_STEPS = frozenset({"render", "regenerate"})


@dataclass
class EarlyContext:
    """BuildContext asked for from the queue's message, while the job is claimed."""

    work: events_pb2.GenerateJobWork
    task: asyncio.Future[memory_service_pb2.BuildContextResponse]

    def asks_for(self, job: Job) -> bool:
        """Whether it was asked with what the job's row holds (the row is the truth)."""
        w = self.work
        return (w.character_id, w.owner_id, w.prompt, list(w.style_overrides)) == (
            job.character_id,
            job.owner_id,
            job.prompt,
            list(job.style_overrides or []),
        )


class Checkpoint(dict):
    """A running job's finished steps (name -> result), and whether the last thing done was a conditional write that
    found the job still running here (`confirmed`; a step run since may not be in the row yet). `unwritten`: a step
    whose result must be written before the job goes on; it is written while the next step's call is out."""

    def __init__(self, done: Mapping[str, Any] | None = None) -> None:
        super().__init__(done or {})
        self.confirmed = True
        self.unwritten = ""


class Peers(Protocol):
    async def get_character(
        self, character_id: str, owner_id: str, *, timeout_s: float
    ) -> memory_service_pb2.Character: ...

    async def build_context(
        self,
        character_id: str,
        owner_id: str,
        prompt: str,
        style_overrides: Sequence[str],
        *,
        timeout_s: float,
    ) -> memory_service_pb2.BuildContextResponse: ...

    async def render_image(
        self, request: render_service_pb2.RenderImageRequest, *, timeout_s: float
    ) -> render_service_pb2.RenderImageResponse: ...

    async def score_identity(
        self,
        character_id: str,
        identity: common_pb2.IdentityVector,
        image: common_pb2.ImageRef,
        *,
        timeout_s: float,
    ) -> identity_service_pb2.ScoreIdentityResponse: ...

    async def record_episode(
        self, episode: memory_service_pb2.Episode, *, timeout_s: float
    ) -> memory_service_pb2.RecordEpisodeResponse: ...

    async def refine_image(
        self, request: refiner_service_pb2.RefineRequest, *, timeout_s: float
    ) -> refiner_service_pb2.RefineResponse: ...


class EventSink(Protocol):
    async def job_event(self, verb: str, event: events_pb2.JobEvent, msg_id: str) -> None: ...


@dataclass(frozen=True)
class FlowConfig:
    generation_timeout_s: float = 120.0
    refine_timeout_s: float = 90.0
    step_timeout_s: float = 30.0
    refine_threshold: float = 0.70
    lease_s: float = 30.0
    cost_per_job_usd: float = 0.0
    #: video jobs (services/orchestrator/video_flow.py)
    video_timeout_s: float = 900.0
    video_duration_s: float = 0.0
    video_frame_every_s: float = 1.0
    video_regenerations: int = 1
    operation_watch_s: float = 0.25

    @classmethod
    def from_settings(cls, s: Any) -> FlowConfig:
        return cls(
            generation_timeout_s=s.generation_timeout_s,
            refine_timeout_s=s.refine_timeout_s,
            step_timeout_s=s.step_timeout_s,
            refine_threshold=s.refine_threshold,
            lease_s=s.ack_wait_s,
            cost_per_job_usd=s.cost_per_job_usd,
            video_timeout_s=getattr(s, "video_timeout_s", 900.0),
            video_duration_s=getattr(s, "video_duration_s", 0.0),
            video_frame_every_s=getattr(s, "video_frame_every_s", 1.0),
            video_regenerations=getattr(s, "video_regenerations", 1),
        )


class _Stop(Exception):
    """The job is no longer running for this worker (cancelled, or another worker took it over)."""


class _JobFailed(Exception):
    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def job_seed(job_id: str) -> int:
    """A render seed derived from the job id: a redelivered job draws the same scene."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") % 2_147_483_646 + 1


def _now_ts() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(utcnow())
    return ts


class GenerationFlow:
    def __init__(
        self,
        store: JobStore,
        peers: Peers,
        events: EventSink,
        extractor: StateExtractor,
        config: FlowConfig,
        *,
        worker_id: str,
        objects: ObjectStore | None = None,
    ) -> None:
        self.store = store
        self.peers = peers
        self.events = events
        self.extractor = extractor
        self.config = config
        self.worker_id = worker_id
        self.objects = objects
        #: awaited after each step is checkpointed (tests use it to stop a worker mid-job)
        self.after_step: Callable[[str, str], Awaitable[None]] | None = None
        #: per job, the last event still being published in the background
        self._event_tails: dict[str, asyncio.Future] = {}

    # --- events -----------------------------------------------------------------------------------------------

    def event(self, job: Job, status: int, **fields: Any) -> events_pb2.JobEvent:
        ev = events_pb2.JobEvent(
            job_id=job.id,
            owner_id=job.owner_id,
            character_id=job.character_id,
            status=status,
            prompt=job.prompt,
            at=_now_ts(),
        )
        for k, v in fields.items():
            if v is None:
                continue
            if k in ("result_image", "metrics"):
                getattr(ev, k).CopyFrom(v)
            else:
                setattr(ev, k, v)
        return ev

    async def emit(self, verb: str, ev: events_pb2.JobEvent, msg_id: str) -> None:
        """Publish now, after the job's events still on their way (events of a job stay in order)."""
        pending = self._event_tails.pop(ev.job_id, None)
        if pending is not None:
            await pending
        await self._publish(verb, ev, msg_id)

    def emit_soon(self, verb: str, ev: events_pb2.JobEvent, msg_id: str) -> None:
        """Publish in the background, in order: progress events need not hold the next step up."""
        previous = self._event_tails.get(ev.job_id)

        async def publish() -> None:
            if previous is not None:
                await previous
            await self._publish(verb, ev, msg_id)

        task = asyncio.ensure_future(publish())
        self._event_tails[ev.job_id] = task
        task.add_done_callback(
            lambda t: self._event_tails.pop(ev.job_id, None) if self._event_tails.get(ev.job_id) is t else None
        )

    async def _publish(self, verb: str, ev: events_pb2.JobEvent, msg_id: str) -> None:
        try:
            await self.events.job_event(verb, ev, msg_id)
        except Exception as e:  # noqa: BLE001 - the row is the truth; an event lost to an outage is logged
            log.warning("job %s: publishing job.%s failed: %s", ev.job_id, verb, e)

    # --- running a job ----------------------------------------------------------------------------------------

    async def _claim(self, job_id: str, on_wait: Callable[[], None] | None = None):
        """Claim the job; while another live worker holds it, wait for its lease to run out (at most 2 leases),
        calling `on_wait` first."""
        give_up = time.monotonic() + 2 * self.config.lease_s + 1.0
        while True:
            claim = await self.store.claim(job_id, self.worker_id, self.config.lease_s)
            if claim.outcome != "busy":
                return claim
            if on_wait is not None:
                on_wait()
            if time.monotonic() >= give_up:
                raise Unavailable(f"job {job_id} is being run by worker {claim.job.lease_owner}")
            wait = (aware(claim.lease_until) - utcnow()).total_seconds() if claim.lease_until else 0.5
            await asyncio.sleep(min(max(wait, 0.05) + 0.05, max(0.05, give_up - time.monotonic())))

    async def _renew_lease(self, job_id: str) -> None:
        interval = max(self.config.lease_s / 3.0, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.store.renew(job_id, self.worker_id, self.config.lease_s):
                    return
            except Exception as e:  # noqa: BLE001 - retried next interval
                log.warning("job %s: lease renewal failed: %s", job_id, e)

    async def run(
        self, job_id: str, *, final_attempt: bool = False, work: events_pb2.GenerateJobWork | None = None
    ) -> str:
        """Run (or resume) a job. Returns what happened: succeeded, failed, needs_more_refs, cancelled,
        terminal (nothing to do), missing (unknown job). Raises on a transient failure (redeliver).

        `work`: the queue's message; an image job's context is asked for while the job is being claimed (it only
        reads), and is dropped when the job is not run or its row says otherwise."""
        early = self._early_context(work) if work is not None and work.job_id == job_id else None

        def drop_early() -> None:
            # also used when another worker's lease is waited out: a context asked for before may be stale
            nonlocal early
            if early is not None:
                early.task.cancel()
                early = None

        try:
            if early is not None:
                await asyncio.sleep(0)  # the context request goes out before the claim's statement holds the loop
            claim = await self._claim(job_id, on_wait=drop_early)
            if claim.outcome in ("missing", "terminal"):
                log.info("job %s: %s, nothing to do", job_id, claim.outcome)
                return claim.outcome
            job = claim.job
            renew = asyncio.create_task(self._renew_lease(job_id), name=f"lease-{job_id}")
            try:
                with telemetry.bound(job_id=job.id, character_id=job.character_id):
                    return await self._run_claimed(job, final_attempt, early)
            except asyncio.CancelledError:
                # shutting down: hand the job back at once (the message is nak'd and redelivered)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release(job_id, self.worker_id))
                raise
            finally:
                renew.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renew
        finally:
            drop_early()  # a no-op for the task once it was used

    def _early_context(self, work: events_pb2.GenerateJobWork) -> EarlyContext | None:
        if work.video or not work.prompt:
            return None
        task = asyncio.ensure_future(
            self.peers.build_context(
                work.character_id,
                work.owner_id,
                work.prompt,
                list(work.style_overrides),
                timeout_s=self.config.step_timeout_s,
            )
        )
        # a dropped one's error is retrieved here, not reported as never retrieved
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return EarlyContext(work, task)

    async def _run_claimed(self, job: Job, final_attempt: bool, early: EarlyContext | None = None) -> str:
        ckpt = Checkpoint(job.checkpoint)
        options = dict_to_msg(job.options, pb.GenerationOptions())
        self.emit_soon(
            "started",
            self.event(job, common_pb2.JOB_STATUS_RUNNING, message=f"attempt {job.attempts}"),
            f"{job.id}:started:{job.attempts}",
        )
        try:
            if options.video:
                from services.orchestrator.video_flow import VideoSteps

                character = await self._check_character(job)
                return await VideoSteps(self).run(job, ckpt, options, character)
            # consent and readiness are checked on the character that BuildContext returns; a job resumed after
            # its context was saved asks memory for the character again
            character = None if "context" not in ckpt else await self._check_character(job)
            ctx = await self._step(
                job, ckpt, "context", lambda: self._context(job, character, early), carry=True
            )
            render = await self._step(job, ckpt, "render", lambda: self._render(job, options, ctx))
            score = await self._step(
                job, ckpt, "score", lambda: self._score(job, ctx, render), carry=True, reads_only=True
            )
            refine = await self._step(
                job,
                ckpt,
                "refine",
                lambda: self._refine_gate(job, ckpt, options, render, score),
                carry=lambda r: "attempts" not in r,  # the refiner's work is kept; a gate that let it be is not
            )
            scored = score
            if refine.get("image"):  # the refiner improved the face: the refined image is the job's result
                render = {**render, "image": refine["image"]}
                # the episode gets the refined face's IDR, not the replaced face's score or embedding
                scored = {"face_found": True, "idr": refine["idr_after"]}
            state = await self._step(
                job, ckpt, "state", lambda: self._state(job, render), carry=lambda r: not r.get("model_seconds")
            )
            # RecordEpisode is idempotent on the job id: its result is written with the job's end
            record = await self._step(
                job, ckpt, "record", lambda: self._record(job, render, scored, state), carry=True
            )
            return await self._succeed(job, ckpt, render, score, refine, state, record)
        except _Stop:
            log.info("job %s stopped: no longer running for this worker", job.id)
            return "cancelled"
        except _JobFailed as f:
            return await self._fail(job, f.status, f.code, f.message, ckpt)
        except PERMANENT as e:
            return await self._fail(job, FAILED, e.code, e.message, ckpt)
        except Exception as e:
            message = e.message if isinstance(e, IdlockError) else f"{type(e).__name__}: {e}"
            if final_attempt:
                await self._fail(
                    job,
                    FAILED,
                    "retries_exhausted",
                    f"gave up after {job.attempts} attempts: {message}",
                    ckpt,
                )
            else:
                log.warning("job %s attempt %d failed, will retry: %s", job.id, job.attempts, message)
                with contextlib.suppress(Exception):
                    await self.store.release(job.id, self.worker_id)
            raise

    async def _check_character(self, job: Job) -> memory_service_pb2.Character:
        """Consent and readiness are checked again when the job starts (they may have changed since submission)."""
        try:
            character = await self.peers.get_character(
                job.character_id, job.owner_id, timeout_s=self.config.step_timeout_s
            )
        except NotFound:
            raise _character_gone(job) from None
        return self._admit(job, character)

    def _admit(self, job: Job, character: memory_service_pb2.Character) -> memory_service_pb2.Character:
        if not character.consent_given:
            raise _JobFailed(
                FAILED,
                "consent_revoked",
                f"consent for character {job.character_id} was withdrawn; the job was not run",
            )
        if character.status == memory_service_pb2.CHARACTER_STATUS_NEEDS_MORE_REFS:
            reasons = "; ".join(character.status_reasons) or "the references are not good enough"
            raise _JobFailed(
                NEEDS_MORE_REFS, "needs_more_refs", f"character needs more reference images: {reasons}"
            )
        return character

    async def _step(
        self,
        job: Job,
        ckpt: Checkpoint,
        name: str,
        fn: Callable[[], Awaitable[dict[str, Any]]],
        *,
        carry: bool | Callable[[dict[str, Any]], bool] = False,
        reads_only: bool = False,
    ) -> dict[str, Any]:
        """Run a step unless it is already done. Its result is written to the job row before the job goes on, or,
        when `carry` says it is cheap and safe to redo, with the next write.

        A `reads_only` step (no effect anywhere) runs while the previous step's result is written: its call goes
        out first, and the job goes on only once the write has found the job still running here."""
        if name in ckpt:
            return ckpt[name]
        if name in PAID_STEPS or (ckpt.unwritten and not reads_only):
            await self._confirm(job, ckpt, name)
        t0 = time.perf_counter()
        call = asyncio.ensure_future(fn())
        if ckpt.unwritten:
            await asyncio.sleep(0)  # the call is on its way before the write holds the loop (SQLite runs inline)
            try:
                await self._write(job, ckpt, ckpt.unwritten)
            except BaseException:
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
                raise
        result = await call
        ckpt.confirmed = False
        result["seconds"] = round(time.perf_counter() - t0, 4)
        ckpt[name] = result
        if not (carry(result) if callable(carry) else carry):
            ckpt.unwritten = name
            if self.after_step is not None:  # the hook stands for "the worker stops after this step was stored"
                await self._write(job, ckpt, name)
        self.emit_soon(
            "progress",
            self.event(job, common_pb2.JOB_STATUS_RUNNING, step=name, message=f"{name} done"),
            f"{job.id}:progress:{name}",
        )
        if self.after_step is not None:
            await self.after_step(job.id, name)
        return result

    async def _write(self, job: Job, ckpt: Checkpoint, step: str) -> None:
        """Write the step results and the step now running if the job still runs here; else stop."""
        if not await self.store.save_steps(job.id, self.worker_id, ckpt, step=step):
            raise _Stop()
        ckpt.confirmed = True
        ckpt.unwritten = ""

    async def _confirm(self, job: Job, ckpt: Checkpoint, step: str) -> None:
        """Before a paid call: unless the last thing done was a write that found the job running here, write
        (a cancel may have come in meanwhile)."""
        if not ckpt.confirmed:
            await self._write(job, ckpt, step)

    # --- the steps --------------------------------------------------------------------------------------------

    async def _context(
        self, job: Job, character: memory_service_pb2.Character | None, early: EarlyContext | None = None
    ) -> dict[str, Any]:
        try:
            if early is not None and early.asks_for(job):
                ctx = await early.task
            else:
                ctx = await self.peers.build_context(
                    job.character_id,
                    job.owner_id,
                    job.prompt,
                    list(job.style_overrides or []),
                    timeout_s=self.config.step_timeout_s,
                )
        except NotFound:
            raise _character_gone(job) from None
        if ctx.HasField("character") and ctx.character.id:
            character = self._admit(job, ctx.character)
        elif character is None:
            character = await self._check_character(job)
        identity = character.identity if character.identity.values else ctx.semantic
        return {
            "prompt": ctx.prompt.prompt or job.prompt,
            "negative_prompt": ctx.prompt.negative_prompt,
            "engine": ctx.prompt.engine or "template",
            "fallback_reason": ctx.prompt.fallback_reason,
            "memory_version": int(ctx.memory_version),
            "identity": msg_to_dict(identity),
            "references": [msg_to_dict(r) for r in character.reference_images],
            "model_seconds": round(float(ctx.model_seconds), 4),
        }

    async def _render(
        self, job: Job, options: pb.GenerationOptions, ctx: Mapping[str, Any]
    ) -> dict[str, Any]:
        req = render_service_pb2.RenderImageRequest(
            prompt=ctx["prompt"],
            negative_prompt=ctx.get("negative_prompt", ""),
            references=[dict_to_msg(r, common_pb2.ImageRef()) for r in ctx.get("references", [])],
            aspect_ratio=options.aspect_ratio,
            seed=options.seed or job_seed(job.id),
            bypass_lora=options.bypass_lora,
            providers=list(options.providers),
            job_id=job.id,
            character_id=job.character_id,
            output_prefix=f"jobs/{job.id}/",
        )
        if job.pose_image_uri:
            req.pose.CopyFrom(common_pb2.ImageRef(uri=job.pose_image_uri))
        if options.watermark:
            req.watermark = True
        resp = await self.peers.render_image(req, timeout_s=self.config.generation_timeout_s)
        return {"image": msg_to_dict(resp.image), "provenance": msg_to_dict(resp.provenance)}

    async def _score(self, job: Job, ctx: Mapping[str, Any], render: Mapping[str, Any]) -> dict[str, Any]:
        identity = dict_to_msg(ctx.get("identity"), common_pb2.IdentityVector())
        image = dict_to_msg(render["image"], common_pb2.ImageRef())
        if not identity.values:
            return {"face_found": False, "note": "the character has no identity vector to score against"}
        resp = await self.peers.score_identity(
            job.character_id, identity, image, timeout_s=self.config.step_timeout_s
        )
        match = next((m for m in resp.matches if m.character_id == job.character_id), None)
        out: dict[str, Any] = {
            "face_found": bool(match and match.face_found),
            "faces_detected": resp.faces_detected,
        }
        if match is not None and match.face_found:
            out["idr"] = msg_to_dict(match.score)
            if match.face_embedding.values:
                out["embedding"] = msg_to_dict(match.face_embedding)
        else:
            out["note"] = "no face found in the rendered image"
        return out

    async def _refine_gate(
        self,
        job: Job,
        ckpt: Checkpoint,
        options: pb.GenerationOptions,
        render: Mapping[str, Any],
        score: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Below the refine threshold (or when asked) the refiner repairs the face: best of 2 attempts, never
        worse. The refiner is an enhancement: when it cannot run, the job goes on with the unrefined image."""
        idr = dict_to_msg(score.get("idr"), common_pb2.IdrScore())
        below = not score.get("face_found") or idr.calibrated < self.config.refine_threshold
        needed = bool(options.refine_face or below)
        if not needed:
            return {"needed": False, "refined": False, "note": ""}
        if not score.get("face_found"):
            return {"needed": True, "refined": False, "note": "no face to refine: the image was kept"}
        request = refiner_service_pb2.RefineRequest(
            image=dict_to_msg(render["image"], common_pb2.ImageRef()),
            character_id=job.character_id,
            threshold=self.config.refine_threshold,
            max_attempts=2,
            strategy=refiner_service_pb2.REFINE_STRATEGY_AUTO,
            job_id=job.id,
            prompt=job.prompt,
        )
        refine_image = getattr(self.peers, "refine_image", None)
        if refine_image is None:
            return {"needed": True, "refined": False, "note": f"{REFINER_UNAVAILABLE}: no refiner configured"}
        await self._confirm(job, ckpt, "refine")
        try:
            resp = await refine_image(request, timeout_s=self.config.refine_timeout_s)
        except (TimeoutError, IdlockError) as e:
            message = e.message if isinstance(e, IdlockError) else "timed out"
            log.warning("job %s: refiner failed, keeping the unrefined image: %s", job.id, message)
            return {"needed": True, "refined": False, "note": f"{REFINER_UNAVAILABLE}: {message}"}
        out: dict[str, Any] = {
            "needed": True,
            "refined": bool(resp.improved),
            "idr_after": msg_to_dict(resp.after),
            "attempts": len(resp.attempts),
        }
        if resp.improved:
            best = next((a for a in resp.attempts if a.image.uri == resp.best.uri), None)
            how = refiner_service_pb2.RefineStrategy.Name(best.strategy) if best is not None else "refiner"
            how = how.removeprefix("REFINE_STRATEGY_").lower().replace("_", "-")
            out["image"] = msg_to_dict(resp.best)
            out["note"] = (
                f"refined by {how}: calibrated IDR {resp.before.calibrated:.3f} -> {resp.after.calibrated:.3f}"
            )
        else:
            reasons = "; ".join(a.rejected_reason for a in resp.attempts if a.rejected_reason)
            out["note"] = "no refinement attempt beat the input; the image was kept" + (
                f" ({reasons})" if reasons else ""
            )
        return out

    async def _state(self, job: Job, render: Mapping[str, Any]) -> dict[str, Any]:
        image_bytes: bytes | None = None
        mime = render["image"].get("mime", "image/png")
        if self.extractor.uses_vision and self.objects is not None:
            image_bytes = await self.objects.get(render["image"]["uri"])
        t0 = time.perf_counter()
        st = await self.extractor.extract(user_prompt=job.prompt, image=image_bytes, mime=mime)
        return {
            # time in the vision model (none for the heuristic, which reads the prompt)
            "model_seconds": round(time.perf_counter() - t0, 4) if st.source != HEURISTIC else 0.0,
            "added": st.added,
            "removed": st.removed,
            "description": st.description,
            "source": st.source,
            "fallback_reason": st.fallback_reason,
        }

    async def _record(
        self, job: Job, render: Mapping[str, Any], score: Mapping[str, Any], state: Mapping[str, Any]
    ) -> dict[str, Any]:
        episode = scene_episode(job, common_pb2.MEDIA_KIND_IMAGE, score, state)
        episode.image.CopyFrom(dict_to_msg(render["image"], common_pb2.ImageRef()))
        return await self.record_episode(episode)

    async def record_episode(self, episode: memory_service_pb2.Episode) -> dict[str, Any]:
        resp = await self.peers.record_episode(episode, timeout_s=self.config.step_timeout_s)
        return {
            "episode_id": resp.episode.id,
            "scene_index": int(resp.episode.scene_index),
            "created": bool(resp.created),
            "consolidated": bool(resp.consolidated),
            "model_seconds": round(float(resp.model_seconds), 4),
        }

    # --- endings ----------------------------------------------------------------------------------------------

    def metrics(
        self,
        job: Job,
        ckpt: Mapping[str, Any],
        render: Mapping[str, Any],
        score: Mapping[str, Any],
        refine: Mapping[str, Any],
        state: Mapping[str, Any],
        record: Mapping[str, Any],
    ) -> pb.JobMetrics:
        prov = dict_to_msg(render.get("provenance"), render_service_pb2.RenderProvenance())
        m = pb.JobMetrics(
            refined=bool(refine.get("refined")),
            refine_needed=bool(refine.get("needed")),
            refine_note=refine.get("note", ""),
            provider=prov.provider,
            model=prov.model,
            provider_label=prov.label,
            fallback_used=prov.fallback_used,
            lora_id=prov.lora.lora_id,
            prompt_engine=ckpt.get("context", {}).get("engine", ""),
            state_source=state.get("source", ""),
            tags=common_pb2.StateTags(**state.get("added", {})),
            scene_index=int(record.get("scene_index", 0)),
            estimated_cost_usd=prov.estimated_cost_usd + self.config.cost_per_job_usd,
            attempts=job.attempts,
        )
        for name in STEPS:
            if name in ckpt:
                m.step_seconds[name] = float(ckpt[name].get("seconds", 0.0))
                m.step_model_seconds[name] = step_model_seconds(name, ckpt[name])
        if score.get("idr"):
            m.idr_before.CopyFrom(dict_to_msg(score["idr"], common_pb2.IdrScore()))
        if refine.get("idr_after"):
            m.idr_after.CopyFrom(dict_to_msg(refine["idr_after"], common_pb2.IdrScore()))
        started: datetime | None = aware(job.started_at)
        m.total_seconds = (utcnow() - started).total_seconds() if started else sum(m.step_seconds.values())
        return m

    async def finish_success(
        self,
        job: Job,
        image: common_pb2.ImageRef,
        metrics: pb.JobMetrics,
        message: str,
        ckpt: Mapping[str, Any] | None = None,
    ) -> bool:
        """Mark the job succeeded with its usage record (and its steps), then announce it; False when it was
        cancelled meanwhile."""
        ok = await self.store.finish(
            job.id,
            SUCCEEDED,
            worker_id=self.worker_id,
            result_image=msg_to_dict(image),
            metrics=msg_to_dict(metrics),
            checkpoint=dict(ckpt) if ckpt is not None else None,
            usage={
                "owner_id": job.owner_id,
                "character_id": job.character_id,
                "provider": metrics.provider,
                "model": metrics.model,
                "estimated_cost_usd": metrics.estimated_cost_usd,
                "total_seconds": metrics.total_seconds,
            },
        )
        if ok:
            event = self.event(
                job,
                common_pb2.JOB_STATUS_SUCCEEDED,
                result_image=image,
                metrics=metrics,
                scene_index=metrics.scene_index,
                message=message,
            )
            await self.emit("succeeded", event, f"{job.id}:succeeded")
        return ok

    async def _succeed(self, job, ckpt, render, score, refine, state, record) -> str:
        metrics = self.metrics(job, ckpt, render, score, refine, state, record)
        image = dict_to_msg(render["image"], common_pb2.ImageRef())
        msg = "episode recorded" + (", memory consolidated" if record.get("consolidated") else "")
        if not await self.finish_success(job, image, metrics, msg, ckpt):
            return "cancelled"
        log.info("job %s succeeded in %.2f s (scene %d)", job.id, metrics.total_seconds, metrics.scene_index)
        return SUCCEEDED

    async def _fail(
        self, job: Job, status: str, code: str, message: str, ckpt: Mapping[str, Any] | None = None
    ) -> str:
        usage = None
        render = (ckpt or {}).get("render")
        if render:  # the render was paid for: the usage record says so, once
            prov = dict_to_msg(render.get("provenance"), render_service_pb2.RenderProvenance())
            usage = {
                "owner_id": job.owner_id,
                "character_id": job.character_id,
                "provider": prov.provider,
                "model": prov.model,
                "estimated_cost_usd": prov.estimated_cost_usd + self.config.cost_per_job_usd,
                "total_seconds": (utcnow() - (aware(job.started_at) or utcnow())).total_seconds(),
            }
        ok = await self.store.finish(
            job.id,
            status,
            worker_id=self.worker_id,
            error_code=code,
            error_message=message[:2000],
            usage=usage,
            checkpoint=dict(ckpt) if ckpt else None,
        )
        if not ok:
            return "cancelled"
        pb_status = (
            common_pb2.JOB_STATUS_NEEDS_MORE_REFS
            if status == NEEDS_MORE_REFS
            else common_pb2.JOB_STATUS_FAILED
        )
        await self.emit(
            "failed", self.event(job, pb_status, error_code=code, message=message[:2000]), f"{job.id}:failed"
        )
        log.info("job %s ended %s (%s): %s", job.id, status, code, message)
        return status


def _character_gone(job: Job) -> _JobFailed:
    return _JobFailed(FAILED, "character_not_found", f"character {job.character_id} no longer exists")


def scene_episode(
    job: Job, kind: int, score: Mapping[str, Any], state: Mapping[str, Any]
) -> memory_service_pb2.Episode:
    """The episode a job records (image or video): its state tags, and the scored face when there is one."""
    episode = memory_service_pb2.Episode(
        character_id=job.character_id,
        job_id=job.id,
        kind=kind,
        prompt=job.prompt,
        tags=common_pb2.StateTags(**state.get("added", {})),
        removed=common_pb2.StateTags(**state.get("removed", {})),
        description=state.get("description", ""),
        state_source=state.get("source", ""),
    )
    if score.get("idr"):
        episode.idr.CopyFrom(dict_to_msg(score["idr"], common_pb2.IdrScore()))
    if score.get("embedding"):
        episode.face_embedding.CopyFrom(dict_to_msg(score["embedding"], common_pb2.IdentityVector()))
    return episode


#: steps that are calls to model services (renderer, face models, refiner): all their time is model time
MODEL_STEPS = frozenset({"render", "regenerate", "score", "refine"})


def step_model_seconds(name: str, result: Mapping[str, Any]) -> float:
    """Seconds of a step spent inside model compute and providers: the whole step for the model services, what
    memory reports for its text embedder and LLM, the vision model's time for the state."""
    if name in MODEL_STEPS:
        if name == "refine" and "attempts" not in result:
            return 0.0  # the gate let the image be: no refiner ran
        return float(result.get("seconds", 0.0))
    return float(result.get("model_seconds", 0.0))


def snapshot(job: Job) -> pb.Job:
    return to_proto(job)


__all__ = ["RUNNING", "STEPS", "EventSink", "FlowConfig", "GenerationFlow", "Peers", "job_seed"]
