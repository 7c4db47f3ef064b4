"""Context building (seed §5.2 step 4-6): vectors, state, relevant scenes, summary and the composed prompt.

`build_context` is pure apart from its injected collaborators (text embedder or relevance search, LLM, cache), so it
is testable without gRPC, databases or Qdrant. `load_context` feeds it from the repository and the vector store;
`record_scene` appends an episode everywhere and consolidates when due. The servicer calls these two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from idlock import metrics
from idlock.errors import InvalidInput

from .cache import CacheKey, PromptCache
from .clock import ModelClock
from .consolidation import ConsolidationPolicy, SceneRecord, SummaryResult, consolidate
from .llm import GroqLlm, format_prompt
from .merge import MergeConfig, episode_weights, merge_identity
from .prompt import (
    DEFAULT_STYLE_GUIDE,
    CharacterSheet,
    ComposedPrompt,
    PromptInputs,
    SceneLine,
    StyleOverrides,
    compose_template,
    sanitize_prompt,
)
from .state import Interval, SceneTags, StateCache, StateFold, StoryState, compute_state
from .text_embed import (
    PendingEmbedding,
    ScenePrompts,
    TextEmbedder,
    aembed,
    embed_soon,
    embed_text_soon,
    embedded,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextConfig:
    merge: MergeConfig = field(default_factory=MergeConfig)
    recent_k: int = 3
    relevant_k: int = 2
    ended_window: int = 3
    prompt_max_chars: int = 2000
    deny_list: tuple[str, ...] = ()
    style_guide: str = DEFAULT_STYLE_GUIDE
    consolidation: ConsolidationPolicy = field(default_factory=ConsolidationPolicy)
    summary_max_chars: int = 1200

    @classmethod
    def from_settings(cls, s: Any) -> ContextConfig:
        return cls(
            merge=MergeConfig(w_s=s.w_s, w_e=s.w_e, alpha=s.alpha),
            recent_k=s.recent_k,
            relevant_k=s.relevant_k,
            ended_window=s.ended_window,
            prompt_max_chars=s.prompt_max_chars,
            deny_list=tuple(s.deny_list),
            style_guide=s.master_style_guide,
            consolidation=ConsolidationPolicy(s.consolidate_every_images, s.consolidate_every_videos),
            summary_max_chars=s.summary_max_chars,
        )


@dataclass(frozen=True)
class EpisodeView:
    id: str
    scene_index: int
    kind: str
    text: str
    face_embedding: tuple[float, ...] | None = None

    @classmethod
    def from_model(cls, ep: Any) -> EpisodeView:
        emb = tuple(ep.face_embedding) if ep.face_embedding else None
        return cls(ep.id, ep.scene_index, ep.kind, ep.text, emb)


#: (prompt text, k, scene indexes to exclude) -> the most relevant earlier episodes; it times its own model calls
#: (e.g. on the clock given to `build_context`)
RelevantSearch = Callable[[str, int, Sequence[int]], Awaitable[Sequence[EpisodeView]]]


@dataclass(frozen=True)
class MemoryContext:
    character_id: str
    memory_version: int
    semantic_vector: np.ndarray | None
    merged_vector: np.ndarray | None
    recent: tuple[EpisodeView, ...]
    relevant: tuple[EpisodeView, ...]
    state: StoryState
    summary: str
    prompt: ComposedPrompt
    cache_hit: bool
    #: effective weights of the episodes in the merge, newest first (diagnostics)
    episode_weights: tuple[float, ...] = ()
    #: seconds of this call spent awaiting models and providers (text embedder, LLM prompt formatter)
    model_seconds: float = 0.0
    #: attributes that ended in the last `ended_window` scenes (what the prompt says is no longer present)
    recently_ended: tuple[Interval, ...] = ()
    #: set by `load_context`: the character row, and the Episode rows of `recent` + `relevant` by scene index,
    #: so the caller does not read them again
    character: Any = None
    episodes: Mapping[int, Any] = field(default_factory=dict)


def _engine_key(llm: GroqLlm | None) -> str:
    return llm.config.engine_key() if llm is not None else "template"


async def _rank_by_text(
    embedder: TextEmbedder, prompt: str, candidates: Sequence[EpisodeView], k: int, clock: ModelClock
) -> list[EpisodeView]:
    cands = [c for c in candidates if c.text.strip()]
    if k <= 0 or not cands:
        return []
    vecs = await aembed(embedder, [prompt] + [c.text for c in cands], clock)
    sims = vecs[1:] @ vecs[0]
    order = sorted(range(len(cands)), key=lambda i: (-float(sims[i]), cands[i].scene_index))
    return [cands[i] for i in order[:k]]


def sheet_of(ch: Any) -> CharacterSheet:
    """A character row's sheet, with its name and description."""
    sheet_d = dict(ch.sheet or {})
    sheet_d.setdefault("name", ch.name)
    sheet_d["description"] = ch.description or ""
    return CharacterSheet.from_dict(sheet_d)


