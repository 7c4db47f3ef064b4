"""An image job (seed §5.2):

    consent re-check → context → render → score → refine gate → state → record → succeeded

Below the refine threshold (or when asked) the refiner repairs the face: best of 2 attempts, never worse. The
refiner is an enhancement: when it cannot run, the job goes on with the unrefined image and says so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from idlock.errors import IdlockError
from idlock.v1 import common_pb2, events_pb2, memory_service_pb2, refiner_service_pb2, render_service_pb2
from idlock.v1 import job_checkpoint_pb2 as ck
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator import steps
from services.orchestrator.flow import FlowDeps, Outcome, Prefetch, job_seed
from services.orchestrator.models import Job
from services.orchestrator.runner import StepRunner

log = logging.getLogger("idlock.orchestrator.image")

#: refine note prefix when the refiner could not run (the job goes on with the unrefined image)
REFINER_UNAVAILABLE = "refiner could not run; the image was kept"


@dataclass
class EarlyContext:
    """BuildContext asked for from the queue's message, while the job is claimed."""

    work: events_pb2.GenerateJobWork
    task: asyncio.Future[memory_service_pb2.BuildContextResponse]

    def matches(self, job: Job) -> bool:
        """Whether it was asked with what the job's row holds (the row is the truth)."""
        w = self.work
        return (w.character_id, w.owner_id, w.prompt, list(w.style_overrides)) == (
            job.character_id,
            job.owner_id,
            job.prompt,
            list(job.style_overrides or []),
        )

    def cancel(self) -> None:
        self.task.cancel()


