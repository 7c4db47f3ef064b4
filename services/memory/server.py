"""gRPC surface of the memory service: each RPC maps its request to one use case and the result to proto.

Where things live: `runtime.py` (what the process opens and closes), `registry.py` (characters: create, read,
update, erase), `episodes.py` (the story: record, history, state, context, consolidation), `clients.py` (the
identity service), `views.py` (rows <-> protos). The core is `repository.py`, `vectors.py`, `context.py`,
`state.py`, `prompt.py`, `consolidation.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from idlock.grpc_server import ServiceSpec
from idlock.launch import servicer_spec
from idlock.v1 import common_pb2
from idlock.v1 import identity_service_pb2 as id_pb
from idlock.v1 import memory_service_pb2 as pb
from idlock.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory.episodes import Story
from services.memory.registry import CharacterRegistry, CharacterView, acting_owner, owner_filter
from services.memory.runtime import MemoryRuntime
from services.memory.scene import scene_context
from services.memory.settings import MemorySettings
from services.memory.views import (
    character_pb,
    engine_label,
    episode_kwargs,
    episode_pb,
    sheet_from_pb,
    state_items_pb,
)

SETTINGS = MemorySettings


def _character(view: CharacterView) -> pb.Character:
    return character_pb(view.character, view.identity)


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self.rt = MemoryRuntime(settings)
        self.story = Story(self.rt)
        self.registry = CharacterRegistry(self.rt, self.story)

    async def startup(self) -> None:
        await self.rt.open()
        self.rt.soon(self.registry.erasures.resume())  # erasures a crash left unfinished

    async def shutdown(self) -> None:
        await self.story.close()
        await self.rt.close()

    # ---- characters ----
    async def CreateCharacter(
        self, request: pb.CreateCharacterRequest, context
    ) -> pb.CreateCharacterResponse:
        view, quality = await self.registry.create(
            owner_id=request.owner_id,
            name=request.name,
            consent_given=request.consent_given,
            reference_images=list(request.reference_images),
            description=request.description,
            sheet=sheet_from_pb(request.sheet),
            request_id=request.request_id,
        )
        return pb.CreateCharacterResponse(
            character=_character(view),
            reference_quality=[
                json_format.ParseDict(q, id_pb.ReferenceQuality(), ignore_unknown_fields=True)
                for q in quality
            ],
        )

    async def GetCharacter(self, request: pb.GetCharacterRequest, context) -> pb.GetCharacterResponse:
        view = await self.registry.get(request.character_id, acting_owner(request.owner_id))
        return pb.GetCharacterResponse(character=_character(view))

    async def ListCharacters(self, request: pb.ListCharactersRequest, context) -> pb.ListCharactersResponse:
        rows, token = await self.registry.list(
            acting_owner(request.owner_id), request.page.page_size, request.page.page_token
        )
        # the identity vector is left out of list pages (GetCharacter has it)
        return pb.ListCharactersResponse(characters=[character_pb(c) for c in rows], next_page_token=token)

    async def UpdateCharacterSheet(
        self, request: pb.UpdateCharacterSheetRequest, context
    ) -> pb.UpdateCharacterSheetResponse:
        view = await self.registry.update_sheet(
            request.character_id,
            acting_owner(request.owner_id),
            sheet_from_pb(request.sheet),
            name=request.name,
            description=request.description if request.replace_description else (request.description or None),
        )
        return pb.UpdateCharacterSheetResponse(character=_character(view))

    async def DeleteCharacter(
        self, request: pb.DeleteCharacterRequest, context
    ) -> pb.DeleteCharacterResponse:
        reports = await self.registry.erase(request.character_id, acting_owner(request.owner_id))
        return pb.DeleteCharacterResponse(
            report=[
                pb.StoreErasure(store=r.store, removed=r.removed, ok=r.ok, error=r.error) for r in reports
            ]
        )

    # ---- the story ----
    async def RecordEpisode(self, request: pb.RecordEpisodeRequest, context) -> pb.RecordEpisodeResponse:
        e = request.episode
        res = await self.story.record(e.character_id, e.job_id, episode_kwargs(e), e.face_embedding)
        return pb.RecordEpisodeResponse(
            episode=episode_pb(res.episode, res.encoder),
            created=res.created,
            consolidated=res.consolidation_due,
            model_seconds=res.model_seconds,
        )

    async def ListHistory(self, request: pb.ListHistoryRequest, context) -> pb.ListHistoryResponse:
        h = await self.story.history(
            request.character_id,
            owner_filter(request.owner_id),
            request.page.page_size,
            request.page.page_token,
        )
        return pb.ListHistoryResponse(
            episodes=[episode_pb(ep, h.encoder, with_context=True) for ep in h.episodes],
            next_page_token=h.next_page_token,
            story_summary=h.summary,
        )

    async def GetCurrentState(
        self, request: pb.GetCurrentStateRequest, context
    ) -> pb.GetCurrentStateResponse:
        state = await self.story.current_state(request.character_id, owner_filter(request.owner_id))
        return pb.GetCurrentStateResponse(
            items=[
                pb.StateItem(category=i.category, name=i.name, since_scene=i.since_scene) for i in state.items
            ]
        )

    async def GetAttributeHistory(
        self, request: pb.GetAttributeHistoryRequest, context
    ) -> pb.GetAttributeHistoryResponse:
        intervals = await self.story.attribute_history(
            request.character_id, owner_filter(request.owner_id), request.category, request.name
        )
        return pb.GetAttributeHistoryResponse(intervals=state_items_pb(intervals))

    async def BuildContext(self, request: pb.BuildContextRequest, context) -> pb.BuildContextResponse:
        ctx = await self.story.context(
            request.character_id,
            owner_filter(request.owner_id),
            request.user_prompt,
            list(request.style_overrides),
        )
        return self._context_pb(ctx)

    async def BuildSceneContext(
        self, request: pb.BuildSceneContextRequest, context
    ) -> pb.BuildSceneContextResponse:
        scene = await scene_context(
            self.story,
            [(c.character_id, c.role) for c in request.cast],
            owner_filter(request.owner_id),
            request.user_prompt,
            list(request.style_overrides),
        )
        members = [self._context_pb(ctx) for ctx in scene.members]
        return pb.BuildSceneContextResponse(
            prompt=pb.ComposedPrompt(
                prompt=scene.prompt.prompt,
                negative_prompt=scene.prompt.negative_prompt,
                engine=scene.prompt.engine,
                fallback_reason=scene.fallback_reason,
            ),
            members=members,
            model_seconds=sum(m.model_seconds for m in members),
        )

    def _context_pb(self, ctx: Any) -> pb.BuildContextResponse:
        # the context hands back the rows it read: the character and the recent + relevant episodes
        ch, full = ctx.character, ctx.episodes
        enc = ch.encoder

        def eps(views: Sequence[Any]) -> list[pb.Episode]:
            return [episode_pb(full[v.scene_index], enc) for v in views if v.scene_index in full]

        semantic = None if ctx.semantic_vector is None else ctx.semantic_vector.tolist()
        out = pb.BuildContextResponse(
            recent=eps(ctx.recent),
            relevant=eps(ctx.relevant),
            current_state=[
                pb.StateItem(category=i.category, name=i.name, since_scene=i.since_scene)
                for i in ctx.state.items
            ],
            recently_ended=state_items_pb(ctx.recently_ended),
            story_summary=ctx.summary,
            prompt=pb.ComposedPrompt(
                prompt=ctx.prompt.prompt,
                negative_prompt=ctx.prompt.negative_prompt,
                engine=engine_label(ctx.prompt, self.rt.llm),
                fallback_reason=ctx.prompt.fallback_reason or "",
            ),
            cache_hit=ctx.cache_hit,
            memory_version=ctx.memory_version,
            character=character_pb(ch, semantic),
            model_seconds=ctx.model_seconds,
        )
        if semantic is not None:
            out.semantic.CopyFrom(common_pb2.IdentityVector(encoder=enc, values=semantic))
        if ctx.merged_vector is not None:
            out.merged.CopyFrom(common_pb2.IdentityVector(encoder=enc, values=ctx.merged_vector.tolist()))
        return out

    async def Consolidate(self, request: pb.ConsolidateRequest, context) -> pb.ConsolidateResponse:
        summary = await self.story.consolidate(request.character_id)
        return pb.ConsolidateResponse(
            summary=summary.text, engine=summary.engine, up_to_scene=summary.up_to_scene
        )


def build(settings: MemorySettings) -> ServiceSpec:
    return servicer_spec("memory", pb, pb_grpc, "MemoryService", MemoryServicer(settings))
