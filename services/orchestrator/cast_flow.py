"""An image job with several characters (issue #23):

    consent re-check of each → scene context → render → score each face → repair each → state of each → an
    episode for each → succeeded

Memory composes one prompt from every character's memory, each one's state kept apart. The renderer gets every
character's references, place and own state. Identity assigns each face to at most one character (held to its
place when every character has one), reports extra faces, one face passing for two characters (identity bleed) and
faces at each other's places (swapped). The refiner repairs each character's face that fell below the threshold,
only that face, with that character's references; after each repair every face is scored again, and a repair that
makes another character's face worse is discarded. Each character gets its own episode, naming the others.
"""

from __future__ import annotations

import logging

from idlock.errors import NotFound
from idlock.faces.cast import placement_of
from idlock.story import CATEGORIES
from idlock.v1 import common_pb2, identity_service_pb2, memory_service_pb2, refiner_service_pb2
from idlock.v1 import job_checkpoint_pb2 as ck
from idlock.v1 import orchestrator_service_pb2 as pb
from idlock.v1 import render_service_pb2 as rpb
from services.orchestrator import steps
from services.orchestrator.cast_state import clauses_by_character, vision_question
from services.orchestrator.flow import (
    FlowDeps,
    JobFailed,
    Outcome,
    character_gone,
    job_seed,
)
from services.orchestrator.models import Job
from services.orchestrator.runner import StepRunner
from services.orchestrator.state_extraction import heuristic_state

log = logging.getLogger("idlock.orchestrator.cast")

#: how much a repair may lower another character's calibrated IDR before it is discarded (scoring noise)
OTHERS_TOLERANCE = 0.02
#: the scene's shared categories (the rest belong to each character)
SHARED = ("setting",)


def _members(job: Job) -> list[common_pb2.CastMember]:
    return [common_pb2.CastMember(**m) for m in job.cast_members or ()]


def _tags(**lists: list[str]) -> common_pb2.StateTags:
    return common_pb2.StateTags(**{c: list(v) for c, v in lists.items() if c in CATEGORIES})