async def build_context(
    *,
    character_id: str,
    memory_version: int,
    sheet: CharacterSheet,
    user_prompt: str,
    scenes: Sequence[SceneTags] = (),
    state: StoryState | None = None,
    recent: Sequence[EpisodeView] = (),
    history: Sequence[EpisodeView] = (),
    semantic_vector: Sequence[float] | np.ndarray | None = None,
    summary: str = "",
    overrides: StyleOverrides | None = None,
    config: ContextConfig | None = None,
    embedder: TextEmbedder | None = None,
    relevant_search: RelevantSearch | None = None,
    llm: GroqLlm | None = None,
    cache: PromptCache | None = None,
    clock: ModelClock | None = None,
) -> MemoryContext:
    """The context for the next scene.

    scenes: every episode's tags (for the state), or `state` already replayed; recent: newest first (the first
    `recent_k` are used);
    history: older episodes to rank by text similarity when no `relevant_search` is given (needs `embedder`).
    Raises `InvalidInput` for a bad prompt (control characters are stripped; too long or deny-listed is refused).
    `model_seconds` is what `clock` (shared with `relevant_search`, when given) accumulated.
    """
    cfg = config or ContextConfig()
    clock = clock or ModelClock()
    ov = overrides or StyleOverrides()
    prompt = sanitize_prompt(user_prompt, max_len=cfg.prompt_max_chars, deny_list=cfg.deny_list)
    for text in ov.texts():
        sanitize_prompt(text, max_len=cfg.prompt_max_chars, deny_list=cfg.deny_list, what="style override")
    if state is None:
        state = compute_state(scenes)

    rec = tuple(sorted(recent, key=lambda e: -e.scene_index)[: cfg.recent_k])
    sem = None if semantic_vector is None else np.asarray(semantic_vector, dtype=np.float64)
    merged = None
    weights: tuple[float, ...] = ()
    if sem is not None:
        faces = [np.asarray(e.face_embedding, dtype=np.float64) for e in rec if e.face_embedding]
        faces = [f for f in faces if f.shape == sem.shape]
        merged = merge_identity(sem, faces, cfg.merge)
        weights = tuple(episode_weights(len(faces), cfg.merge))

    exclude = [e.scene_index for e in rec]
    relevant: list[EpisodeView] = []
    if cfg.relevant_k > 0:
        if relevant_search is not None:
            relevant = [
                e
                for e in await relevant_search(prompt, cfg.relevant_k, exclude)
                if e.scene_index not in exclude
            ]
        elif embedder is not None and history:
            older = [e for e in history if e.scene_index not in set(exclude)]
            relevant = await _rank_by_text(embedder, prompt, older, cfg.relevant_k, clock)
    relevant = sorted(relevant, key=lambda e: e.scene_index)[: cfg.relevant_k]

    inputs = PromptInputs(
        sheet=sheet,
        user_prompt=prompt,
        state=state if state.last_scene is not None else None,
        recent_scenes=tuple(SceneLine(e.scene_index, e.text) for e in rec),
        relevant_scenes=tuple(SceneLine(e.scene_index, e.text) for e in relevant),
        summary=summary,
        style_guide=cfg.style_guide,
        overrides=ov,
        max_recent=cfg.recent_k,
        ended_window=cfg.ended_window,
    )
    template = compose_template(inputs)
    if llm is None or not llm.enabled:
        # the prompt is the template just composed: a cache read (a NATS round trip) would only find it again
        cache = None
    key = CacheKey(character_id, memory_version, template.template_hash, ov.digest(), _engine_key(llm))
    composed: ComposedPrompt | None = await cache.get(key) if cache is not None else None
    hit = composed is not None
    if cache is not None:
        metrics.PROMPT_CACHE.labels("hit" if hit else "miss").inc()
    if composed is None:
        composed = await format_prompt(template, inputs, llm, deny_list=cfg.deny_list, clock=clock)
        # only LLM answers are cached: a template used because the LLM failed is not, so the next call tries the
        # LLM again
        if cache is not None and composed.engine == "llm":
            await cache.put(key, composed)
    return MemoryContext(
        character_id=character_id,
        memory_version=memory_version,
        semantic_vector=None if sem is None else sem / np.linalg.norm(sem),
        merged_vector=merged,
        recent=rec,
        relevant=tuple(relevant),
        state=state,
        summary=summary,
        prompt=composed,
        cache_hit=hit,
        episode_weights=weights,
        recently_ended=tuple(inputs.recently_ended()),
        model_seconds=clock.seconds,
    )


