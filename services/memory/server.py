"""gRPC surface of the memory service: proto <-> the memory core (repository, vectors, context, characters).

Start-up opens the database (versioned create_all), object storage, Qdrant, the text embedder, the LLM client,
NATS (events + the prompt cache's KV bucket; without NATS, no events and an in-memory cache) and the channel to
the identity service; the service reports SERVING only after that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError

from idlock import grpc_client, refs, subjects
from idlock.bus import EventBus
from idlock.db import Database
from idlock.errors import IdlockError, InvalidInput, NotFound, PreconditionFailed
from idlock.grpc_server import ServiceSpec, remaining_s
from idlock.launch import servicer_spec
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import (
    common_pb2,
    events_pb2,
)
from idlock.v1 import (
    identity_service_pb2 as id_pb,
)
from idlock.v1 import (
    identity_service_pb2_grpc as id_grpc,
)
from idlock.v1 import (
    memory_service_pb2 as pb,
)
from idlock.v1 import (
    memory_service_pb2_grpc as pb_grpc,
)
from services.memory import characters
from services.memory import repository as repo
from services.memory.cache import PromptCache, WriteBehindCache, cache_from_settings
from services.memory.clock import ModelClock
from services.memory.context import (
    ContextConfig,
    embed_episode_soon,
    engine_label,
    load_context,
    maybe_consolidate,
    record_scene,
)
from services.memory.llm import GroqLlm, LlmConfig
from services.memory.models import SCHEMA_VERSION, STATUS_NEEDS_MORE_REFS, STATUS_READY, TAG_CATEGORIES, Base
from services.memory.prompt import StyleOverrides
from services.memory.settings import MemorySettings
from services.memory.state import StateCache, compute_state
from services.memory.text_embed import TextEmbedder, get_text_embedder
from services.memory.vectors import MemoryVectors, point_id

SETTINGS = MemorySettings
log = logging.getLogger("idlock.memory")

STATUS = {
    STATUS_READY: pb.CHARACTER_STATUS_READY,
    STATUS_NEEDS_MORE_REFS: pb.CHARACTER_STATUS_NEEDS_MORE_REFS,
}
KIND = {"image": common_pb2.MEDIA_KIND_IMAGE, "video": common_pb2.MEDIA_KIND_VIDEO}
SHEET_LISTS = {
    "distinctive_marks": "distinctive_marks",
    "semantic_tags": "semantic_tags",
    "must_keep_traits": "must_keep",
}

# ---- proto <-> domain ------------------------------------------------------------------------------------------


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def _now() -> timestamp_pb2.Timestamp:
    return _ts(datetime.now(UTC))  # type: ignore[return-value]


def sheet_from_pb(sheet: pb.CharacterSheet) -> dict[str, Any]:
    d: dict[str, Any] = {"face_description": sheet.face_description, "hair": sheet.hair, "eyes": sheet.eyes}
    for field, key in SHEET_LISTS.items():
        d[key] = list(getattr(sheet, field))
    return characters.clean_sheet(d)


def sheet_pb(d: Mapping[str, Any]) -> pb.CharacterSheet:
    def lst(*keys: str) -> list[str]:
        for k in keys:
            v = d.get(k)
            if v:
                return [v] if isinstance(v, str) else [str(x) for x in v]
        return []

    return pb.CharacterSheet(
        face_description=str(d.get("face_description", "") or ""),
        hair=str(d.get("hair", "") or ""),
        eyes=str(d.get("eyes", "") or ""),
        distinctive_marks=lst("distinctive_marks"),
        semantic_tags=lst("semantic_tags"),
        must_keep_traits=lst("must_keep", "must_keep_traits"),
    )


def image_ref_pb(d: Mapping[str, Any] | str) -> common_pb2.ImageRef:
    if isinstance(d, str):
        return common_pb2.ImageRef(uri=d)
    return common_pb2.ImageRef(
        uri=d.get("uri", ""),
        sha256=d.get("sha256", ""),
        mime=d.get("mime", ""),
        width=int(d.get("width") or 0),
        height=int(d.get("height") or 0),
    )


def character_pb(ch: Any, identity: Sequence[float] | None = None) -> pb.Character:
    out = pb.Character(
        id=ch.id,
        owner_id=ch.owner_id,
        name=ch.name,
        description=ch.description or "",
        sheet=sheet_pb(ch.sheet or {}),
        consent_given=bool(ch.consent_given),
        consent_at=_ts(ch.consent_at),
        status=STATUS.get(ch.status, pb.CHARACTER_STATUS_UNSPECIFIED),
        status_reasons=list(ch.status_reasons or []),
        encoder=ch.encoder or "",
        semantic_vector_id=point_id("semantic", ch.id) if ch.encoder else "",
        reference_images=[image_ref_pb(r) for r in ch.ref_image_refs or []],
        memory_version=ch.memory_version,
        episode_count=ch.episode_count,
        created_at=_ts(ch.created_at),
        updated_at=_ts(ch.updated_at),
    )
    if identity is not None:
        out.identity.CopyFrom(common_pb2.IdentityVector(encoder=ch.encoder, values=list(identity)))
    return out


def verdict(calibrated: float) -> int:
    """The seeds' thresholds on the calibrated score (refine < 0.70 <= borderline < 0.75 <= pass <= 0.85 < golden)."""
    if calibrated < 0.70:
        return common_pb2.VERDICT_REFINE
    if calibrated < 0.75:
        return common_pb2.VERDICT_BORDERLINE
    if calibrated <= 0.85:
        return common_pb2.VERDICT_PASS
    return common_pb2.VERDICT_GOLDEN


