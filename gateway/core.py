"""What the REST endpoints do, without HTTP: the gateway's state (database, object store, channels into the mesh,
rate limiters) and one method per use case. Routers only parse requests and call these.

Every call into the mesh passes the caller's user id as `owner_id`, and every returned resource is checked
against it again: another user's resource is answered exactly like a missing one (404).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from gateway import auth, objects, pose, uploads, user_uploads, views
from gateway.errors import ApiError, bad_request, from_grpc, not_found
from gateway.events import GatewayEvents
from gateway.health import mesh_health
from gateway.models import RateBucket
from gateway.ratelimit import limiters, take
from gateway.reports import Reports
from gateway.settings import GatewaySettings
from gateway.sse import job_stream
from gateway.users import Principal, UserStore
from idlock import grpc_client, mesh_auth
from idlock.db import Database
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import common_pb2, memory_service_pb2, memory_service_pb2_grpc, trainer_service_pb2_grpc
from idlock.v1 import orchestrator_service_pb2 as orch_pb2
from idlock.v1 import orchestrator_service_pb2_grpc as orch_grpc

log = logging.getLogger("idlock.gateway")

FEEDBACK = {"up": orch_pb2.FEEDBACK_RATING_UP, "down": orch_pb2.FEEDBACK_RATING_DOWN}


@dataclass
class Caller:
    """Who is asking, from where: passed to every use case for ownership, limits and the audit log."""

    principal: Principal
    client_ip: str = ""
    request_id: str = ""
    #: the address the request came to (download links point there unless IDLOCK_GATEWAY_PUBLIC_URL is set)
    base_url: str = ""

    @property
    def user_id(self) -> str:
        return self.principal.user_id


@dataclass
class GenerateInput:
    character_id: str
    prompt: str
    pose_image_url: str | None = None
    style_overrides: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    #: a scene of several characters: (character id, role), the first is character_id; empty for one
    cast: list[tuple[str, str]] = field(default_factory=list)


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        mesh: MeshSettings,
        *,
        data_dir: Path,
        database: DatabaseSettings | None = None,
        storage: StorageSettings | None = None,
        nats: NatsSettings | None = None,
        resolver: pose.Resolver = pose.system_resolver,
        pose_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.mesh = mesh
        self.data_dir = Path(data_dir)
        self.database_settings = database or DatabaseSettings()
        self.storage_settings = storage or StorageSettings()
        self.nats_settings = nats or NatsSettings()
        self.resolver = resolver
        self.pose_transport = pose_transport
        self.trusted_proxies = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies]
        self._use_limiters(limiters(settings))  # the api_, generate_, auth_ and write_ip_limiter
        self.db: Database | None = None
        self.users: UserStore | None = None
        self.store: ObjectStore | None = None
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.memory: memory_service_pb2_grpc.MemoryServiceStub | None = None
        self.orchestrator: orch_grpc.OrchestratorServiceStub | None = None
        self.trainer: trainer_service_pb2_grpc.TrainerServiceStub | None = None
        self.downloads: objects.Downloads | None = None
        self.reports: Reports | None = None
        self.events = GatewayEvents(self.nats_settings)
        self._sweeping: asyncio.Task | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        secret = auth.resolve_secret(self.settings, self.data_dir)
        mesh_auth.configure("gateway", self.data_dir)  # the gateway's calls into the mesh carry its token
        self.db = Database.open(self.database_settings, service="gateway", data_dir=self.data_dir)
        self.users = UserStore(self.db, self.settings, secret)
        await self.users.migrate()
        self.reports = Reports(self.db)
        if self.settings.rate_limit_store == "database":  # every replica takes from the same buckets
            self._use_limiters(limiters(self.settings, self.db, RateBucket.__table__))
        self.store = await open_store(self.storage_settings, self.data_dir)
        url_key = self.settings.object_url_key
        signer = objects.ObjectSigner(
            url_key.get_secret_value().encode() if url_key else objects.derive_key(secret),
            self.settings.object_url_ttl_s,
        )
        ownership = objects.Ownership(self._owns_character, self._owns_job)
        self.downloads = objects.Downloads(
            self.store,
            signer,
            ownership,
            self.reports.frozen_object,
            presigned=self.settings.s3_presigned_links,
        )
        for name in ("memory", "orchestrator", "trainer"):
            self.channels[name] = grpc_client.channel(
                getattr(self.mesh, f"{name}_addr"),
                default_timeout_s=self.settings.rpc_timeout_s,
                max_message_mb=self.settings.grpc_max_message_mb,
            )
        self.memory = memory_service_pb2_grpc.MemoryServiceStub(self.channels["memory"])
        self.orchestrator = orch_grpc.OrchestratorServiceStub(self.channels["orchestrator"])
        self.trainer = trainer_service_pb2_grpc.TrainerServiceStub(self.channels["trainer"])
        s = self.settings
        self._sweeping = asyncio.create_task(
            user_uploads.sweep_forever(self.store, s.upload_ttl_s, s.upload_sweep_interval_s),
            name="upload-sweep",
        )

    def _use_limiters(self, by_name: dict[str, Any]) -> None:
        for name, limiter in by_name.items():
            setattr(self, f"{name}_limiter", limiter)

    async def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
        await self.events.close()
        for ch in self.channels.values():
            await ch.close()
        self.channels.clear()
        if self.store is not None:
            await self.store.close()
        if self.db is not None:
            await self.db.close()

    # ---- helpers -------------------------------------------------------------------------------------------

    async def audit(
        self, caller: Caller, action: str, resource_type: str, resource_id: str, **details: Any
    ) -> None:
        """An audit row for what `caller` did, from where."""
        await self.users.audit(
            caller.user_id,
            action,
            resource_type,
            resource_id,
            client_ip=caller.client_ip,
            request_id=caller.request_id,
            **details,
        )

    async def _rpc(self, service: str, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        try:
            return await method(request, timeout=self.settings.rpc_timeout_s)
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, service) from err

    def links(self, caller: Caller) -> views.UrlFor:
        """Download URLs of our store's objects for this caller (`objects.Downloads.links`)."""
        return self.downloads.links(caller.user_id, self.settings.public_url or caller.base_url)

    async def _owns_character(self, character_id: str, user_id: str) -> bool:
        return await self._finds(self._character, character_id, user_id)

    async def _owns_job(self, job_id: str, user_id: str) -> bool:
        return await self._finds(self._job, job_id, user_id)

    @staticmethod
    async def _finds(find: Callable[[Caller, str], Awaitable[Any]], ident: str, user_id: str) -> bool:
        """Whether `find` finds the resource for this user (another user's is not found)."""
        try:
            await find(Caller(Principal(user_id, "", False, "")), ident)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    # ---- characters ----------------------------------------------------------------------------------------

    async def _character(self, caller: Caller, character_id: str) -> memory_service_pb2.Character:
        if not character_id or len(character_id) > 100:
            raise not_found("character", character_id or "''")
        try:
            reply = await self._rpc(
                "memory",
                self.memory.GetCharacter,
                memory_service_pb2.GetCharacterRequest(character_id=character_id, owner_id=caller.user_id),
            )
        except ApiError as err:
            if err.status == 404:
                raise not_found("character", character_id) from err
            raise
        if not reply.HasField("character") or reply.character.owner_id != caller.user_id:
            raise not_found("character", character_id)
        return reply.character

    async def create_character(
        self,
        caller: Caller,
        *,
        name: str,
        description: str,
        consent: bool,
        files: list[uploads.Upload],
        sheet: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        s = self.settings
        if not consent:
            raise bad_request(
                "consent: you must confirm that you have the right to use these images of this person "
                "(send consent=true)"
            )
        uploads.check_count(len(files), most=s.max_reference_images)
        names = [uploads.label(i, f.filename) for i, f in enumerate(files)]
        uploads.check_sizes(
            [(n, len(f.data)) for n, f in zip(names, files, strict=True)],
            per_file=s.max_upload_file_bytes,
            total=s.max_upload_total_bytes,
        )
        clean = [
            uploads.clean_image(f.data, name=n, max_pixels=s.max_image_pixels, jpeg_quality=s.jpeg_quality)
            for n, f in zip(names, files, strict=True)
        ]
        uploads.check_forwardable(clean, s.grpc_max_message_mb * 1024 * 1024 - 64 * 1024)
        request = memory_service_pb2.CreateCharacterRequest(
            owner_id=caller.user_id,
            name=name,
            description=description,
            consent_given=True,
            sheet=memory_service_pb2.CharacterSheet(**(sheet or {})),
            reference_images=[common_pb2.ImageInput(data=c.data) for c in clean],
            request_id=f"{caller.user_id}:{idempotency_key}" if idempotency_key else uuid.uuid4().hex,
        )
        reply = await self._rpc("memory", self.memory.CreateCharacter, request)
        c = reply.character
        await self.audit(
            caller,
            "character_create",
            "character",
            c.id,
            images=len(clean),
            name=c.name,
        )
        return {
            "character_id": c.id,
            "semantic_vector_id": c.semantic_vector_id,
            "status": views.character_status(c.status),
            "status_reasons": list(c.status_reasons),
            "reference_quality": [
                {
                    "index": q.index,
                    "accepted": q.accepted,
                    "faces_found": q.faces_found,
                    "issues": list(q.issues),
                }
                for q in reply.reference_quality
            ],
        }

    async def get_character(self, caller: Caller, character_id: str) -> dict[str, Any]:
        return await views.character(await self._character(caller, character_id), self.links(caller))

    async def update_character(
        self,
        caller: Caller,
        character_id: str,
        *,
        name: str | None,
        description: str | None,
        sheet: dict[str, Any],
    ) -> dict[str, Any]:
        """Change the name, description and sheet fields given (the rest stay); memory bumps the character's
        version, so no cached prompt of the old sheet is used again."""
        current = await self._character(caller, character_id)
        if name is None and description is None and not sheet:  # nothing to change: the character as it is
            return await views.character(current, self.links(caller))
        merged = views.merge_sheet(current.sheet, sheet)
        reply = await self._rpc(
            "memory",
            self.memory.UpdateCharacterSheet,
            memory_service_pb2.UpdateCharacterSheetRequest(
                character_id=character_id,
                owner_id=caller.user_id,
                sheet=merged,
                name=name or "",
                description=description or "",
                replace_description=description is not None,
            ),
        )
        await self.audit(
            caller,
            "character_update",
            "character",
            character_id,
            fields=[k for k, v in (("name", name), ("description", description)) if v is not None]
            + [f"sheet.{k}" for k in sheet],
        )
        return await views.character(reply.character, self.links(caller))

    async def list_characters(self, caller: Caller, page_size: int, page_token: str) -> dict[str, Any]:
        reply = await self._rpc(
            "memory",
            self.memory.ListCharacters,
            memory_service_pb2.ListCharactersRequest(
                owner_id=caller.user_id,
                page=common_pb2.PageRequest(page_size=page_size, page_token=page_token),
            ),
        )
        items = [views.character_summary(c) for c in reply.characters if c.owner_id == caller.user_id]
        return {"items": items, "next_page_token": reply.next_page_token or None}

    async def delete_character(self, caller: Caller, character_id: str) -> dict[str, Any]:
        await self._character(caller, character_id)
        return await self.erase_character(caller, caller.user_id, character_id)

    async def erase_character(self, actor: Caller, owner_id: str, character_id: str) -> dict[str, Any]:
        """Erase the owner's character everywhere (memory, then the services told by its event); the audit log
        keeps who and what, and forgets the character's name."""
        reply = await self._rpc(
            "memory",
            self.memory.DeleteCharacter,
            memory_service_pb2.DeleteCharacterRequest(character_id=character_id, owner_id=owner_id),
        )
        report = [
            {"store": r.store, "removed": r.removed, "ok": r.ok, "error": r.error or None}
            for r in reply.report
        ]
        await self.users.forget_content("character", character_id)
        await self.audit(
            actor, "character_delete", "character", character_id, report=report, owner_id=owner_id
        )
        return {"character_id": character_id, "deleted": all(r["ok"] for r in report), "report": report}

    async def history(
        self, caller: Caller, character_id: str, page_size: int, page_token: str
    ) -> dict[str, Any]:
        await self._character(caller, character_id)
        await self.reports.check(character_id)
        reply = await self._rpc(
            "memory",
            self.memory.ListHistory,
            memory_service_pb2.ListHistoryRequest(
                character_id=character_id,
                owner_id=caller.user_id,
                page=common_pb2.PageRequest(page_size=page_size, page_token=page_token),
            ),
        )
        url_for = self.links(caller)
        episodes = [
            await views.episode(e, url_for) for e in reply.episodes if e.character_id in ("", character_id)
        ]
        return {
            "character_id": character_id,
            "story_summary": reply.story_summary,
            "items": episodes,
            "next_page_token": reply.next_page_token or None,
        }

    # ---- pose references -----------------------------------------------------------------------------------

    async def _pose_uri(self, caller: Caller, url: str) -> tuple[str, str | None]:
        """(uri to pass on, key to delete when the submission does not go through)."""
        return await pose.resolve(
            url,
            user_id=caller.user_id,
            store=self.store,
            settings=self.settings,
            resolver=self.resolver,
            transport=self.pose_transport,
        )

    # ---- jobs ----------------------------------------------------------------------------------------------

    async def submit(
        self, caller: Caller, body: GenerateInput, idempotency_key: str | None
    ) -> dict[str, Any]:
        await take(self.generate_limiter, caller.user_id, "generation requests")
        for character_id in [c for c, _ in body.cast] or [body.character_id]:
            await self._character(caller, character_id)  # 404 for one that is not the caller's
            await self.reports.check(character_id)
        pose_uri, temp_key = ("", None)
        if body.pose_image_url:
            pose_uri, temp_key = await self._pose_uri(caller, body.pose_image_url)
        o = body.options
        request = orch_pb2.SubmitGenerationRequest(
            owner_id=caller.user_id,
            character_id=body.character_id,
            prompt=body.prompt,
            pose_image_uri=pose_uri,
            style_overrides=body.style_overrides,
            options=orch_pb2.GenerationOptions(**o),
            # without a client key, one per HTTP request still makes the channel's UNAVAILABLE retries safe
            idempotency_key=idempotency_key or f"auto:{uuid.uuid4().hex}",
            cast=[common_pb2.CastMember(character_id=c, role=role) for c, role in body.cast],
        )
        try:
            reply = await self._rpc("orchestrator", self.orchestrator.SubmitGeneration, request)
        except BaseException as err:
            if temp_key:
                await self._forget(temp_key)
            if isinstance(err, ApiError) and err.code == "prompt_refused":  # who tried, and which category
                await self.audit(
                    caller, "prompt_refused", "character", body.character_id, message=err.message
                )
            raise
        if temp_key and (not reply.created or reply.job.pose_image_uri != pose_uri):
            await self._forget(temp_key)  # an earlier submission with this key already holds its own copy
        job = reply.job
        if job.owner_id and job.owner_id != caller.user_id:  # never hand out another user's job
            raise ApiError(409, "already_exists", "this Idempotency-Key was already used")
        if reply.created:
            await self.audit(
                caller,
                "job_submit",
                "job",
                job.id,
                character_id=body.character_id,
                idempotency_key=idempotency_key or "",
            )
        return {"job_id": job.id, "status": views.job_status(job.status), "created": reply.created}

    async def _forget(self, key: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.delete(key)

    async def _job(self, caller: Caller, job_id: str) -> orch_pb2.Job:
        if not job_id or len(job_id) > 100:
            raise not_found("job", job_id or "''")
        try:
            reply = await self._rpc(
                "orchestrator",
                self.orchestrator.GetJob,
                orch_pb2.GetJobRequest(job_id=job_id, owner_id=caller.user_id),
            )
        except ApiError as err:
            if err.status == 404:
                raise not_found("job", job_id) from err
            raise
        if not reply.HasField("job") or reply.job.owner_id != caller.user_id:
            raise not_found("job", job_id)
        return reply.job

    async def get_job(self, caller: Caller, job_id: str) -> dict[str, Any]:
        job = await self._job(caller, job_id)
        await self.reports.check(job.character_id)  # its result's links are the character's files
        return await views.job(job, self.links(caller))

    async def cancel_job(self, caller: Caller, job_id: str) -> dict[str, Any]:
        await self._job(caller, job_id)
        reply = await self._rpc(
            "orchestrator",
            self.orchestrator.CancelJob,
            orch_pb2.CancelJobRequest(job_id=job_id, owner_id=caller.user_id),
        )
        await self.audit(
            caller,
            "job_cancel",
            "job",
            job_id,
        )
        return await views.job(reply.job, self.links(caller))

    async def feedback(self, caller: Caller, job_id: str, rating: str, comment: str) -> dict[str, Any]:
        await self._job(caller, job_id)
        reply = await self._rpc(
            "orchestrator",
            self.orchestrator.RecordFeedback,
            orch_pb2.RecordFeedbackRequest(
                job_id=job_id, owner_id=caller.user_id, rating=FEEDBACK[rating], comment=comment
            ),
        )
        return {"job_id": job_id, "rating": rating, "recorded": reply.recorded}

    async def job_events(self, caller: Caller, job_id: str) -> AsyncIterator[str]:
        """Check ownership now (so a 404 is a normal JSON answer), then stream server-sent events."""
        first = await self._job(caller, job_id)
        return job_stream(self, caller, job_id, first)

    # ---- admin ---------------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await mesh_health(self)
