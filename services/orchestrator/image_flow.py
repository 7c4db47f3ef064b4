"""An image job (seed §5.2):

    consent re-check → context → render → score → copy gate → refine gate → state → record → succeeded

An output whose face is a near-copy of a reference photo is acted on as `near_copy` says (regenerate once with a
re-pose instruction, flag, or fail); a near-copy is never golden. Below the refine threshold (or when asked) the
refiner repairs the face: best of 2 attempts, never worse. The refiner is an enhancement: when it cannot run, the
job goes on with the unrefined image and says so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from idlock.v1 import common_pb2, memory_service_pb2, refiner_service_pb2, render_service_pb2
from idlock.v1 import job_checkpoint_pb2 as ck
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator import steps
from services.orchestrator.flow import REFINER_UNAVAILABLE, FlowDeps, JobFailed, Outcome, Prefetch, job_seed
from services.orchestrator.models import QUEUED, Job
from services.orchestrator.runner import StepRunner

log = logging.getLogger("idlock.orchestrator.image")

#: added to the prompt when a near-copy of a reference is rendered again
REPOSE = (
    "Re-pose the character for this scene: a new camera angle, head turn, expression and lighting. Do not "
    "reproduce any reference photo; show the scene's clothing, injuries and props."
)


@dataclass
class EarlyContext:
    """BuildContext asked for from the queued job's row, while the job is claimed."""

    queued: Job
    task: asyncio.Future[memory_service_pb2.BuildContextResponse]

    def matches(self, job: Job) -> bool:
        """Whether it was asked with what the claimed row holds (the row may have changed in between)."""
        q = self.queued
        return (q.id, q.character_id, q.owner_id, q.prompt, list(q.style_overrides or [])) == (
            job.id,
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

    def prefetch(self, queued: Job) -> Prefetch | None:
        """Memory's context only reads: it is asked for from the queued row while the job is claimed."""
        if queued.status != QUEUED:  # a job that ran before may have its context saved: the claim decides
            return None
        task = asyncio.ensure_future(
            self.peers.build_context(
                queued.character_id,
                queued.owner_id,
                queued.prompt,
                list(queued.style_overrides or []),
                timeout_s=self.config.step_timeout_s,
            )
        )
        # a dropped one's error is retrieved here, not reported as never retrieved
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return EarlyContext(queued, task)

    async def run(
        self, job: Job, options: pb.GenerationOptions, run: StepRunner, prefetched: Prefetch | None
    ) -> Outcome:
        peers, cfg = self.peers, self.config
        # consent and readiness are checked on the character that BuildContext returns; a job resumed after its
        # context was saved asks memory for the character again
        character = await steps.check_character(peers, cfg, job) if run.ckpt.done("context") else None
        asked = prefetched.task if isinstance(prefetched, EarlyContext) and prefetched.matches(job) else None

        def context():
            nonlocal asked  # the early answer serves the first try only: a retry asks memory again
            early, asked = asked, None
            return steps.context(peers, cfg, job, character, early)

        ctx = await run.step("context", context, carry=True)
        render = await run.step("render", lambda: self.render(job, options, ctx))
        score = await run.step("score", lambda: self.score(job, ctx, render), carry=True, reads_only=True)
        regen, copy_note = ck.RegenerateStep(), ""
        if score.copy.near_copy:
            what = self.copy_gate(score)  # fail ends the job here; flag is only said
            if cfg.near_copy == "flag":
                copy_note = f"flagged: the output is a {what}"
            else:
                regen = await run.step("regenerate", lambda: self.regenerate(job, options, ctx, score, what))
                copy_note = regen.note
                if regen.HasField("render"):  # the re-posed image is the one the job goes on with
                    render, score = regen.render, regen.score
        refine = await run.step(
            "refine",
            lambda: self.refine_gate(job, run, options, render, score),
            carry=lambda r: not r.HasField("attempts"),  # the refiner's work is kept; a gate's verdict is not
            confirms_own_calls=True,  # the refiner's call is confirmed where it is made (steps.refine)
        )
        image, scored = render.image, score
        if refine.refined:  # the refined image is the job's result, and the episode gets its face's IDR
            image = refine.image
            scored = ck.ScoreStep(face_found=True, idr=refine.idr_after, copy=refine.copy_after)
        state = await run.step(
            "state",
            lambda: self.state(job, run, image),
            carry=lambda r: not r.model_seconds,
            confirms_own_calls=True,
        )
        record = await run.step(
            "record", lambda: self.record(job, ctx, render, image, scored, state), carry=True
        )  # idempotent: written with the job's end
        metrics = steps.job_metrics(job, cfg, run.ckpt, render, score, refine, run.elapsed_s(), copy_note)
        metrics.regenerated = regen.regenerated
        metrics.estimated_cost_usd += float(regen.extra_cost_usd)
        message = "episode recorded" + (", memory consolidated" if record.consolidated else "")
        outcome = await run.succeed(image, metrics, message)
        if outcome == Outcome.SUCCEEDED:
            log.info(
                "job %s succeeded in %.2f s (scene %d)", job.id, metrics.total_seconds, metrics.scene_index
            )
        return outcome

    # --- the steps --------------------------------------------------------------------------------------------

    async def render(
        self, job: Job, options: pb.GenerationOptions, ctx: ck.ContextStep, *, repose: bool = False
    ) -> ck.RenderStep:
        seed = options.seed or job_seed(job.id)
        req = render_service_pb2.RenderImageRequest(
            prompt=f"{ctx.prompt}\n{REPOSE}" if repose else ctx.prompt,
            negative_prompt=ctx.negative_prompt,
            references=list(ctx.references),
            aspect_ratio=options.aspect_ratio,
            seed=(seed + 1) % 2**32 if repose else seed,
            bypass_lora=options.bypass_lora,
            providers=list(options.providers),
            job_id=job.id,
            character_id=job.character_id,
            output_prefix=f"jobs/{job.id}/repose/" if repose else f"jobs/{job.id}/",
            state=steps.scene_state(ctx, job.prompt),
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
            job.character_id,
            ctx.identity,
            render.image,
            references=list(ctx.references),
            timeout_s=self.config.step_timeout_s,
        )
        match = next((m for m in resp.matches if m.character_id == job.character_id), None)
        out = ck.ScoreStep(face_found=bool(match and match.face_found), faces_detected=resp.faces_detected)
        if match is not None and match.face_found:
            out.idr.CopyFrom(match.score)
            out.copy.CopyFrom(match.copy)
            if match.face_embedding.values:
                out.embedding.CopyFrom(match.face_embedding)
        else:
            out.note = "no face found in the rendered image"
        return out

    def copy_gate(self, score: ck.ScoreStep) -> str:
        """What a near-copy is, in words; with `near_copy=fail` the job ends here."""
        copy = score.copy
        what = (
            f"near-copy of reference {copy.reference_index + 1} (similarity {copy.similarity:.3f} >= "
            f"{copy.threshold:.3f})"
        )
        if self.config.near_copy == "fail":
            raise JobFailed(
                Outcome.FAILED,
                "near_copy",
                f"the output is a {what}; IDLOCK_ORCHESTRATOR_NEAR_COPY=fail ends such jobs",
            )
        return what

    async def regenerate(
        self,
        job: Job,
        options: pb.GenerationOptions,
        ctx: ck.ContextStep,
        score: ck.ScoreStep,
        what: str,
    ) -> ck.RegenerateStep:
        """Render once more, asking to re-pose the character; keep the new image only if it is not a copy."""
        again = await self.render(job, options, ctx, repose=True)
        rescored = await self.score(job, ctx, again)
        out = ck.RegenerateStep(
            needed=True,
            regenerated=True,
            attempts=1,
            extra_cost_usd=float(again.provenance.estimated_cost_usd),
        )
        if rescored.face_found and not rescored.copy.near_copy:
            out.render.CopyFrom(again)
            out.score.CopyFrom(rescored)
            out.note = (
                f"regenerated once to re-pose: the first output was a {what}; the new one is not "
                f"(similarity {rescored.copy.similarity:.3f})"
            )
        else:  # still a copy (or no face): the first output is kept, flagged
            again_was = (
                f"still a near-copy (similarity {rescored.copy.similarity:.3f})"
                if rescored.face_found
                else "no face in it"
            )
            out.note = (
                f"flagged: regenerated once to re-pose, {again_was}; the first output (a {what}) was kept"
            )
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
        request = refiner_service_pb2.RefineRequest(
            image=render.image,
            character_id=job.character_id,
            threshold=self.config.refine_threshold,
            max_attempts=2,
            strategy=refiner_service_pb2.REFINE_STRATEGY_AUTO,
            job_id=job.id,
            prompt=job.prompt,
        )
        resp, why = await steps.refine(self.peers, self.config, run, request)
        if resp is None:
            log.warning("job %s: keeping the unrefined image: %s", job.id, why)
            return ck.RefineStep(needed=True, note=why)
        out = ck.RefineStep(
            needed=True,
            refined=bool(resp.improved),
            idr_after=resp.after,
            attempts=len(resp.attempts),
            copy_after=resp.copy,
        )
        if resp.improved:
            best = next((a for a in resp.attempts if a.image.uri == resp.best.uri), None)
            how = refiner_service_pb2.RefineStrategy.Name(best.strategy) if best is not None else "refiner"
            how = how.removeprefix("REFINE_STRATEGY_").lower().replace("_", "-")
            out.image.CopyFrom(resp.best)
            out.note = f"refined by {how}: calibrated IDR {resp.before.calibrated:.3f} -> {resp.after.calibrated:.3f}"
            if resp.copy.near_copy:
                out.note += f" (a near-copy of reference {resp.copy.reference_index + 1}: flagged)"
        else:
            reasons = "; ".join(a.rejected_reason for a in resp.attempts if a.rejected_reason)
            out.note = "no refinement attempt beat the input; the image was kept" + (
                f" ({reasons})" if reasons else ""
            )
        return out

    async def state(self, job: Job, run: StepRunner, image: common_pb2.ImageRef) -> ck.StateStep:
        if self.extractor.uses_vision:  # a vision model is a paid call: a job cancelled meanwhile stops here
            await run.confirm("state")
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
