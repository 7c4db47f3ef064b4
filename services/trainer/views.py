"""Trainer rows as protobuf messages, and the checks on ids that every entry point applies."""

from __future__ import annotations

import re

from google.protobuf import json_format

from idlock.errors import InvalidInput
from idlock.v1 import common_pb2
from idlock.v1 import trainer_service_pb2 as pb
from services.trainer import models as m

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STATUS = {
    m.TRAINING: pb.LORA_STATUS_TRAINING,
    m.VALIDATING: pb.LORA_STATUS_VALIDATING,
    m.ACTIVE: pb.LORA_STATUS_ACTIVE,
    m.ARCHIVED: pb.LORA_STATUS_ARCHIVED,
    m.REJECTED: pb.LORA_STATUS_REJECTED,
}
RUN_STATE = {
    m.RUN_QUEUED: pb.TRAINING_STATE_QUEUED,
    m.RUN_RUNNING: pb.TRAINING_STATE_RUNNING,
    m.RUN_SUCCEEDED: pb.TRAINING_STATE_SUCCEEDED,
    m.RUN_FAILED: pb.TRAINING_STATE_FAILED,
}


def check_character_id(character_id: str) -> str:
    if not character_id:
        raise InvalidInput("character_id is required")
    if not _ID.match(character_id):
        raise InvalidInput(f"character_id {character_id!r} must be letters, digits, '_' or '-' (at most 64)")
    return character_id


def _ts(target, t) -> None:
    t = m.aware(t)
    if t is not None:
        target.FromDatetime(t)


def lora_pb(row: m.LoraModel) -> pb.LoraModel:
    out = pb.LoraModel(
        id=row.id,
        character_id=row.character_id,
        version=row.version,
        file=common_pb2.LoraRef(lora_id=row.id, uri=row.file_uri, sha256=row.file_sha256),
        training_images=row.training_images,
        baseline_idr=row.baseline_idr,
        final_idr=row.final_idr,
        status=STATUS.get(row.status, pb.LORA_STATUS_UNSPECIFIED),
    )
    _ts(out.created_at, row.created_at)
    _ts(out.activated_at, row.activated_at)
    for k, v in (row.metrics or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.metrics[k] = float(v)
    return out


def run_pb(row: m.TrainingRun) -> pb.TrainingRun:
    return pb.TrainingRun(
        id=row.id,
        character_id=row.character_id,
        dataset_uri=row.dataset_uri,
        state=RUN_STATE.get(row.state, pb.TRAINING_STATE_UNSPECIFIED),
        step=row.step,
        total_steps=row.total_steps,
        loss=row.loss,
        eta_s=row.eta_s,
        lora_id=row.lora_id,
        error=row.error,
    )


def golden_pb(row: m.GoldenImage) -> pb.GoldenImage:
    out = pb.GoldenImage(
        id=row.id,
        character_id=row.character_id,
        job_id=row.job_id,
        image=json_format.ParseDict(row.image or {}, common_pb2.ImageRef(), ignore_unknown_fields=True),
        prompt=row.prompt,
        scene_index=row.scene_index,
        idr=common_pb2.IdrScore(raw=row.idr_raw, calibrated=row.idr_calibrated, encoder=row.encoder),
        tags=json_format.ParseDict(row.tags or {}, common_pb2.StateTags(), ignore_unknown_fields=True),
    )
    _ts(out.collected_at, row.collected_at)
    return out


def tag_list(tags: dict) -> list[str]:
    out: list[str] = []
    for key in ("setting", "clothing", "props", "mood", "injuries"):
        out.extend(str(t) for t in tags.get(key, []) or [])
    return out


__all__ = [
    "RUN_STATE",
    "STATUS",
    "check_character_id",
    "golden_pb",
    "lora_pb",
    "run_pb",
    "tag_list",
]
