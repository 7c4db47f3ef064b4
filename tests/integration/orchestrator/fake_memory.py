"""A small in-memory MemoryService on a real gRPC server (port 0): GetCharacter, BuildContext, RecordEpisode.

Used by the orchestrator flow tests while the real memory servicer (issue #4) is being written. It keeps the
contract's behaviour that the orchestrator relies on: NOT_FOUND for an unknown character or one of another owner,
the character's identity and references, and RecordEpisode idempotent on the job id.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import grpc

from idlock.v1 import common_pb2
from idlock.v1 import memory_service_pb2 as mpb
from idlock.v1 import memory_service_pb2_grpc as mpb_grpc


class FakeMemory(mpb_grpc.MemoryServiceServicer):
    def __init__(self) -> None:
        self.characters: dict[str, mpb.Character] = {}
        self.episodes: dict[tuple[str, str], mpb.Episode] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        #: the user prompts BuildContext was asked with, and how long it takes to answer
        self.context_prompts: list[str] = []
        self.context_delay_s = 0.0
        self.record_requests: list[mpb.Episode] = []
        #: the next this-many RecordEpisode calls answer UNAVAILABLE (a memory outage)
        self.fail_record = 0

    def add_character(
        self,
        character_id: str,
        owner_id: str,
        identity: common_pb2.IdentityVector,
        references: list[common_pb2.ImageRef],
        *,
        consent: bool = True,
        status: int = mpb.CHARACTER_STATUS_READY,
        reasons: tuple[str, ...] = (),
        name: str = "Arya",
    ) -> mpb.Character:
        c = mpb.Character(
            id=character_id,
            owner_id=owner_id,
            name=name,
            consent_given=consent,
            status=status,
            status_reasons=list(reasons),
            encoder=identity.encoder,
            reference_images=references,
        )
        c.identity.CopyFrom(identity)
        self.characters[character_id] = c
        return c

    async def _get(self, character_id: str, owner_id: str, context) -> mpb.Character:
        c = self.characters.get(character_id)
        if c is None or (owner_id and c.owner_id != owner_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"character {character_id} not found")
        return c

    async def GetCharacter(self, request, context):
        self.calls["GetCharacter"] += 1
        return mpb.GetCharacterResponse(
            character=await self._get(request.character_id, request.owner_id, context)
        )

    async def BuildContext(self, request, context):
        self.calls["BuildContext"] += 1
        self.context_prompts.append(request.user_prompt)
        await asyncio.sleep(self.context_delay_s)
        c = await self._get(request.character_id, request.owner_id, context)
        style = " ".join(request.style_overrides)
        prompt = mpb.ComposedPrompt(
            prompt=f"[CHARACTER_SHEET] Name: {c.name} [USER_SCENE] {request.user_prompt} {style}".strip(),
            negative_prompt="blurry, deformed face, extra limbs",
            engine="template",
        )
        return mpb.BuildContextResponse(
            semantic=c.identity, prompt=prompt, memory_version=c.memory_version, character=c
        )

    async def RecordEpisode(self, request, context):
        self.calls["RecordEpisode"] += 1
        ep = request.episode
        self.record_requests.append(ep)
        if self.fail_record > 0:
            self.fail_record -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "memory is restarting")
        c = await self._get(ep.character_id, "", context)
        key = (ep.character_id, ep.job_id)
        if key in self.episodes:
            return mpb.RecordEpisodeResponse(episode=self.episodes[key], created=False)
        stored = mpb.Episode()
        stored.CopyFrom(ep)
        c.episode_count += 1
        c.memory_version += 1
        stored.id = f"ep_{len(self.episodes) + 1}"
        stored.scene_index = c.episode_count
        self.episodes[key] = stored
        return mpb.RecordEpisodeResponse(
            episode=stored, created=True, consolidated=stored.scene_index % 5 == 0
        )


@contextlib.asynccontextmanager
async def fake_memory_server() -> AsyncIterator[tuple[FakeMemory, str]]:
    fake = FakeMemory()
    server = grpc.aio.server()
    mpb_grpc.add_MemoryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