class CastFlow:
    def __init__(self, deps: FlowDeps) -> None:
        self.peers = deps.peers
        self.extractor = deps.extractor
        self.config = deps.config
        self.objects = deps.objects

    def prefetch(self, queued: Job) -> None:
        return None

    async def run(
        self, job: Job, options: pb.GenerationOptions, run: StepRunner, prefetched: object
    ) -> Outcome:
        ctx = await run.step("context", lambda: self.context(job), carry=True)
        render = await run.step("render", lambda: self.render(job, options, ctx))
        score = await run.step(
            "score", lambda: self.score(job, ctx, render.image), carry=True, reads_only=True
        )
        copy_note = self.copy_gate(score)
        refine = await run.step(
            "refine",
            lambda: self.refine(job, run, options, ctx, render, score),
            carry=lambda r: not r.HasField("attempts"),
        )
        image = refine.image if refine.refined else render.image
        state = await run.step(
            "state", lambda: self.state(job, ctx, image), carry=lambda r: not r.model_seconds
        )
        record = await run.step(
            "record", lambda: self.record(job, ctx, render, image, refine, state), carry=True
        )
        metrics = steps.job_metrics(
            job, self.config, run.ckpt, render, score, refine, run.elapsed_s(), copy_note
        )
        self.cast_metrics(metrics, score, refine, state, record)
        return await run.succeed(
            image, metrics, f"an episode recorded for each of {len(record.cast)} characters"
        )

    # --- the steps --------------------------------------------------------------------------------------------

    async def context(self, job: Job) -> ck.ContextStep:
        members = _members(job)
        req = memory_service_pb2.BuildSceneContextRequest(
            owner_id=job.owner_id,
            user_prompt=job.prompt,
            style_overrides=list(job.style_overrides or []),
            cast=[common_pb2.CastMember(character_id=m.character_id, role=m.role) for m in members],
        )
        try:
            resp = await self.peers.build_scene_context(req, timeout_s=self.config.step_timeout_s)
        except NotFound as e:
            raise JobFailed(
                Outcome.FAILED, "character_not_found", f"a character of the scene is gone: {e}"
            ) from e
        per = max(1, 8 // len(members))  # the renderer takes at most 8 references in all
        out = ck.ContextStep(
            prompt=resp.prompt.prompt or job.prompt,
            negative_prompt=resp.prompt.negative_prompt,
            engine=resp.prompt.engine or "template",
            fallback_reason=resp.prompt.fallback_reason,
            model_seconds=round(float(resp.model_seconds), 4),
        )
        for member, mctx in zip(members, resp.members, strict=True):
            character = mctx.character
            if not character.id:
                raise character_gone(job)
            steps.admit(f"{character.name or member.character_id} ({member.character_id})", character)
            identity = character.identity if character.identity.values else mctx.semantic
            out.cast.add(
                member=common_pb2.CastMember(
                    character_id=member.character_id, role=member.role, name=character.name or member.name
                ),
                placement=placement_of(member.role),
                identity=identity,
                references=list(character.reference_images)[:per],
                state=list(mctx.current_state),
                ended=list(mctx.recently_ended),
                memory_version=int(mctx.memory_version),
                episodes=steps.episodes_used(mctx),
            )
        first = out.cast[0]
        out.memory_version = first.memory_version
        out.identity.CopyFrom(first.identity)
        out.references.extend(first.references)
        out.state.extend(first.state)
        out.ended.extend(first.ended)
        out.episodes.extend(first.episodes)
        return out

    def _own_text(self, job: Job, ctx: ck.ContextStep) -> dict[str, str]:
        return clauses_by_character(job.prompt, [c.member.name for c in ctx.cast])

    async def render(self, job: Job, options: pb.GenerationOptions, ctx: ck.ContextStep) -> ck.RenderStep:
        own = self._own_text(job, ctx)
        shared = heuristic_state(job.prompt)
        cast = []
        for c in ctx.cast:
            state = steps.scene_state(ck.ContextStep(state=list(c.state)), own[c.member.name])
            for cat in SHARED:
                del getattr(state, cat)[:]
            cast.append(
                rpb.SceneCharacter(
                    character_id=c.member.character_id,
                    name=c.member.name,
                    role=c.member.role,
                    placement=c.placement,
                    references=list(c.references),
                    state=state,
                )
            )
        setting = shared.added.get("setting") or [
            i.name for i in ctx.cast[0].state if i.category == "setting"
        ]
        req = rpb.RenderImageRequest(
            prompt=ctx.prompt,
            negative_prompt=ctx.negative_prompt,
            aspect_ratio=options.aspect_ratio,
            seed=options.seed or job_seed(job.id),
            bypass_lora=options.bypass_lora,
            providers=list(options.providers),
            job_id=job.id,
            character_id=job.character_id,
            output_prefix=f"jobs/{job.id}/",
            state=_tags(setting=setting[:1]),
            cast=cast,
        )
        if options.watermark:
            req.watermark = True
        resp = await self.peers.render_image(req, timeout_s=self.config.generation_timeout_s)
        return ck.RenderStep(image=resp.image, provenance=resp.provenance)

    async def score(self, job: Job, ctx: ck.ContextStep, image: common_pb2.ImageRef) -> ck.ScoreStep:
        req = identity_service_pb2.ScoreIdentityRequest(
            characters=[
                identity_service_pb2.CharacterIdentity(
                    character_id=c.member.character_id,
                    identity=c.identity,
                    references=[common_pb2.ImageInput(ref=r) for r in c.references],
                    placement=c.placement,
                )
                for c in ctx.cast
            ],
            image=common_pb2.ImageInput(ref=image),
        )
        resp = await self.peers.score_cast(req, timeout_s=self.config.step_timeout_s)
        by_id = {m.character_id: m for m in resp.matches}
        out = ck.ScoreStep(faces_detected=resp.faces_detected, extra_faces=list(resp.extra_faces))
        for c in ctx.cast:
            m = by_id.get(c.member.character_id)
            r = out.cast.add(character_id=c.member.character_id, name=c.member.name, role=c.member.role)
            if m is not None and m.face_found:
                r.face_found, r.face_index = True, m.face_index
                r.box.CopyFrom(m.box)
                r.idr_before.CopyFrom(m.score)
                r.copy.CopyFrom(m.copy)
                r.face_embedding.CopyFrom(m.face_embedding)
            else:
                r.note = f"no face of {c.member.name} was found in the image"
        names = {c.member.character_id: c.member.name for c in ctx.cast}
        notes = []
        if resp.placement_swapped:
            out.placement_swapped = True
            notes.append("the faces were at each other's places (scored at the places asked for)")
        for bleed in resp.bleeds:
            out.identity_bleed = True
            who = " and ".join(names.get(cid, cid) for cid in bleed.character_ids)
            notes.append(f"identity bleed: one face (face {bleed.face_index + 1}) passes for {who}")
        if resp.extra_faces:
            notes.append(f"{len(resp.extra_faces)} extra face(s) matched to no character")
        out.cast_note = "; ".join(notes)
        first = out.cast[0]
        out.face_found = first.face_found
        if first.face_found:
            out.idr.CopyFrom(first.idr_before)
            out.copy.CopyFrom(first.copy)
            out.embedding.CopyFrom(first.face_embedding)
        return out

    def copy_gate(self, score: ck.ScoreStep) -> str:
        copies = [r.name for r in score.cast if r.copy.near_copy]
        if not copies:
            return ""
        what = f"near-copy of a reference photo for {', '.join(copies)}"
        if self.config.near_copy == "fail":
            raise JobFailed(
                Outcome.FAILED,
                "near_copy",
                f"the output is a {what}; IDLOCK_ORCHESTRATOR_NEAR_COPY=fail ends such jobs",
            )
        return f"flagged: the output is a {what} (a scene of several is flagged, not rendered again)"

    async def refine(
        self,
        job: Job,
        run: StepRunner,
        options: pb.GenerationOptions,
        ctx: ck.ContextStep,
        render: ck.RenderStep,
        score: ck.ScoreStep,
    ) -> ck.RefineStep:
        threshold = self.config.refine_threshold
        results = [common_pb2.CastResult() for _ in score.cast]  # copies, updated as faces change
        for mine, scored in zip(results, score.cast, strict=True):
            mine.CopyFrom(scored)
        low = [
            k
            for k, r in enumerate(results)
            if options.refine_face or not r.face_found or r.idr_before.calibrated < threshold
        ]
        out = ck.RefineStep(needed=bool(low))
        if not low:
            out.cast.extend(results)
            return out
        image, notes, attempts = render.image, [], 0
        current = {k: r.idr_before.calibrated for k, r in enumerate(results) if r.face_found}
        for k in low:
            r, c = results[k], ctx.cast[k]
            if not r.face_found:
                r.note = f"no face of {r.name} to repair"
                continue
            request = refiner_service_pb2.RefineRequest(
                image=image,
                identity=c.identity,
                references=list(c.references),
                threshold=threshold,
                max_attempts=2,
                strategy=refiner_service_pb2.REFINE_STRATEGY_AUTO,
                job_id=f"{job.id}-c{k + 1}",
                prompt=job.prompt,
                target_box=r.box,
            )
            resp, why = await steps.refine(self.peers, self.config, run, request)
            if resp is None:
                r.note = why
                continue
            attempts += len(resp.attempts)
            if not resp.improved:
                r.note = f"no repair of {r.name}'s face beat it; kept"
                continue
            rescored = await self.score(job, ctx, resp.best)
            after = {j: s.idr_before.calibrated for j, s in enumerate(rescored.cast) if s.face_found}
            worse = [
                results[j].name
                for j, before in current.items()
                if j != k and after.get(j, 0.0) < before - OTHERS_TOLERANCE
            ]
            if worse:
                r.note = f"the repair of {r.name}'s face made {', '.join(worse)} worse: discarded"
                continue
            image, current = resp.best, after
            r.refined = True
            r.note = f"repaired: calibrated IDR {r.idr_before.calibrated:.3f} -> {after.get(k, 0.0):.3f}"
            for j, s in enumerate(rescored.cast):  # every face as it is in the image kept
                if s.face_found:
                    results[j].idr_after.CopyFrom(s.idr_before)
                    results[j].box.CopyFrom(s.box)
                    results[j].face_index = s.face_index
                    results[j].copy.CopyFrom(s.copy)
                    results[j].face_embedding.CopyFrom(s.face_embedding)
            notes.append(r.note)
        out.attempts = attempts
        out.refined = any(r.refined for r in results)
        out.cast.extend(results)
        out.note = "; ".join(notes) or "; ".join(r.note for r in results if r.note)
        if out.refined:
            out.image.CopyFrom(image)
            if results[0].HasField("idr_after"):
                out.idr_after.CopyFrom(results[0].idr_after)
            out.copy_after.CopyFrom(results[0].copy)
        return out

    async def state(self, job: Job, ctx: ck.ContextStep, image: common_pb2.ImageRef) -> ck.StateStep:
        own = self._own_text(job, ctx)
        setting = heuristic_state(job.prompt).added.get("setting", [])[:1]
        pixels: bytes | None = None
        if self.extractor.uses_vision and self.objects is not None and image.uri:
            pixels = await self.objects.get(image.uri)
        out = ck.StateStep()
        for c in ctx.cast:
            name = c.member.name
            st = await self.extractor.extract(
                user_prompt=own[name],
                image=pixels,
                mime=image.mime or "image/png",
                vision_prompt=vision_question(job.prompt, name, c.member.role),
            )
            added = {k: v for k, v in st.added.items() if k not in SHARED}
            added["setting"] = list(st.added.get("setting") or setting)[:1]
            out.cast.add(
                character_id=c.member.character_id,
                name=name,
                role=c.member.role,
                tags=_tags(**added),
                removed=_tags(**st.removed),
                note=st.fallback_reason,
            )
            out.source = st.source
            out.fallback_reason = out.fallback_reason or st.fallback_reason
        first = out.cast[0]
        out.added.CopyFrom(first.tags)
        out.removed.CopyFrom(first.removed)
        return out

    async def record(
        self,
        job: Job,
        ctx: ck.ContextStep,
        render: ck.RenderStep,
        image: common_pb2.ImageRef,
        refine: ck.RefineStep,
        state: ck.StateStep,
    ) -> ck.RecordStep:
        out = ck.RecordStep()
        faces = {r.character_id: r for r in refine.cast}
        states = {s.character_id: s for s in state.cast}
        # each face as it is in the image kept (the refine step scored it again after a repair)
        embeddings = {c.character_id: c.face_embedding for c in refine.cast}
        for c in ctx.cast:
            cid = c.member.character_id
            face, st = faces[cid], states[cid]
            member_ctx = ck.ContextStep(
                prompt=ctx.prompt,
                negative_prompt=ctx.negative_prompt,
                engine=ctx.engine,
                fallback_reason=ctx.fallback_reason,
                memory_version=c.memory_version,
                state=list(c.state),
                ended=list(c.ended),
                episodes=list(c.episodes),
            )
            episode = memory_service_pb2.Episode(
                character_id=cid,
                job_id=job.id,
                kind=common_pb2.MEDIA_KIND_IMAGE,
                prompt=job.prompt,
                tags=st.tags,
                removed=st.removed,
                state_source=state.source,
                context=steps.scene_context(member_ctx),
                provider_label=render.provenance.label,
                cast=[o.member for o in ctx.cast if o.member.character_id != cid],
            )
            episode.image.CopyFrom(image)
            idr = face.idr_after if face.HasField("idr_after") else face.idr_before
            if face.face_found:
                episode.idr.CopyFrom(idr)
                episode.copy.CopyFrom(face.copy)
            if embeddings.get(cid) is not None and embeddings[cid].values:
                episode.face_embedding.CopyFrom(embeddings[cid])
            done = await steps.record(self.peers, self.config, episode)
            out.cast.add(
                character_id=cid, name=c.member.name, episode_id=done.episode_id, scene_index=done.scene_index
            )
            if cid == job.character_id:
                out.episode_id, out.scene_index, out.created = done.episode_id, done.scene_index, done.created
            out.consolidated = out.consolidated or done.consolidated
            out.model_seconds += done.model_seconds
        return out

    def cast_metrics(
        self,
        metrics: pb.JobMetrics,
        score: ck.ScoreStep,
        refine: ck.RefineStep,
        state: ck.StateStep,
        record: ck.RecordStep,
    ) -> None:
        states = {s.character_id: s for s in state.cast}
        episodes = {r.character_id: r for r in record.cast}
        for r in refine.cast:
            out = metrics.cast.add()
            out.CopyFrom(r)
            out.ClearField("face_embedding")
            out.tags.CopyFrom(states[r.character_id].tags)
            out.removed.CopyFrom(states[r.character_id].removed)
            out.episode_id = episodes[r.character_id].episode_id
            out.scene_index = episodes[r.character_id].scene_index
        metrics.extra_faces.extend(score.extra_faces)
        metrics.identity_bleed = score.identity_bleed
        metrics.placement_swapped = score.placement_swapped
        metrics.cast_note = score.cast_note


__all__ = ["CastFlow"]
