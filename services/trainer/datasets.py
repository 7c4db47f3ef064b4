"""Dataset building (seed 2.2): a character's golden images, face-checked, deduplicated and captioned, stored as
a versioned dataset (`lora_datasets/<character>/v<n>/`). The builder itself is `dataset.py`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from idlock.errors import InvalidInput, NotFound, PreconditionFailed
from services.trainer.dataset import BuildConfig, Candidate, FaceFinder, build_dataset, identity_face_finder
from services.trainer.runtime import TrainerRuntime
from services.trainer.views import tag_list


@dataclass(frozen=True)
class BuiltDataset:
    uri: str
    version: int
    stats: dict[str, Any]
    kept: int


class Datasets:
    def __init__(self, rt: TrainerRuntime, face_finder: FaceFinder | None | str = "auto") -> None:
        self.rt = rt
        self._face_finder = face_finder

    async def _finder(self) -> FaceFinder | None:
        if self._face_finder == "auto":
            if not self.rt.settings.dataset_face_check:
                self._face_finder = None
            else:
                from idlock.faces.engine import get_engine  # loads the face models: only when asked

                engine = await self.rt.run(get_engine, self.rt.faces, pool=self.rt.light)
                self._face_finder = identity_face_finder(engine)
        return self._face_finder  # type: ignore[return-value]

    async def build(self, character_id: str, resolution: int) -> BuiltDataset:
        rt, s = self.rt, self.rt.settings
        resolution = resolution or s.dataset_resolution
        if not 32 <= resolution <= 2048:
            raise InvalidInput(f"resolution must be between 32 and 2048, got {resolution}")
        goldens = await rt.repo.goldens(character_id)
        if not goldens:
            raise PreconditionFailed(
                f"character {character_id} has no golden images yet",
                details={"character_id": character_id, "reason": "no_golden_images"},
            )
        prompts = await rt.memory.prompts(character_id, {g.job_id for g in goldens if not g.prompt})
        candidates = []
        for g in goldens:
            try:
                data: bytes | None = await rt.store.get(g.image.get("uri", ""))
            except (NotFound, InvalidInput):
                data = None
            candidates.append(
                Candidate(
                    golden_id=g.id,
                    image=data,
                    job_id=g.job_id,
                    prompt=g.prompt or prompts.get(g.job_id, ""),
                    scene_index=g.scene_index,
                    idr=g.idr_calibrated,
                    tags=tag_list(g.tags or {}),
                    boosted=g.boosted,
                    attributes={k: list(v or []) for k, v in (g.tags or {}).items() if isinstance(v, list)},
                )
            )
        version = await rt.repo.next_dataset_version(character_id)
        config = BuildConfig(
            resolution=resolution,
            token=s.token,
            min_face_px=s.min_face_px,
            min_blur=s.min_blur,
            dedup_distance=s.dedup_distance,
            face_crops=s.face_crops,
            max_attribute_share=s.dataset_max_attribute_share,
            balance_min_images=s.dataset_balance_min_images,
            boost_weight=s.dataset_boost_weight,
        )
        finder = await self._finder()
        built = await rt.run(
            build_dataset,
            candidates,
            config,
            finder,
            character_id=character_id,
            version=version,
            pool=rt.light,
        )
        prefix = f"lora_datasets/{character_id}/v{version}/"
        uri = ""
        for rel, data in sorted(built.files.items()):
            mime = (
                "application/json"
                if rel.endswith(".json")
                else ("text/plain" if rel.endswith(".txt") else "image/png")
            )
            stored = await rt.store.put(prefix + rel, data, mime)
            if rel == "metadata.json":
                uri = stored.uri
        await rt.repo.add_dataset(
            character_id=character_id,
            version=version,
            uri=uri,
            prefix=prefix,
            resolution=resolution,
            stats=built.metadata["stats"],
        )
        return BuiltDataset(uri=uri, version=version, stats=built.metadata["stats"], kept=built.kept)

    async def load(self, uri: str) -> tuple[list[bytes], list[str], dict]:
        store = self.rt.store
        meta = json.loads(await store.get(uri))
        base_key = store.key_from_uri(uri).rsplit("/", 1)[0]
        images, captions = [], []
        for item in meta.get("items", []):
            image = await store.get(f"{base_key}/{item['image']}")
            text = (await store.get(f"{base_key}/{item['caption']}")).decode()
            # an image rated up is sampled as often as its weight says
            for _ in range(max(1, int(item.get("weight", 1)))):
                images.append(image)
                captions.append(text)
        return images, captions, meta


__all__ = ["BuiltDataset", "Datasets"]