def episode_pb(ep: Any, encoder: str = "") -> pb.Episode:
    out = pb.Episode(
        id=ep.id,
        character_id=ep.character_id,
        job_id=ep.job_id,
        scene_index=ep.scene_index,
        kind=KIND.get(ep.kind, common_pb2.MEDIA_KIND_UNSPECIFIED),
        prompt=ep.prompt or "",
        tags=common_pb2.StateTags(**characters.tags_dict(ep.tags_added or {})),
        removed=common_pb2.StateTags(**characters.tags_dict(ep.tags_removed or {})),
        description=ep.description or "",
        duration_s=ep.duration_s or 0.0,
        dialogue=ep.dialogue or "",
        state_source=ep.state_source or "",
        created_at=_ts(ep.created_at),
    )
    for r in ep.result_refs or []:
        if isinstance(r, Mapping) and r.get("kind") == "video":
            out.video.CopyFrom(
                common_pb2.VideoRef(
                    uri=r.get("uri", ""),
                    sha256=r.get("sha256", ""),
                    mime=r.get("mime", ""),
                    width=int(r.get("width") or 0),
                    height=int(r.get("height") or 0),
                    duration_s=float(r.get("duration_s") or 0),
                    fps=float(r.get("fps") or 0),
                )
            )
        elif not out.image.uri:
            out.image.CopyFrom(image_ref_pb(r))
    if ep.face_embedding:
        out.face_embedding.CopyFrom(
            common_pb2.IdentityVector(encoder=encoder, values=list(ep.face_embedding))
        )
    if ep.idr_calibrated is not None or ep.idr_raw is not None:
        cal = ep.idr_calibrated or 0.0
        out.idr.CopyFrom(
            common_pb2.IdrScore(raw=ep.idr_raw or 0.0, calibrated=cal, verdict=verdict(cal), encoder=encoder)
        )
    for f in ep.frame_idrs or []:
        if isinstance(f, Mapping):
            cal = float(f.get("calibrated") or 0)
            out.frame_idrs.append(
                common_pb2.FrameIdr(
                    timestamp_s=float(f.get("timestamp_s") or 0),
                    face_found=bool(f.get("face_found")),
                    score=common_pb2.IdrScore(
                        raw=float(f.get("raw") or 0), calibrated=cal, verdict=verdict(cal), encoder=encoder
                    ),
                )
            )
    return out


