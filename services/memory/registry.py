"""The character registry's use cases: create (consent first, references encoded by the identity service), read,
list, update the sheet, erase from every store. Plain Python over the runtime; the servicer maps protos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from idlock import mesh_auth, refs, subjects
from idlock.errors import InvalidInput, NotFound, PreconditionFailed, required
from idlock.v1 import common_pb2, events_pb2
from services.memory import characters
from services.memory import repository as repo
from services.memory.episodes import Story
from services.memory.erasure import Erasures
from services.memory.runtime import MemoryRuntime
from services.memory.views import ts

#: internal services that act for the system, not for one user: only they may leave the owner empty
SYSTEM_CALLERS = frozenset({"orchestrator", "refiner", "trainer", "render", "identity", "memory"})


def acting_owner(owner_id: str) -> str:
    """The owner a call acts for. Empty means every owner only for an internal service acting for the system
    (the refiner reading a character's references); for the gateway, acting for a user, it is an error."""
    if owner_id:
        return owner_id
    who = mesh_auth.caller()
    if who not in SYSTEM_CALLERS:
        raise InvalidInput(
            f"owner_id is required: an empty owner is never 'any owner' (caller {who or 'unknown'!r} acts for a user)"
        )
    return ""


def owner_filter(owner_id: str) -> str | None:
    """The owner a read is limited to; None (no limit) only for a system caller (`acting_owner`)."""
    return acting_owner(owner_id) or None


@dataclass(frozen=True)
class CharacterView:
    """A character row and its semantic identity vector (None when not asked for or not encoded)."""

    character: Any
    identity: list[float] | None = None


class CharacterRegistry:
    def __init__(self, rt: MemoryRuntime, story: Story) -> None:
        self.rt = rt
        self.story = story
        self.erasures = Erasures(rt)

    async def _semantic(self, ch: Any) -> list[float] | None:
        if not (ch.encoder and ch.identity_dim):
            return None
        v = await self.rt.vectors.get_semantic(ch.id, ch.encoder, ch.identity_dim)
        return None if v is None else v.tolist()

    async def create(
        self,
        *,
        owner_id: str,
        name: str,
        consent_given: bool,
        reference_images: Sequence[common_pb2.ImageInput],
        description: str,
        sheet: dict[str, Any],
        request_id: str,
    ) -> tuple[CharacterView, list[dict[str, Any]]]:
        rt, s = self.rt, self.rt.settings
        # consent is checked before any input is read
        if not consent_given:
            raise PreconditionFailed(
                "consent is required to create a character from reference images (consent_given is false); "
                "nothing was stored"
            )
        n = len(reference_images)
        if not 1 <= n <= s.max_references:
            raise InvalidInput(f"between 1 and {s.max_references} reference images are needed (got {n})")
        images = [
            await refs.image_bytes(rt.store, img, f"reference image {i}")
            for i, img in enumerate(reference_images)
        ]
        made = await characters.create_character(
            rt.db.session,
            rt.store,
            rt.vectors,
            owner_id=owner_id,
            name=name,
            consent_given=consent_given,
            images=images,
            encode=lambda: rt.identity.encode_references(reference_images),
            description=description,
            sheet=sheet,
            request_id=request_id,
            max_references=s.max_references,
        )
        ch = made.character
        await rt.publish(
            subjects.CHARACTER_CREATED,
            events_pb2.CharacterCreated(
                character_id=ch.id, owner_id=ch.owner_id, status=ch.status, at=ts(ch.created_at)
            ),
            msg_id=f"character.created.{ch.id}",
        )
        return CharacterView(ch, await self._semantic(ch)), list(made.quality)

    async def get(self, character_id: str, owner_id: str) -> CharacterView:
        cid = required(character_id, "character_id")
        async with self.rt.db.session(read_only=True) as s:
            ch = await repo.get_character(s, cid, owner_id=owner_filter(owner_id))
        return CharacterView(ch, await self._semantic(ch))

    async def list(self, owner_id: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        owner = required(owner_id, "owner_id")
        async with self.rt.db.session(read_only=True) as s:
            return await repo.list_characters(s, owner, page_size=page_size, page_token=page_token)

    async def update_sheet(
        self, character_id: str, owner_id: str, sheet: dict[str, Any], *, name: str, description: str | None
    ) -> CharacterView:
        """Replace the sheet; a non-empty name, and a description that is not None, replace theirs too."""
        cid = required(character_id, "character_id")
        async with self.rt.db.session() as s:
            ch = await repo.update_sheet(
                s,
                cid,
                sheet,
                name=name or None,
                description=description,
                owner_id=owner_filter(owner_id),
            )
        return CharacterView(ch, await self._semantic(ch))

    async def erase(self, character_id: str, owner_id: str) -> list[characters.StoreReport]:
        """Erase the character from every store and tell the other services (`erasure.py`)."""
        rt = self.rt
        cid = required(character_id, "character_id")
        await self.story.settled(cid)
        await rt.drain()  # a cache write still on its way must not land after the erasure
        try:
            async with rt.db.session() as s:
                owner = (await repo.get_character(s, cid, owner_id=owner_filter(owner_id))).owner_id
        except NotFound:
            # its rows may be gone while its erasure is unfinished (the event could not go out): finish it
            owner = await self.erasures.unfinished_owner(cid, owner_filter(owner_id))
            if owner is None:
                raise
            return await self.erasures.run(cid, owner, resume=True)
        await self.erasures.begin(cid, owner)
        return await self.erasures.run(cid, owner)


__all__ = ["CharacterRegistry", "CharacterView", "owner_filter"]
