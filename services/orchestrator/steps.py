"""Steps that image and video jobs share: the consent re-check, memory's context, the story state read from the
output, the episode recorded, and the job's metrics. Each step takes typed values and returns its checkpoint
message (`job_checkpoint.proto`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from idlock.errors import IdlockError, NotFound
from idlock.storage import ObjectStore
from idlock.story import CATEGORIES, EXCLUSIVE, matches, normalize_name
from idlock.v1 import common_pb2, memory_service_pb2, refiner_service_pb2
from idlock.v1 import job_checkpoint_pb2 as ck
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.checkpoint import SCENE_CONTEXT_FIELDS, Checkpoint
from services.orchestrator.flow import (
    REFINER_UNAVAILABLE,
    FlowConfig,
    JobFailed,
    Outcome,
    Peers,
    character_gone,
)
from services.orchestrator.models import Job
from services.orchestrator.state_extraction import HEURISTIC, StateExtractor, heuristic_state

if TYPE_CHECKING:
    from services.orchestrator.runner import StepRunner

#: steps that are calls to model services (renderer, face models, refiner): all their time is model time
MODEL_STEPS = frozenset({"render", "regenerate", "score", "refine"})


def admit(who: str, character: memory_service_pb2.Character) -> memory_service_pb2.Character:
    """Consent and readiness of character `who`, checked again when the job runs (they may have changed since
    submission)."""
    if not character.consent_given:
        raise JobFailed(
            Outcome.FAILED,
            "consent_revoked",
            f"consent for character {who} was withdrawn; the job was not run",
        )
    if character.status == memory_service_pb2.CHARACTER_STATUS_NEEDS_MORE_REFS:
        reasons = "; ".join(character.status_reasons) or "the references are not good enough"
        raise JobFailed(
            Outcome.NEEDS_MORE_REFS, "needs_more_refs", f"character needs more reference images: {reasons}"
        )
    return character


async def check_character(peers: Peers, config: FlowConfig, job: Job) -> memory_service_pb2.Character:
    try:
        character = await peers.get_character(job.character_id, job.owner_id, timeout_s=config.step_timeout_s)
    except NotFound:
        raise character_gone(job) from None
    return admit(job.character_id, character)


async def context(
    peers: Peers,
    config: FlowConfig,
    job: Job,
    character: memory_service_pb2.Character | None,
    asked: Awaitable[memory_service_pb2.BuildContextResponse] | None = None,
) -> ck.ContextStep:
    """Memory's context for the scene (`asked`: one already on its way). Consent is checked on the character it
    returns, or on `character` (asked for separately) when it returns none."""
    try:
        ctx = await (
            asked
            if asked is not None
            else peers.build_context(
                job.character_id,
                job.owner_id,
                job.prompt,
                list(job.style_overrides or []),
                timeout_s=config.step_timeout_s,
            )
        )
    except NotFound:
        raise character_gone(job) from None
    if ctx.HasField("character") and ctx.character.id:
        character = admit(job.character_id, ctx.character)
    elif character is None:
        character = await check_character(peers, config, job)
    out = ck.ContextStep(
        prompt=ctx.prompt.prompt or job.prompt,
        negative_prompt=ctx.prompt.negative_prompt,
        engine=ctx.prompt.engine or "template",
        fallback_reason=ctx.prompt.fallback_reason,
        memory_version=int(ctx.memory_version),
        references=list(character.reference_images),
        model_seconds=round(float(ctx.model_seconds), 4),
        cache_hit=bool(ctx.cache_hit),
        state=list(ctx.current_state),
        ended=list(ctx.recently_ended),
        episodes=episodes_used(ctx),
    )
    out.identity.CopyFrom(character.identity if character.identity.values else ctx.semantic)
    return out


def episodes_used(ctx: memory_service_pb2.BuildContextResponse) -> list[memory_service_pb2.EpisodeUse]:
    """The earlier scenes a context drew on, and why (recent or relevant)."""
    return [
        memory_service_pb2.EpisodeUse(episode_id=e.id, scene_index=e.scene_index, reason=reason)
        for reason, episodes in (("recent", ctx.recent), ("relevant", ctx.relevant))
        for e in episodes
    ]


def scene_context(step: ck.ContextStep) -> memory_service_pb2.SceneContext:
    """What the scene was made from, as the job and its episode show it."""
    out = memory_service_pb2.SceneContext()
    for name in SCENE_CONTEXT_FIELDS:
        value = getattr(step, name)
        if isinstance(value, str | bool | int):
            setattr(out, name, value)
        else:
            getattr(out, name).extend(value)
    return out


async def read_state(
    extractor: StateExtractor,
    objects: ObjectStore | None,
    job: Job,
    image: common_pb2.ImageRef | None,
) -> ck.StateStep:
    """The story state after the scene: a vision model reads `image` when configured; the labelled heuristic
    reads the prompt."""
    image_bytes: bytes | None = None
    if extractor.uses_vision and objects is not None and image is not None and image.uri:
        image_bytes = await objects.get(image.uri)
    t0 = time.perf_counter()
    mime = (image.mime if image is not None else "") or "image/png"
    st = await extractor.extract(user_prompt=job.prompt, image=image_bytes, mime=mime)
    return ck.StateStep(
        model_seconds=round(time.perf_counter() - t0, 4) if st.source != HEURISTIC else 0.0,
        added=common_pb2.StateTags(**st.added),
        removed=common_pb2.StateTags(**st.removed),
        description=st.description,
        source=st.source,
        fallback_reason=st.fallback_reason,
    )


def scene_state(ctx: ck.ContextStep, prompt: str) -> common_pb2.StateTags:
    """What the scene shows, as structure for the renderer: the state memory says is in effect, with what the
    request itself adds and ends (read by the labelled keyword reader, the same one as the heuristic state)."""
    tags: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for item in ctx.state:
        if item.category in tags:
            tags[item.category].append(item.name)
    scene = heuristic_state(prompt)
    for cat, names in scene.removed.items():
        gone = [normalize_name(n) for n in names]
        tags[cat] = [
            n for n in tags.get(cat, []) if not any(matches(g, normalize_name(n), category=cat) for g in gone)
        ]
    for cat, names in scene.added.items():
        if cat in EXCLUSIVE:
            tags[cat] = names[:1]
            continue
        known = {normalize_name(n) for n in tags[cat]}
        tags[cat].extend(n for n in names if normalize_name(n) not in known)
    return common_pb2.StateTags(**tags)


def copy_verdict(score: ck.ScoreStep, refine: ck.RefineStep | None = None) -> common_pb2.CopyCheck:
    """The result's copy check: the refined image's when the refiner replaced it, else the scored one's."""
    if refine is not None and refine.refined and refine.HasField("copy_after"):
        return refine.copy_after
    return score.copy