def episode_kwargs(e: pb.Episode) -> dict[str, Any]:
    """RecordEpisode's proto episode -> keyword arguments of `record_scene` (scene_index is assigned, not read)."""
    result_refs: list[dict[str, Any]] = []
    if e.image.uri:
        result_refs.append(
            {"kind": "image", **json_format.MessageToDict(e.image, preserving_proto_field_name=True)}
        )
    if e.video.uri:
        result_refs.append(
            {"kind": "video", **json_format.MessageToDict(e.video, preserving_proto_field_name=True)}
        )
    kind = (
        "video"
        if e.kind == common_pb2.MEDIA_KIND_VIDEO
        or (e.kind == common_pb2.MEDIA_KIND_UNSPECIFIED and e.video.uri and not e.image.uri)
        else "image"
    )
    kw: dict[str, Any] = {
        "kind": kind,
        "prompt": e.prompt,
        "result_refs": result_refs,
        "tags_added": {c: list(getattr(e.tags, c)) for c in TAG_CATEGORIES},
        "tags_removed": {c: list(getattr(e.removed, c)) for c in TAG_CATEGORIES},
        "description": e.description,
        "duration_s": e.duration_s or None,
        "dialogue": e.dialogue,
        "frame_idrs": [
            {
                "timestamp_s": f.timestamp_s,
                "raw": f.score.raw,
                "calibrated": f.score.calibrated,
                "face_found": f.face_found,
            }
            for f in e.frame_idrs
        ],
        "state_source": e.state_source,
    }
    if e.HasField("idr"):
        kw["idr_raw"] = e.idr.raw
        kw["idr_calibrated"] = e.idr.calibrated
    return kw


def state_items_pb(intervals: Sequence[Any]) -> list[pb.StateItem]:
    return [
        pb.StateItem(
            category=iv.category, name=iv.name, since_scene=iv.start_scene, until_scene=iv.end_scene or 0
        )
        for iv in intervals
    ]