# ---- wiring over the repository and the vector store ------------------------------------------------------------


async def story_state(
    session: Any, character_id: str, scene_count: int, states: StateCache | None = None
) -> StoryState:
    """The story state after the character's scenes: with `states`, only scenes not yet folded are read."""
    from . import repository as repo

    if states is None:
        return compute_state(await repo.scene_tags(session, character_id))
    fold = states.fold(character_id, scene_count)
    if fold.last is None and states.may_have_stored(scene_count):
        # not seen here since the process started: from the stored fold, when there is one
        stored = await repo.stored_fold(session, character_id)
        if stored is not None and stored.last_scene <= scene_count:
            try:
                fold = states.adopt(character_id, StateFold.from_dict(stored.fold))
            except (ValueError, KeyError, TypeError) as e:  # an unreadable copy: the story is replayed
                log.warning("stored story fold of %s not used: %s", character_id, e)
    for scene in await repo.scene_tags(session, character_id, after_scene=fold.last or 0):
        fold.add(scene)  # a scene folded meanwhile by another request is skipped
    return fold.state()


def _prefetch_query(
    embedder: TextEmbedder, user_prompt: str, cfg: ContextConfig, clock: ModelClock
) -> PendingEmbedding | None:
    """Start embedding the prompt for the relevance search now, so that it overlaps the reads that follow."""
    try:
        text = sanitize_prompt(user_prompt, max_len=cfg.prompt_max_chars, deny_list=cfg.deny_list)
    except InvalidInput:
        return None  # build_context refuses it
    return embed_text_soon(embedder, text, clock)


async def load_context(
    session: Any,
    character_id: str,
    user_prompt: str,
    *,
    vectors: Any | None = None,
    embedder: TextEmbedder | None = None,
    config: ContextConfig | None = None,
    llm: GroqLlm | None = None,
    cache: PromptCache | None = None,
    overrides: StyleOverrides | None = None,
    owner_id: str | None = None,
    states: StateCache | None = None,
    scene_prompts: ScenePrompts | None = None,
) -> MemoryContext:
    """Read the character, its episodes, summary and vectors, then `build_context`. NotFound when missing.
    With `states`, the story state is kept between calls and only new scenes are read and replayed. With
    `scene_prompts`, the prompt's embedding (when one was made) is kept for recording the scene.

    The result carries the character row and the Episode rows of its recent and relevant scenes."""
    from . import repository as repo
    from .models import Episode

    cfg = config or ContextConfig()
    clock = ModelClock()
    relevant = embedder is not None and cfg.relevant_k > 0
    ranks = relevant and vectors is not None  # by the prompt's embedding, else the whole history is read
    # only scenes older than the recent ones can be relevant ones; a story known to be that long has the prompt
    # embedded while the character is read
    known = states.scenes_seen(character_id) if states is not None else 0
    query = _prefetch_query(embedder, user_prompt, cfg, clock) if ranks and known > cfg.recent_k else None
    try:
        ch = await repo.get_character(session, character_id, owner_id=owner_id)
        older = relevant and (ch.episode_count or 0) > cfg.recent_k
        if query is None and older and ranks:
            query = _prefetch_query(embedder, user_prompt, cfg, clock)
        sheet = sheet_of(ch)
        state = await story_state(session, character_id, ch.episode_count or 0, states)
        recent_rows = await repo.recent_episodes(session, character_id, cfg.recent_k)
        rows: dict[int, Any] = {e.scene_index: e for e in recent_rows}  # Episode rows read, by scene
        recent = [EpisodeView.from_model(e) for e in recent_rows]
        summ = await repo.latest_summary(session, character_id)
        semantic = None
        if vectors is not None and ch.encoder and ch.identity_dim:
            semantic = await vectors.get_semantic(character_id, ch.encoder, ch.identity_dim)

        relevant_search: RelevantSearch | None = None
        history: list[EpisodeView] = []
        if older:
            if vectors is not None:

                async def relevant_search(text: str, k: int, exclude: Sequence[int]) -> Sequence[EpisodeView]:
                    prefetched = query is not None and query.text == text
                    qv = (await (query.vector if prefetched else aembed(embedder, [text], clock)))[0]
                    hits = await vectors.search_episode_text(
                        character_id, embedder.name, qv, k, exclude_scenes=exclude
                    )
                    idx = [h.scene_index for h in hits if h.scene_index is not None]
                    found = await repo.episodes_by_scene(session, character_id, idx)
                    rows.update((e.scene_index, e) for e in found)
                    return [EpisodeView.from_model(e) for e in found]
            else:
                from sqlalchemy import select

                found = (
                    await session.execute(select(Episode).where(Episode.character_id == character_id))
                ).scalars()
                for e in found:
                    rows[e.scene_index] = e
                    history.append(EpisodeView.from_model(e))

        ctx = await build_context(
            character_id=character_id,
            memory_version=ch.memory_version,
            sheet=sheet,
            user_prompt=user_prompt,
            state=state,
            recent=recent,
            history=history,
            semantic_vector=semantic,
            summary=summ.text if summ is not None else "",
            overrides=overrides,
            config=cfg,
            embedder=embedder,
            relevant_search=relevant_search,
            llm=llm,
            cache=cache,
            clock=clock,
        )
        if scene_prompts is not None and query is not None and _succeeded(query.vector):
            scene_prompts.keep(character_id, query.text, query.vector.result()[0])
    finally:
        if query is not None:
            query.cancel()
    used = {e.scene_index for e in (*ctx.recent, *ctx.relevant)}
    return replace(ctx, character=ch, episodes={i: rows[i] for i in sorted(used) if i in rows})