class ImageFlow:
    def __init__(self, deps: FlowDeps) -> None:
        self.peers = deps.peers
        self.extractor = deps.extractor
        self.config = deps.config
        self.objects = deps.objects

    def prefetch(self, work: events_pb2.GenerateJobWork) -> Prefetch | None:
        """Memory's context only reads: it is asked for from the message while the job is claimed."""
        if not work.prompt:  # a job that ran before may have its context saved: the row decides
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

    async def run(
        self, job: Job, options: pb.GenerationOptions, run: StepRunner, prefetched: Prefetch | None
    ) -> Outcome:
        peers, cfg = self.peers, self.config
        # consent and readiness are checked on the character that BuildContext returns; a job resumed after its
        # context was saved asks memory for the character again
        character = await steps.check_character(peers, cfg, job) if run.ckpt.done("context") else None
        asked = prefetched.task if isinstance(prefetched, EarlyContext) and prefetched.matches(job) else None
        ctx = await run.step("context", lambda: steps.context(peers, cfg, job, character, asked), carry=True)
        render = await run.step("render", lambda: self.render(job, options, ctx))
        score = await run.step("score", lambda: self.score(job, ctx, render), carry=True, reads_only=True)
        refine = await run.step(
            "refine",
            lambda: self.refine_gate(job, run, options, render, score),
            carry=lambda r: not r.HasField("attempts"),  # the refiner's work is kept; a gate's verdict is not
        )
        image, scored = render.image, score
        if refine.refined:  # the refined image is the job's result, and the episode gets its face's IDR
            image = refine.image
            scored = ck.ScoreStep(face_found=True, idr=refine.idr_after)
        state = await run.step("state", lambda: self.state(job, image), carry=lambda r: not r.model_seconds)
        record = await run.step(
            "record", lambda: self.record(job, ctx, render, image, scored, state), carry=True
        )  # idempotent: written with the job's end
        metrics = steps.job_metrics(job, cfg, run.ckpt, render, score, refine, run.elapsed_s())
        message = "episode recorded" + (", memory consolidated" if record.consolidated else "")
        outcome = await run.succeed(image, metrics, message)
        if outcome == Outcome.SUCCEEDED:
            log.info(
                "job %s succeeded in %.2f s (scene %d)", job.id, metrics.total_seconds, metrics.scene_index
            )
        return outcome

    # --- the steps --------------------------------------------------------------------------------------------

    async def render(self, job: Job, options: pb.GenerationOptions, ctx: ck.ContextStep) -> ck.RenderStep:
        req = render_service_pb2.RenderImageRequest(
            prompt=ctx.prompt,
            negative_prompt=ctx.negative_prompt,
            references=list(ctx.references),
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
        return ck.RenderStep(image=resp.image, provenance=resp.provenance)

    async def score(self, job: Job, ctx: ck.ContextStep, render: ck.RenderStep) -> ck.ScoreStep:
        if not ctx.identity.values:
            return ck.ScoreStep(
                face_found=False, note="the character has no identity vector to score against"
            )
        resp = await self.peers.score_identity(
            job.character_id, ctx.identity, render.image, timeout_s=self.config.step_timeout_s
        )
        match = next((m for m in resp.matches if m.character_id == job.character_id), None)
        out = ck.ScoreStep(face_found=bool(match and match.face_found), faces_detected=resp.faces_detected)
        if match is not None and match.face_found:
            out.idr.CopyFrom(match.score)
            if match.face_embedding.values:
                out.embedding.CopyFrom(match.face_embedding)
        else:
            out.note = "no face found in the rendered image"
        return out

    async def refine_gate(
        self,
        job: Job,
        run: StepRunner,
        options: pb.GenerationOptions,
        render: ck.RenderStep,
        score: ck.ScoreStep,
    ) -> ck.RefineStep:
        below = not score.face_found or score.idr.calibrated < self.config.refine_threshold
        if not (options.refine_face or below):
            return ck.RefineStep(needed=False, refined=False)
        if not score.face_found:
            return ck.RefineStep(needed=True, note="no face to refine: the image was kept")
        refine_image = getattr(self.peers, "refine_image", None)
        if refine_image is None:
            return ck.RefineStep(needed=True, note=f"{REFINER_UNAVAILABLE}: no refiner configured")
        request = refiner_service_pb2.RefineRequest(
            image=render.image,
            character_id=job.character_id,
            threshold=self.config.refine_threshold,
            max_attempts=2,
            strategy=refiner_service_pb2.REFINE_STRATEGY_AUTO,
            job_id=job.id,
            prompt=job.prompt,
        )
        await run.confirm("refine")
        try:
            resp = await refine_image(request, timeout_s=self.config.refine_timeout_s)
        except (TimeoutError, IdlockError) as e:
            message = e.message if isinstance(e, IdlockError) else "timed out"
            log.warning("job %s: refiner failed, keeping the unrefined image: %s", job.id, message)
            return ck.RefineStep(needed=True, note=f"{REFINER_UNAVAILABLE}: {message}")
        out = ck.RefineStep(
            needed=True, refined=bool(resp.improved), idr_after=resp.after, attempts=len(resp.attempts)
        )
        if resp.improved:
            best = next((a for a in resp.attempts if a.image.uri == resp.best.uri), None)
            how = refiner_service_pb2.RefineStrategy.Name(best.strategy) if best is not None else "refiner"
            how = how.removeprefix("REFINE_STRATEGY_").lower().replace("_", "-")
            out.image.CopyFrom(resp.best)
            out.note = f"refined by {how}: calibrated IDR {resp.before.calibrated:.3f} -> {resp.after.calibrated:.3f}"
        else:
            reasons = "; ".join(a.rejected_reason for a in resp.attempts if a.rejected_reason)
            out.note = "no refinement attempt beat the input; the image was kept" + (
                f" ({reasons})" if reasons else ""
            )
        return out

    async def state(self, job: Job, image: common_pb2.ImageRef) -> ck.StateStep:
        return await steps.read_state(self.extractor, self.objects, job, image)

    async def record(
        self,
        job: Job,
        ctx: ck.ContextStep,
        render: ck.RenderStep,
        image: common_pb2.ImageRef,
        score: ck.ScoreStep,
        state: ck.StateStep,
    ) -> ck.RecordStep:
        episode = steps.scene_episode(job, common_pb2.MEDIA_KIND_IMAGE, ctx, render, score, state)
        episode.image.CopyFrom(image)
        return await steps.record(self.peers, self.config, episode)


__all__ = ["REFINER_UNAVAILABLE", "EarlyContext", "ImageFlow"]