def scene_episode(
    job: Job, kind: int, ctx: ck.ContextStep, render: ck.RenderStep, score: ck.ScoreStep, state: ck.StateStep
) -> memory_service_pb2.Episode:
    """The episode a job records (image or video): its state tags, what it was made from and rendered by, and
    the scored face when there is one."""
    episode = memory_service_pb2.Episode(
        character_id=job.character_id,
        job_id=job.id,
        kind=kind,
        prompt=job.prompt,
        tags=state.added,
        removed=state.removed,
        description=state.description,
        state_source=state.source,
        context=scene_context(ctx),
        provider_label=render.provenance.label,
    )
    if score.HasField("idr"):
        episode.idr.CopyFrom(score.idr)
    if score.HasField("copy"):
        episode.copy.CopyFrom(score.copy)
    if score.embedding.values:
        episode.face_embedding.CopyFrom(score.embedding)
    return episode


async def refine(
    peers: Peers, config: FlowConfig, run: StepRunner, request: refiner_service_pb2.RefineRequest
) -> tuple[refiner_service_pb2.RefineResponse | None, str]:
    """The refiner's answer, or None and why it could not run (the refiner is an enhancement: a job goes on
    without it)."""
    refine_image = getattr(peers, "refine_image", None)
    if refine_image is None:
        return None, f"{REFINER_UNAVAILABLE}: no refiner configured"
    await run.confirm("refine")
    try:
        return await refine_image(request, timeout_s=config.refine_timeout_s), ""
    except (TimeoutError, IdlockError) as e:
        message = e.message if isinstance(e, IdlockError) else "timed out"
        return None, f"{REFINER_UNAVAILABLE}: {message}"