@dataclass(frozen=True)
class RecordResult:
    episode: Any  # models.Episode
    created: bool
    summary: SummaryResult | None
    #: seconds of this call spent awaiting models and providers (text embedder, LLM summariser)
    model_seconds: float = 0.0
    #: a consolidation is due and was left to the caller (`consolidate=False`)
    consolidation_due: bool = False


def _succeeded(work: asyncio.Future[Any]) -> bool:
    return work.done() and not work.cancelled() and work.exception() is None


def embed_episode_soon(
    embedder: TextEmbedder | None,
    episode: Mapping[str, Any],
    clock: ModelClock,
    *,
    character_id: str = "",
    scene_prompts: ScenePrompts | None = None,
) -> PendingEmbedding | None:
    """Start embedding an episode's text (from `record_scene`'s episode keywords), so that the reads and writes
    of recording it run meanwhile; or take the vector its scene's context made of the same text from
    `scene_prompts`. None when there is no embedder or no text."""
    from .models import episode_text

    text = episode_text(episode.get("prompt", ""), episode.get("description", ""))
    if embedder is None or not text.strip():
        return None
    if scene_prompts is not None and (vector := scene_prompts.take(character_id, text)) is not None:
        return embedded(text, vector)
    return embed_text_soon(embedder, text, clock)


