"""The story's use cases: record a scene's episode (idempotent per job), read the history, the current state and
an attribute's history, build a scene's context, and consolidate the memory (every N scenes, after answering).
Plain Python over the runtime; the servicer maps protos."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from idlock import subjects
from idlock.errors import InvalidInput, NotFound, PreconditionFailed, required
from idlock.v1 import common_pb2, events_pb2
from services.memory import characters
from services.memory import repository as repo
from services.memory.clock import ModelClock
from services.memory.context import embed_episode_soon, load_context, maybe_consolidate, record_scene
from services.memory.models import TAG_CATEGORIES
from services.memory.prompt import StyleOverrides
from services.memory.runtime import MemoryRuntime
from services.memory.state import Interval, StoryState, compute_state
from services.memory.views import KIND, now, ts

log = logging.getLogger("idlock.memory")


@dataclass(frozen=True)
class Recorded:
    episode: Any
    encoder: str
    created: bool
    consolidation_due: bool
    model_seconds: float


@dataclass(frozen=True)
class History:
    episodes: list[Any]
    encoder: str
    next_page_token: str
    summary: str


@dataclass(frozen=True)
class Summary:
    text: str
    engine: str
    up_to_scene: int


class Story:
    def __init__(self, rt: MemoryRuntime) -> None:
        self.rt = rt
        #: consolidations running after RecordEpisode answered, by character (one at a time per character)
        self._consolidating: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        """Let started summaries be written (a cut one is redone by the next episode)."""
        if self._consolidating:
            await asyncio.wait(
                list(self._consolidating.values()), timeout=self.rt.settings.shutdown_consolidation_s
            )

    # --- consolidation after answering ------------------------------------------------------------------------

    def _consolidate_soon(self, cid: str) -> None:
        """Write the due summary after RecordEpisode has answered: the job need not wait for the summariser (an
        LLM call, seconds). Reads of the character's story wait for it (`settled`). A consolidation that fails
        or is cut off is redone when the next episode is recorded (it is still due then)."""
        rt = self.rt
        previous = self._consolidating.get(cid)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                async with rt.db.session() as s:
                    summary = await maybe_consolidate(s, cid, llm=rt.llm, config=rt.config, states=rt.states)
                if summary is not None:
                    await self._published(cid, summary)
            except (NotFound, IntegrityError):
                pass  # erased meanwhile (the summary's character row is gone)
            except Exception:
                log.exception(
                    "consolidating the memory of character %s failed; the next episode retries", cid
                )

        task = asyncio.ensure_future(run())
        self._consolidating[cid] = task
        task.add_done_callback(
            lambda t: self._consolidating.pop(cid, None) if self._consolidating.get(cid) is t else None
        )

    async def settled(self, cid: str) -> None:
        """Wait for a consolidation of this character that is still being written."""
        task = self._consolidating.get(cid)
        if task is not None:
            await asyncio.wait([task])

    def summary_engine(self, engine: str) -> str:
        return f"llm:{self.rt.llm.config.model}" if engine == "llm" else "digest"

    async def _published(self, cid: str, summary: Any) -> None:
        await self.rt.publish(
            subjects.MEMORY_CONSOLIDATED,
            events_pb2.MemoryConsolidated(
                character_id=cid,
                up_to_scene=summary.up_to_scene,
                engine=self.summary_engine(summary.engine),
                at=now(),
            ),
            msg_id=f"memory.consolidated.{cid}.{summary.up_to_scene}",
        )

    # --- use cases --------------------------------------------------------------------------------------------

    async def record(
        self,
        character_id: str,
        job_id: str,
        episode: dict[str, Any],
        face_embedding: common_pb2.IdentityVector,
    ) -> Recorded:
        rt = self.rt
        cid = required(character_id, "episode.character_id")
        job_id = required(job_id, "episode.job_id")
        clock = ModelClock()
        # the text model runs while the character is read and the episode written
        embedding = embed_episode_soon(
            rt.embedder if rt.vectors else None,
            episode,
            clock,
            character_id=cid,
            scene_prompts=rt.scene_prompts,
        )
        try:
            async with rt.db.session() as s:
                ch = await repo.get_character(s, cid)
                face = characters.check_face_embedding(
                    ch, face_embedding.encoder, list(face_embedding.values)
                )
                encoder = ch.encoder  # read now: recording may roll back (a replay), which expires the row
                res = await record_scene(
                    s,
                    cid,
                    job_id=job_id,
                    vectors=rt.vectors,
                    embedder=rt.embedder,
                    llm=rt.llm,
                    config=rt.config,
                    character=ch,
                    face_embedding=face,
                    consolidate=False,
                    clock=clock,
                    embedding=embedding,
                    **episode,
                )
        finally:
            if embedding is not None:
                embedding.cancel()
        ep = res.episode
        recorded = events_pb2.EpisodeRecorded(
            character_id=cid,
            episode_id=ep.id,
            job_id=ep.job_id,
            scene_index=ep.scene_index,
            kind=KIND.get(ep.kind, common_pb2.MEDIA_KIND_UNSPECIFIED),
            at=ts(ep.created_at),
        )
        rt.soon(rt.publish(subjects.EPISODE_RECORDED, recorded, f"episode.recorded.{cid}.{ep.job_id}"))
        if res.consolidation_due:
            self._consolidate_soon(cid)
        return Recorded(ep, encoder, res.created, res.consolidation_due, res.model_seconds)

    async def history(self, character_id: str, owner: str | None, page_size: int, page_token: str) -> History:
        cid = required(character_id, "character_id")
        await self.settled(cid)
        async with self.rt.db.session(read_only=True) as s:
            ch = await repo.get_character(s, cid, owner_id=owner)
            rows, token = await repo.list_history(s, cid, page_size=page_size, page_token=page_token)
            summary = await repo.latest_summary(s, cid)
        return History(rows, ch.encoder, token, summary.text if summary is not None else "")

    async def current_state(self, character_id: str, owner: str | None) -> StoryState:
        cid = required(character_id, "character_id")
        async with self.rt.db.session(read_only=True) as s:
            await repo.get_character(s, cid, owner_id=owner)
            return compute_state(await repo.scene_tags(s, cid))

    async def attribute_history(
        self, character_id: str, owner: str | None, category: str, name: str
    ) -> list[Interval]:
        cid = required(character_id, "character_id")
        if category not in TAG_CATEGORIES:
            raise InvalidInput(f"category must be one of {', '.join(TAG_CATEGORIES)}, not {category!r}")
        name = required(name.strip(), "name")
        return (await self.current_state(cid, owner)).history(category, name)

    async def context(
        self, character_id: str, owner: str | None, user_prompt: str, style_overrides: list[str]
    ) -> Any:
        """The scene's context (see `context.load_context`), with the rows it read."""
        rt = self.rt
        cid = required(character_id, "character_id")
        await self.settled(cid)
        async with rt.db.session(read_only=True) as s:
            ctx = await load_context(
                s,
                cid,
                user_prompt,
                vectors=rt.vectors,
                embedder=rt.embedder,
                config=rt.config,
                llm=rt.llm,
                cache=rt.cache,
                overrides=StyleOverrides.from_strings(style_overrides),
                owner_id=owner,
                states=rt.states,
                scene_prompts=rt.scene_prompts,
            )
        fold = rt.states.due(cid)
        if fold is not None:  # after answering: the next replica to see the character starts from here
            rt.soon(self._store_fold(cid, fold))
        return ctx

    async def _store_fold(self, character_id: str, fold: dict[str, Any]) -> None:
        try:
            async with self.rt.db.session() as s:
                await repo.store_fold(s, character_id, fold)
        except Exception as e:  # noqa: BLE001 - a cache: the story is replayed without it
            log.warning("storing the story fold of %s failed: %s", character_id, e)

    async def consolidate(self, character_id: str) -> Summary:
        rt = self.rt
        cid = required(character_id, "character_id")
        await self.settled(cid)
        async with rt.db.session() as s:
            await repo.get_character(s, cid)
            res = await maybe_consolidate(s, cid, llm=rt.llm, config=rt.config, force=True)
            if res is None:  # nothing new since the last summary: that summary stands
                last = await repo.latest_summary(s, cid)
                if last is None:
                    raise PreconditionFailed(f"character {cid} has no episodes to consolidate")
                return Summary(last.text, self.summary_engine(last.engine), last.up_to_scene)
        await self._published(cid, res)
        return Summary(res.text, self.summary_engine(res.engine), res.up_to_scene)


__all__ = ["History", "Recorded", "Story", "Summary"]
