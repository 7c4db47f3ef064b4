"""The trainer's repository: golden images, feedback, datasets, training runs and the LoRA registry
(seed task 2.2: get_active / register / activate / archive / rollback / list).

Invariant: at most one `active` LoRA per character. Activation archives the previous active one in the same
transaction (and a partial unique index backs it up in the database).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from idlock.db import Database
from idlock.errors import InvalidInput, NotFound, PreconditionFailed
from services.trainer.models import (
    ACTIVE,
    ARCHIVED,
    REJECTED,
    RUN_QUEUED,
    TRAINING,
    Dataset,
    Feedback,
    GoldenImage,
    IdrObservation,
    LearningDecisionRow,
    LoraModel,
    TrainingRun,
    utcnow,
)

DOWN = "down"
UP = "up"


def golden_id(job_id: str) -> str:
    return "gold_" + hashlib.sha256(job_id.encode()).hexdigest()[:20]


def job_of(job_key: str) -> str:
    """The job of a golden image's job key: a scene of several characters keys each one's as "<job>/<k>"."""
    return job_key.split("/", 1)[0]


def lora_id(character_id: str, version: int) -> str:
    return f"lora_{character_id}_v{version}"


class TrainerRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- golden images ----------------------------------------------------------------------------------------

    async def add_golden(self, **fields: Any) -> tuple[GoldenImage | None, bool]:
        """Insert a golden image for a job (idempotent per job). Returns (row, created); (None, False) when the
        owner already rated the job down."""
        job_id = fields["job_id"]
        async with self.db.session() as s:
            fb = await s.get(Feedback, job_of(job_id))  # a scene of several: the job's rating is each one's
            if fb is not None and fb.rating == DOWN:
                return None, False
            existing = (
                await s.execute(select(GoldenImage).where(GoldenImage.job_id == job_id))
            ).scalar_one_or_none()
            if existing is not None:
                return existing, False
            row = GoldenImage(
                id=golden_id(job_id), boosted=bool(fb is not None and fb.rating == UP), **fields
            )
            s.add(row)
        return row, True

    async def record_feedback(self, job_id: str, character_id: str, rating: str) -> int:
        """Remember the rating; a down rating removes the job's golden image. Returns golden rows removed."""
        async with self.db.session() as s:
            fb = await s.get(Feedback, job_id)
            if fb is None:
                s.add(Feedback(job_id=job_id, character_id=character_id, rating=rating, at=utcnow()))
            else:
                fb.rating, fb.at = rating, utcnow()
            of_job = or_(GoldenImage.job_id == job_id, GoldenImage.job_id.startswith(f"{job_id}/"))
            if rating == DOWN:
                res = await s.execute(delete(GoldenImage).where(of_job))
                return int(res.rowcount or 0)
            await s.execute(update(GoldenImage).where(of_job).values(boosted=True))
            return 0

    async def goldens(
        self, character_id: str, *, limit: int | None = None, after: str = ""
    ) -> list[GoldenImage]:
        q = select(GoldenImage).where(GoldenImage.character_id == character_id)
        if after:
            q = q.where(GoldenImage.id > after)
        q = q.order_by(GoldenImage.id)
        if limit:
            q = q.limit(limit)
        async with self.db.session() as s:
            return list((await s.execute(q)).scalars())

    async def count_goldens(self, character_id: str) -> int:
        async with self.db.session() as s:
            q = select(func.count()).select_from(GoldenImage).where(GoldenImage.character_id == character_id)
            return int((await s.execute(q)).scalar_one())

    # --- datasets ---------------------------------------------------------------------------------------------

    async def next_dataset_version(self, character_id: str) -> int:
        async with self.db.session() as s:
            q = select(func.max(Dataset.version)).where(Dataset.character_id == character_id)
            return int((await s.execute(q)).scalar_one() or 0) + 1

    async def add_dataset(self, **fields: Any) -> Dataset:
        row = Dataset(id=f"ds_{fields['character_id']}_v{fields['version']}", **fields)
        async with self.db.session() as s:
            s.add(row)
        return row

    async def latest_dataset(self, character_id: str) -> Dataset | None:
        async with self.db.session() as s:
            q = (
                select(Dataset)
                .where(Dataset.character_id == character_id)
                .order_by(Dataset.version.desc())
                .limit(1)
            )
            return (await s.execute(q)).scalar_one_or_none()

    async def dataset_by_uri(self, uri: str) -> Dataset | None:
        async with self.db.session() as s:
            q = select(Dataset).where((Dataset.uri == uri) | (Dataset.prefix == uri))
            return (await s.execute(q)).scalars().first()

    # --- training runs ----------------------------------------------------------------------------------------

    async def create_run(
        self, run_id: str, character_id: str, dataset_uri: str, params: dict
    ) -> tuple[TrainingRun, bool]:
        async with self.db.session() as s:
            existing = await s.get(TrainingRun, run_id)
            if existing is not None:
                return existing, False
            row = TrainingRun(
                id=run_id,
                character_id=character_id,
                dataset_uri=dataset_uri,
                state=RUN_QUEUED,
                total_steps=int(params.get("steps", 0)),
                params=params,
            )
            s.add(row)
        return row, True

    async def get_run(self, run_id: str) -> TrainingRun:
        async with self.db.session() as s:
            row = await s.get(TrainingRun, run_id)
        if row is None:
            raise NotFound(f"training run {run_id} not found")
        return row

    async def run_ids(self, character_id: str) -> list[str]:
        async with self.db.session() as s:
            q = select(TrainingRun.id).where(TrainingRun.character_id == character_id)
            return list((await s.execute(q)).scalars())

    async def update_run(self, run_id: str, **values: Any) -> None:
        values["updated_at"] = utcnow()
        async with self.db.session() as s:
            await s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values))

    # --- LoRA registry ----------------------------------------------------------------------------------------

    async def register_lora(self, character_id: str, **fields: Any) -> LoraModel:
        """A new version `lora_<character>_v<k>` (status training unless given)."""
        async with self.db.session() as s:
            q = select(func.max(LoraModel.version)).where(LoraModel.character_id == character_id)
            version = int((await s.execute(q)).scalar_one() or 0) + 1
            row = LoraModel(
                id=lora_id(character_id, version),
                character_id=character_id,
                version=version,
                status=fields.pop("status", TRAINING),
                created_at=utcnow(),
                **fields,
            )
            s.add(row)
        return row

    async def get_lora(self, lora_id_: str) -> LoraModel:
        async with self.db.session() as s:
            row = await s.get(LoraModel, lora_id_)
        if row is None:
            raise NotFound(f"LoRA {lora_id_} not found")
        return row

    async def update_lora(self, lora_id_: str, **values: Any) -> LoraModel:
        async with self.db.session() as s:
            row = await s.get(LoraModel, lora_id_)
            if row is None:
                raise NotFound(f"LoRA {lora_id_} not found")
            if values.get("status") == ACTIVE:
                raise InvalidInput("use activate() to make a LoRA active")
            for k, v in values.items():
                setattr(row, k, v)
        return row

    async def get_active(self, character_id: str) -> LoraModel | None:
        async with self.db.session() as s:
            q = select(LoraModel).where(LoraModel.character_id == character_id, LoraModel.status == ACTIVE)
            return (await s.execute(q)).scalar_one_or_none()

    async def activate(self, lora_id_: str) -> tuple[LoraModel, LoraModel | None]:
        """Make the LoRA the character's active one; the previous active one is archived. Returns
        (activated, archived or None)."""
        async with self.db.session() as s:
            row = await s.get(LoraModel, lora_id_)
            if row is None:
                raise NotFound(f"LoRA {lora_id_} not found")
            if row.status == ACTIVE:
                return row, None
            if row.status == REJECTED or not row.file_uri:
                raise PreconditionFailed(
                    f"LoRA {lora_id_} cannot be activated: it is {row.status}"
                    + ("" if row.file_uri else " and has no weights file"),
                    details={"lora_id": lora_id_, "status": row.status},
                )
            if row.status == TRAINING:
                raise PreconditionFailed(f"LoRA {lora_id_} is still training", details={"lora_id": lora_id_})
            q = select(LoraModel).where(
                LoraModel.character_id == row.character_id, LoraModel.status == ACTIVE
            )
            previous = (await s.execute(q)).scalar_one_or_none()
            if previous is not None:
                previous.status = ARCHIVED
                await s.flush()  # the partial unique index sees the archive before the activation
            row.status = ACTIVE
            row.activated_at = utcnow()
        return row, previous

    async def archive(self, lora_id_: str) -> LoraModel:
        async with self.db.session() as s:
            row = await s.get(LoraModel, lora_id_)
            if row is None:
                raise NotFound(f"LoRA {lora_id_} not found")
            if row.status != REJECTED:
                row.status = ARCHIVED
        return row

    async def rollback(self, character_id: str) -> tuple[LoraModel | None, LoraModel | None]:
        """Archive the active LoRA and re-activate the one that was active before it (if any).
        Returns (now active or None, archived)."""
        async with self.db.session() as s:
            q = select(LoraModel).where(LoraModel.character_id == character_id, LoraModel.status == ACTIVE)
            current = (await s.execute(q)).scalar_one_or_none()
            if current is None:
                raise PreconditionFailed(
                    f"character {character_id} has no active LoRA to roll back",
                    details={"character_id": character_id},
                )
            q = (
                select(LoraModel)
                .where(
                    LoraModel.character_id == character_id,
                    LoraModel.id != current.id,
                    LoraModel.status == ARCHIVED,
                    LoraModel.activated_at.is_not(None),
                    LoraModel.file_uri != "",
                )
                .order_by(LoraModel.activated_at.desc())
                .limit(1)
            )
            previous = (await s.execute(q)).scalar_one_or_none()
            current.status = ARCHIVED
            await s.flush()
            if previous is not None:
                previous.status = ACTIVE
                previous.activated_at = utcnow()
        return previous, current

    async def list_loras(self, character_id: str) -> list[LoraModel]:
        async with self.db.session() as s:
            q = select(LoraModel).where(LoraModel.character_id == character_id).order_by(LoraModel.version)
            return list((await s.execute(q)).scalars())

    # --- erasure ----------------------------------------------------------------------------------------------

    async def delete_character(self, character_id: str) -> int:
        rows = 0
        async with self.db.session() as s:
            for model in (
                GoldenImage,
                Feedback,
                Dataset,
                TrainingRun,
                LoraModel,
                IdrObservation,
                LearningDecisionRow,
            ):
                res = await s.execute(delete(model).where(model.character_id == character_id))
                rows += int(res.rowcount or 0)
        return rows

    async def lora_uris(self, character_id: str) -> Sequence[str]:
        return [r.file_uri for r in await self.list_loras(character_id) if r.file_uri]