async def record_scene(
    session: Any,
    character_id: str,
    *,
    job_id: str,
    vectors: Any | None = None,
    embedder: TextEmbedder | None = None,
    llm: GroqLlm | None = None,
    config: ContextConfig | None = None,
    character: Any | None = None,
    consolidate: bool = True,
    clock: ModelClock | None = None,
    embedding: PendingEmbedding | None = None,
    **episode: Any,
) -> RecordResult:
    """Append the episode (idempotent on job_id), index its vectors, and consolidate when due (with
    `consolidate=False`, only say whether it is due: the caller consolidates, e.g. after answering).

    `character`: the character row when the caller has already read it (it is read here otherwise).
    `embedding`: the text's embedding from `embed_episode_soon(..., clock)`, when the caller started it early.
    `episode` takes the keyword arguments of `repository.record_episode` (kind, prompt, tags_added, ...).
    """
    from . import repository as repo

    cfg = config or ContextConfig()
    clock = clock or ModelClock()
    ch = character
    if ch is None and vectors is not None:
        ch = await repo.get_character(session, character_id)
    # read before record_episode commits (a session that expires on commit would have to reload them)
    encoder, owner_id = (ch.encoder, ch.owner_id) if ch is not None else ("", "")
    if embedding is None and vectors is not None:
        embedding = embed_episode_soon(embedder, episode, clock)  # it runs while the row is written
    text, text_vector = (embedding.text, embedding.vector) if embedding is not None else ("", None)
    face_write: asyncio.Future[str] | None = None
    try:
        ep, created = await repo.record_episode(session, character_id, job_id=job_id, **episode)
        # re-indexing a replayed episode is harmless: point ids are deterministic. The face is written while the
        # row commits and the text is indexed; the record ends when both writes have
        if vectors is not None and ep.face_embedding and encoder:
            face_write = asyncio.ensure_future(
                vectors.upsert_episode_face(
                    character_id,
                    owner_id,
                    ep.id,
                    ep.scene_index,
                    encoder,
                    ep.face_embedding,
                    [r.get("uri", "") if isinstance(r, Mapping) else str(r) for r in ep.result_refs or []],
                )
            )
        # the consolidation check reads only the episodes table: it runs while the text is still being embedded,
        # and its transaction ends before that is awaited (on SQLite it holds the write lock)
        due = await consolidation_due(session, character_id, cfg)
        await session.commit()
        if vectors is not None and embedder is not None and ep.text.strip():
            if text_vector is None or ep.text != text:  # a replay returns the stored episode: index its text
                if text_vector is not None:
                    text_vector.cancel()
                text_vector = embed_soon(embedder, [ep.text], clock)
            tv = (await text_vector)[0]
            await vectors.upsert_episode_text(
                character_id, owner_id, ep.id, ep.scene_index, embedder.name, tv, ep.text
            )
        if face_write is not None:
            await face_write
    finally:
        _settle(text_vector, face_write)
    if not consolidate:
        return RecordResult(ep, created, None, model_seconds=clock.seconds, consolidation_due=due)
    summary = None
    if due:
        summary = await maybe_consolidate(session, character_id, llm=llm, config=cfg, clock=clock)
    return RecordResult(ep, created, summary, model_seconds=clock.seconds)


def _settle(*started: asyncio.Future[Any] | None) -> None:
    """Work a record started ahead: cancelled when the record ended first, its error (raised by the record, or
    made moot by the record failing first) retrieved so that none is logged as never retrieved."""
    for future in started:
        if future is None or future.cancelled():
            continue
        if not future.done():
            future.cancel()
        else:
            future.exception()


async def consolidation_due(session: Any, character_id: str, config: ContextConfig) -> bool:
    """Whether the scenes since the last summary call for a new one: the one-round-trip check run on every
    recorded episode (usually "no"), before `maybe_consolidate` reads those scenes."""
    from . import repository as repo

    return config.consolidation.due(await repo.episode_kinds_since_summary(session, character_id))


async def maybe_consolidate(
    session: Any,
    character_id: str,
    *,
    llm: GroqLlm | None = None,
    config: ContextConfig | None = None,
    force: bool = False,
    clock: ModelClock | None = None,
    states: StateCache | None = None,
) -> SummaryResult | None:
    """Write a story-so-far summary when the scenes since the last one are due (5 images / 3 videos), or with
    `force` whenever there is at least one new scene. None when nothing was written. The LLM's time goes on
    `clock`; with `states`, the story state is the kept one brought up to date instead of a full replay."""
    from sqlalchemy import select

    from . import repository as repo
    from .models import Episode

    cfg = config or ContextConfig()
    last = await repo.latest_summary(session, character_id)
    after = last.up_to_scene if last is not None else 0
    rows = await session.execute(
        select(Episode)
        .where(Episode.character_id == character_id, Episode.scene_index > after)
        .order_by(Episode.scene_index)
    )
    eps = list(rows.scalars())
    if not eps or not (force or cfg.consolidation.due([e.kind for e in eps])):
        return None
    state = await story_state(session, character_id, eps[-1].scene_index, states)
    scenes = [SceneRecord(e.scene_index, e.kind, e.text) for e in eps]
    previous = last.text if last is not None else ""
    # the summariser (an LLM call: seconds) must not hold the transaction, which on SQLite is the write lock
    await session.commit()
    res = await consolidate(scenes, state, previous, llm=llm, max_chars=cfg.summary_max_chars, clock=clock)
    latest = await repo.latest_summary(session, character_id)
    if latest is not None and latest.up_to_scene >= res.up_to_scene:
        return None  # a concurrent consolidation covered these scenes meanwhile
    await repo.add_summary(
        session,
        character_id,
        up_to_scene=res.up_to_scene,
        text=res.text,
        engine=res.engine,
        fallback_reason=res.fallback_reason,
    )
    return res