async def record(peers: Peers, config: FlowConfig, episode: memory_service_pb2.Episode) -> ck.RecordStep:
    """RecordEpisode is idempotent on the job id: a redelivered job never appends a second episode."""
    resp = await peers.record_episode(episode, timeout_s=config.step_timeout_s)
    return ck.RecordStep(
        episode_id=resp.episode.id,
        scene_index=int(resp.episode.scene_index),
        created=bool(resp.created),
        consolidated=bool(resp.consolidated),
        model_seconds=round(float(resp.model_seconds), 4),
    )


def step_model_seconds(
    name: str, result: ck.RefineStep | ck.ContextStep | ck.StateStep | ck.RecordStep
) -> float:
    """Seconds of a step spent inside model compute and providers: the whole step for the model services, what
    memory reports for its text embedder and LLM, the vision model's time for the state."""
    if name in MODEL_STEPS:
        if name == "refine" and not result.HasField("attempts"):
            return 0.0  # the gate let the image be: no refiner ran
        return float(result.seconds)
    return float(getattr(result, "model_seconds", 0.0))


def job_metrics(
    job: Job,
    config: FlowConfig,
    ckpt: Checkpoint,
    render: ck.RenderStep,
    score: ck.ScoreStep,
    refine: ck.RefineStep,
    elapsed_s: float,
    copy_note: str = "",
) -> pb.JobMetrics:
    """The metrics a job ends with: what rendered it, what it cost, its scores and its time per step."""
    prov = render.provenance
    state = ckpt.get("state")
    m = pb.JobMetrics(
        refined=refine.refined,
        refine_needed=refine.needed,
        refine_note=refine.note,
        provider=prov.provider,
        model=prov.model,
        provider_label=prov.label,
        fallback_used=prov.fallback_used,
        lora_id=prov.lora.lora_id,
        prompt_engine=ckpt.get("context").engine,
        state_source=state.source,
        tags=state.added,
        scene_index=ckpt.get("record").scene_index,
        estimated_cost_usd=prov.estimated_cost_usd + config.cost_per_job_usd,
        attempts=job.attempts,
    )
    for name in ckpt.steps_done():
        step = ckpt.get(name)
        m.step_seconds[name] = float(step.seconds)
        m.step_model_seconds[name] = step_model_seconds(name, step)
    if score.HasField("idr"):
        m.idr_before.CopyFrom(score.idr)
    if refine.HasField("idr_after"):
        m.idr_after.CopyFrom(refine.idr_after)
    m.copy.CopyFrom(copy_verdict(score, refine))
    m.copy_note = copy_note
    m.total_seconds = elapsed_s or sum(m.step_seconds.values())
    # paid calls as the render service counted them before making them (a repeated one shows as 2)
    renders = [ckpt.get("render").provenance] if ckpt.done("render") else [prov]
    if ckpt.done("regenerate") and ckpt.get("regenerate").HasField("render"):
        renders.append(ckpt.get("regenerate").render.provenance)
    m.paid_calls = sum(r.paid_calls for r in renders)
    m.paid_call_repeated = any(r.paid_calls > 1 for r in renders)
    m.moderation = prov.moderation
    return m


__all__ = [
    "MODEL_STEPS",
    "admit",
    "check_character",
    "context",
    "copy_verdict",
    "episodes_used",
    "job_metrics",
    "read_state",
    "record",
    "refine",
    "scene_episode",
    "scene_state",
    "step_model_seconds",
]