# ---- the servicer ----------------------------------------------------------------------------------------------


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self.config = ContextConfig.from_settings(settings)
        self.llm = GroqLlm(LlmConfig.from_settings(settings))
        self.db: Database | None = None
        self.store: ObjectStore | None = None
        self.vectors: MemoryVectors | None = None
        self.embedder: TextEmbedder | None = None
        self.cache: PromptCache | None = None
        #: story states kept between context builds (episodes only append; a deleted character is forgotten)
        self.states = StateCache()
        #: consolidations running after RecordEpisode answered, by character (one at a time per character)
        self._consolidating: dict[str, asyncio.Task[None]] = {}
        #: events and cache writes still on their way after the call that made them answered
        self._background: set[asyncio.Future[None]] = set()
        self.bus: EventBus | None = None
        self.identity_addr = ""
        self._identity_channel: grpc.aio.Channel | None = None
        self.identity: id_grpc.IdentityServiceStub | None = None

    # ---- lifecycle ----
    async def startup(self) -> None:
        s = self.settings
        data_dir = PathsSettings().data_dir
        # the text model loads (seconds) while the stores are opened
        embedder = asyncio.ensure_future(asyncio.to_thread(get_text_embedder, s.text_embedder))
        self.db = Database.open(
            DatabaseSettings(), service="memory", data_dir=data_dir, schema=s.db_schema or None
        )
        await self.db.migrate(Base.metadata, version=SCHEMA_VERSION)
        self.store = await open_store(StorageSettings(), data_dir)
        self.vectors = MemoryVectors.from_settings(s, data_dir)
        self.bus = await self._connect_bus()
        self.cache = WriteBehindCache(
            await cache_from_settings(s, self.bus.js if self.bus is not None else None), self._soon
        )
        mesh = MeshSettings()
        self.identity_addr = mesh.identity_addr
        self._identity_channel = grpc_client.channel(
            mesh.identity_addr, default_timeout_s=s.identity_timeout_s
        )
        self.identity = id_grpc.IdentityServiceStub(self._identity_channel)
        self.embedder = await embedder

    async def _connect_bus(self) -> EventBus | None:
        nats = NatsSettings()
        try:
            bus = await asyncio.wait_for(EventBus.connect(nats, name="memory"), self.settings.nats_wait_s)
            await bus.ensure_streams()
            return bus
        except (TimeoutError, IdlockError, OSError) as e:
            log.warning(
                "NATS at %s unreachable (%s): events are not published and the prompt cache is in memory",
                nats.url,
                e,
            )
            return None

    async def shutdown(self) -> None:
        if self._consolidating:  # let started summaries be written (a cut one is redone by the next episode)
            await asyncio.wait(
                list(self._consolidating.values()), timeout=self.settings.shutdown_consolidation_s
            )
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        for close in (
            self._identity_channel.close if self._identity_channel else None,
            self.bus.close if self.bus else None,
            self.llm.aclose,
            self.vectors.close if self.vectors else None,
            self.store.close if self.store else None,
            self.db.close if self.db else None,
        ):
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.exception("memory shutdown step failed")

    # ---- helpers ----
    def _consolidate_soon(self, cid: str) -> None:
        """Write the due summary after RecordEpisode has answered: the job need not wait for the summariser (an
        LLM call, seconds). Reads of the character's story wait for it (`_settled`). A consolidation that fails
        or is cut off is redone when the next episode is recorded (it is still due then)."""
        previous = self._consolidating.get(cid)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                async with self.db.session() as s:
                    summary = await maybe_consolidate(
                        s, cid, llm=self.llm, config=self.config, states=self.states
                    )
                if summary is not None:
                    await self._published_summary(cid, summary)
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

    def _soon(self, work: Awaitable[None]) -> None:
        """Work the caller need not wait for (an event, a cache write); shutdown lets it finish."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settled(self, cid: str) -> None:
        """Wait for a consolidation of this character that is still being written."""
        task = self._consolidating.get(cid)
        if task is not None:
            await asyncio.wait([task])

    async def _publish(self, subject: str, message: Message, msg_id: str) -> None:
        """Events are facts about committed state; a failed publish is logged, not turned into an RPC error."""
        if self.bus is None:
            return
        try:
            await self.bus.publish(subject, message, msg_id=msg_id)
        except Exception as e:  # noqa: BLE001
            log.warning("publishing %s (%s) failed: %s", subject, msg_id, e)

    async def _semantic(self, ch: Any) -> list[float] | None:
        if not (ch.encoder and ch.identity_dim):
            return None
        v = await self.vectors.get_semantic(ch.id, ch.encoder, ch.identity_dim)
        return None if v is None else v.tolist()

    @staticmethod
    def _owner(owner_id: str) -> str | None:
        return owner_id or None

    @staticmethod
    def _need(value: str, name: str) -> str:
        if not value:
            raise InvalidInput(f"{name} is required")
        return value

    # ---- characters ----
    async def CreateCharacter(
        self, request: pb.CreateCharacterRequest, context
    ) -> pb.CreateCharacterResponse:
        # consent is checked before any input is read
        if not request.consent_given:
            raise PreconditionFailed(
                "consent is required to create a character from reference images (consent_given is false); "
                "nothing was stored"
            )
        n = len(request.reference_images)
        if not 1 <= n <= self.settings.max_references:
            raise InvalidInput(
                f"between 1 and {self.settings.max_references} reference images are needed (got {n})"
            )
        images = [
            await refs.image_bytes(self.store, img, f"reference image {i}")
            for i, img in enumerate(request.reference_images)
        ]

        async def encode() -> characters.EncodedReferences:
            req = id_pb.EncodeReferencesRequest(images=list(request.reference_images))
            try:
                res = await self.identity.EncodeReferences(
                    req, timeout=remaining_s(self.settings.identity_timeout_s)
                )
            except grpc.aio.AioRpcError as e:
                # the identity service's verdict (e.g. no face in reference image 1) reaches the caller as is
                transient = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                where = f"identity service at {self.identity_addr}" if transient else ""
                raise grpc_client.peer_error(e, where) from None
            return characters.EncodedReferences(
                encoder=res.identity.encoder,
                vector=list(res.identity.values),
                views=[list(v.values) for v in res.views],
                quality=[
                    json_format.MessageToDict(
                        q, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                    )
                    for q in res.quality
                ],
                inconsistent_indices=list(res.inconsistent_indices),
            )

        made = await characters.create_character(
            self.db.session,
            self.store,
            self.vectors,
            owner_id=request.owner_id,
            name=request.name,
            consent_given=request.consent_given,
            images=images,
            encode=encode,
            description=request.description,
            sheet=sheet_from_pb(request.sheet),
            request_id=request.request_id,
            max_references=self.settings.max_references,
        )
        ch = made.character
        await self._publish(
            subjects.CHARACTER_CREATED,
            events_pb2.CharacterCreated(
                character_id=ch.id, owner_id=ch.owner_id, status=ch.status, at=_ts(ch.created_at)
            ),
            msg_id=f"character.created.{ch.id}",
        )
        quality = [
            json_format.ParseDict(q, id_pb.ReferenceQuality(), ignore_unknown_fields=True)
            for q in made.quality
        ]
        return pb.CreateCharacterResponse(
            character=character_pb(ch, await self._semantic(ch)), reference_quality=quality
        )

    async def GetCharacter(self, request: pb.GetCharacterRequest, context) -> pb.GetCharacterResponse:
        cid = self._need(request.character_id, "character_id")
        async with self.db.session(read_only=True) as s:
            ch = await repo.get_character(s, cid, owner_id=self._owner(request.owner_id))
        return pb.GetCharacterResponse(character=character_pb(ch, await self._semantic(ch)))

    async def ListCharacters(self, request: pb.ListCharactersRequest, context) -> pb.ListCharactersResponse:
        owner = self._need(request.owner_id, "owner_id")
        async with self.db.session(read_only=True) as s:
            rows, token = await repo.list_characters(
                s, owner, page_size=request.page.page_size, page_token=request.page.page_token
            )
        # the identity vector is left out of list pages (GetCharacter has it)
        return pb.ListCharactersResponse(characters=[character_pb(c) for c in rows], next_page_token=token)

    async def UpdateCharacterSheet(
        self, request: pb.UpdateCharacterSheetRequest, context
    ) -> pb.UpdateCharacterSheetResponse:
        cid = self._need(request.character_id, "character_id")
        async with self.db.session() as s:
            ch = await repo.update_sheet(
                s,
                cid,
                sheet_from_pb(request.sheet),
                name=request.name or None,
                description=request.description or None,
                owner_id=self._owner(request.owner_id),
            )
        return pb.UpdateCharacterSheetResponse(character=character_pb(ch, await self._semantic(ch)))

    async def DeleteCharacter(
        self, request: pb.DeleteCharacterRequest, context
    ) -> pb.DeleteCharacterResponse:
        cid = self._need(request.character_id, "character_id")
        await self._settled(cid)
        if self._background:  # a cache write still on its way must not land after the erasure
            await asyncio.wait(list(self._background))
        async with self.db.session() as s:
            ch = await repo.get_character(s, cid, owner_id=self._owner(request.owner_id))
            owner = ch.owner_id
        self.states.forget(cid)
        reports = await characters.erase_character(
            self.db.session, self.store, self.vectors, self.cache, cid, owner_id=self._owner(request.owner_id)
        )
        if all(r.ok for r in reports):
            await self._publish(
                subjects.CHARACTER_DELETED,
                events_pb2.CharacterDeleted(character_id=cid, owner_id=owner, at=_now()),
                msg_id=f"character.deleted.{cid}",
            )
        return pb.DeleteCharacterResponse(
            report=[
                pb.StoreErasure(store=r.store, removed=r.removed, ok=r.ok, error=r.error) for r in reports
            ]
        )

    # ---- episodes ----
    async def RecordEpisode(self, request: pb.RecordEpisodeRequest, context) -> pb.RecordEpisodeResponse:
        e = request.episode
        cid = self._need(e.character_id, "episode.character_id")
        job_id = self._need(e.job_id, "episode.job_id")
        kw = episode_kwargs(e)
        clock = ModelClock()
        # the text model runs while the character is read and the episode written
        embedding = embed_episode_soon(self.embedder if self.vectors else None, kw, clock)
        try:
            async with self.db.session() as s:
                ch = await repo.get_character(s, cid)
                face = characters.check_face_embedding(
                    ch, e.face_embedding.encoder, list(e.face_embedding.values)
                )
                encoder = ch.encoder  # read now: recording may roll back (a replay), which expires the row
                res = await record_scene(
                    s,
                    cid,
                    job_id=job_id,
                    vectors=self.vectors,
                    embedder=self.embedder,
                    llm=self.llm,
                    config=self.config,
                    character=ch,
                    face_embedding=face,
                    consolidate=False,
                    clock=clock,
                    embedding=embedding,
                    **kw,
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
            at=_ts(ep.created_at),
        )
        self._soon(self._publish(subjects.EPISODE_RECORDED, recorded, f"episode.recorded.{cid}.{ep.job_id}"))
        if res.consolidation_due:
            self._consolidate_soon(cid)
        return pb.RecordEpisodeResponse(
            episode=episode_pb(ep, encoder),
            created=res.created,
            consolidated=res.consolidation_due,
            model_seconds=res.model_seconds,
        )

    async def _published_summary(self, cid: str, summary: Any) -> None:
        await self._publish(
            subjects.MEMORY_CONSOLIDATED,
            events_pb2.MemoryConsolidated(
                character_id=cid,
                up_to_scene=summary.up_to_scene,
                engine=self._summary_engine(summary.engine),
                at=_now(),
            ),
            msg_id=f"memory.consolidated.{cid}.{summary.up_to_scene}",
        )

    def _summary_engine(self, engine: str) -> str:
        return f"llm:{self.llm.config.model}" if engine == "llm" else "digest"

    async def ListHistory(self, request: pb.ListHistoryRequest, context) -> pb.ListHistoryResponse:
        cid = self._need(request.character_id, "character_id")
        await self._settled(cid)
        async with self.db.session(read_only=True) as s:
            ch = await repo.get_character(s, cid, owner_id=self._owner(request.owner_id))
            rows, token = await repo.list_history(
                s, cid, page_size=request.page.page_size, page_token=request.page.page_token
            )
            summary = await repo.latest_summary(s, cid)
        return pb.ListHistoryResponse(
            episodes=[episode_pb(ep, ch.encoder) for ep in rows],
            next_page_token=token,
            story_summary=summary.text if summary is not None else "",
        )

    async def GetCurrentState(
        self, request: pb.GetCurrentStateRequest, context
    ) -> pb.GetCurrentStateResponse:
        cid = self._need(request.character_id, "character_id")
        async with self.db.session(read_only=True) as s:
            await repo.get_character(s, cid, owner_id=self._owner(request.owner_id))
            state = compute_state(await repo.scene_tags(s, cid))
        return pb.GetCurrentStateResponse(
            items=[
                pb.StateItem(category=i.category, name=i.name, since_scene=i.since_scene) for i in state.items
            ]
        )

    async def GetAttributeHistory(
        self, request: pb.GetAttributeHistoryRequest, context
    ) -> pb.GetAttributeHistoryResponse:
        cid = self._need(request.character_id, "character_id")
        if request.category not in TAG_CATEGORIES:
            raise InvalidInput(
                f"category must be one of {', '.join(TAG_CATEGORIES)}, not {request.category!r}"
            )
        name = self._need(request.name.strip(), "name")
        async with self.db.session(read_only=True) as s:
            await repo.get_character(s, cid, owner_id=self._owner(request.owner_id))
            state = compute_state(await repo.scene_tags(s, cid))
        return pb.GetAttributeHistoryResponse(intervals=state_items_pb(state.history(request.category, name)))

    async def BuildContext(self, request: pb.BuildContextRequest, context) -> pb.BuildContextResponse:
        cid = self._need(request.character_id, "character_id")
        await self._settled(cid)
        async with self.db.session(read_only=True) as s:
            ctx = await load_context(
                s,
                cid,
                request.user_prompt,
                vectors=self.vectors,
                embedder=self.embedder,
                config=self.config,
                llm=self.llm,
                cache=self.cache,
                overrides=StyleOverrides.from_strings(list(request.style_overrides)),
                owner_id=self._owner(request.owner_id),
                states=self.states,
            )
        # load_context hands back the rows it read: the character and the recent + relevant episodes
        ch, full = ctx.character, ctx.episodes
        enc = ch.encoder

        def eps(views: Sequence[Any]) -> list[pb.Episode]:
            return [episode_pb(full[v.scene_index], enc) for v in views if v.scene_index in full]

        out = pb.BuildContextResponse(
            recent=eps(ctx.recent),
            relevant=eps(ctx.relevant),
            current_state=[
                pb.StateItem(category=i.category, name=i.name, since_scene=i.since_scene)
                for i in ctx.state.items
            ],
            story_summary=ctx.summary,
            prompt=pb.ComposedPrompt(
                prompt=ctx.prompt.prompt,
                negative_prompt=ctx.prompt.negative_prompt,
                engine=engine_label(ctx.prompt, self.llm),
                fallback_reason=ctx.prompt.fallback_reason or "",
            ),
            cache_hit=ctx.cache_hit,
            memory_version=ctx.memory_version,
            character=character_pb(ch, None if ctx.semantic_vector is None else ctx.semantic_vector.tolist()),
            model_seconds=ctx.model_seconds,
        )
        if ctx.semantic_vector is not None:
            out.semantic.CopyFrom(common_pb2.IdentityVector(encoder=enc, values=ctx.semantic_vector.tolist()))
        if ctx.merged_vector is not None:
            out.merged.CopyFrom(common_pb2.IdentityVector(encoder=enc, values=ctx.merged_vector.tolist()))
        return out

    async def Consolidate(self, request: pb.ConsolidateRequest, context) -> pb.ConsolidateResponse:
        cid = self._need(request.character_id, "character_id")
        await self._settled(cid)
        async with self.db.session() as s:
            await repo.get_character(s, cid)
            res = await maybe_consolidate(s, cid, llm=self.llm, config=self.config, force=True)
            if res is None:  # nothing new since the last summary: that summary stands
                last = await repo.latest_summary(s, cid)
                if last is None:
                    raise PreconditionFailed(f"character {cid} has no episodes to consolidate")
                return pb.ConsolidateResponse(
                    summary=last.text, engine=self._summary_engine(last.engine), up_to_scene=last.up_to_scene
                )
        await self._published_summary(cid, res)
        return pb.ConsolidateResponse(
            summary=res.text, engine=self._summary_engine(res.engine), up_to_scene=res.up_to_scene
        )


def build(settings: MemorySettings) -> ServiceSpec:
    return servicer_spec("memory", pb, pb_grpc, "MemoryService", MemoryServicer(settings))
