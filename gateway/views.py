"""Protobuf messages from the mesh -> the JSON the REST API returns."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from idlock import story
from idlock.v1 import common_pb2, memory_service_pb2, orchestrator_service_pb2

UrlFor = Callable[[str], Awaitable[str | None]]
TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "needs_more_refs", "cancelled"})


def enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        name = enum.Name(value)
    except ValueError:
        return "unspecified"
    return name.removeprefix(prefix).lower()


def character_status(value: int) -> str:
    return enum_name(memory_service_pb2.CharacterStatus, value, "CHARACTER_STATUS_")


def job_status(value: int) -> str:
    return enum_name(common_pb2.JobStatus, value, "JOB_STATUS_")


def _ts(msg: Any, field: str) -> str | None:
    if not msg.HasField(field):
        return None
    return getattr(msg, field).ToJsonString()


async def image_ref(ref: common_pb2.ImageRef, url_for: UrlFor) -> dict[str, Any] | None:
    if not ref.uri:
        return None
    return {
        "uri": ref.uri,
        "url": await url_for(ref.uri),
        "sha256": ref.sha256,
        "mime": ref.mime,
        "width": ref.width,
        "height": ref.height,
    }


async def video_ref(ref: common_pb2.VideoRef, url_for: UrlFor) -> dict[str, Any] | None:
    if not ref.uri:
        return None
    return {
        "uri": ref.uri,
        "url": await url_for(ref.uri),
        "sha256": ref.sha256,
        "mime": ref.mime,
        "width": ref.width,
        "height": ref.height,
        "duration_s": ref.duration_s,
        "fps": ref.fps,
    }


def idr(score: common_pb2.IdrScore) -> dict[str, Any]:
    return {
        "raw": round(float(score.raw), 6),
        "calibrated": round(float(score.calibrated), 6),
        "verdict": enum_name(common_pb2.Verdict, score.verdict, "VERDICT_"),
        "encoder": score.encoder,
    }


def _state(items: Any, *, ended: bool) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in story.CATEGORIES}
    for i in items:
        item = {"name": i.name, "since_scene": i.since_scene}
        if ended:
            item["until_scene"] = i.until_scene
        out.setdefault(i.category, []).append(item)
    return out


def scene_context(c: memory_service_pb2.SceneContext) -> dict[str, Any]:
    """What a scene was made from: the composed prompt, its engine, the state in effect, what ended, the
    earlier scenes used."""
    return {
        "prompt": c.prompt,
        "negative_prompt": c.negative_prompt,
        "engine": c.engine or "template",
        "cached": c.cache_hit,
        "fallback_reason": c.fallback_reason or None,
        "memory_version": c.memory_version,
        "state": _state(c.state, ended=False),
        "ended": _state(c.ended, ended=True),
        "episodes": [
            {"episode_id": e.episode_id, "scene_index": e.scene_index, "reason": e.reason} for e in c.episodes
        ],
    }


def tags(t: common_pb2.StateTags) -> dict[str, list[str]]:
    return {k: list(getattr(t, k)) for k in story.CATEGORIES}


async def character(c: memory_service_pb2.Character, url_for: UrlFor) -> dict[str, Any]:
    return {
        "character_id": c.id,
        "name": c.name,
        "description": c.description,
        "status": character_status(c.status),
        "status_reasons": list(c.status_reasons),
        "consent_given": c.consent_given,
        "consent_at": _ts(c, "consent_at"),
        "semantic_vector_id": c.semantic_vector_id,
        "encoder": c.encoder,
        "sheet": MessageToDict(c.sheet, preserving_proto_field_name=True),
        "reference_images": [await image_ref(r, url_for) for r in c.reference_images],
        "memory_version": c.memory_version,
        "episode_count": c.episode_count,
        "created_at": _ts(c, "created_at"),
        "updated_at": _ts(c, "updated_at"),
    }


def merge_sheet(
    current: memory_service_pb2.CharacterSheet, changes: dict[str, Any]
) -> memory_service_pb2.CharacterSheet:
    """The stored sheet with the given fields replaced (a list replaces the whole list)."""
    merged = memory_service_pb2.CharacterSheet()
    merged.CopyFrom(current)
    for name, value in changes.items():
        if isinstance(value, list):
            getattr(merged, name)[:] = value
        else:
            setattr(merged, name, value)
    return merged


def character_summary(c: memory_service_pb2.Character) -> dict[str, Any]:
    return {
        "character_id": c.id,
        "name": c.name,
        "description": c.description,
        "status": character_status(c.status),
        "episode_count": c.episode_count,
        "created_at": _ts(c, "created_at"),
    }


def copy_fields(check: common_pb2.CopyCheck) -> dict[str, Any]:
    """copy_similarity and near_copy: null when nothing was compared (no reference face)."""
    if not check.checked:
        return {"copy_similarity": None, "near_copy": None}
    return {"copy_similarity": round(check.similarity, 4), "near_copy": check.near_copy}


def job_metrics(m: orchestrator_service_pb2.JobMetrics) -> dict[str, Any]:
    """The job's metrics as JSON, with its copy check flattened (copy_similarity, near_copy, copy_note)."""
    out = MessageToDict(m, preserving_proto_field_name=True)
    out.pop("copy", None)
    out.pop("cast", None)  # the job's `characters`
    # the LoRA that rendered it, by the version its owner sees in /characters/{id}/loras (null: none)
    version = re.search(r"_v(\d+)$", m.lora_id)
    lora = {"lora_id": m.lora_id or None, "lora_version": int(version.group(1)) if version else None}
    return out | copy_fields(m.copy) | {"copy_note": m.copy_note or None} | lora


async def episode(e: memory_service_pb2.Episode, url_for: UrlFor) -> dict[str, Any]:
    return {
        "episode_id": e.id,
        "job_id": e.job_id,
        "scene_index": e.scene_index,
        "kind": enum_name(common_pb2.MediaKind, e.kind, "MEDIA_KIND_"),
        "prompt": e.prompt,
        "description": e.description,
        "image": await image_ref(e.image, url_for),
        "video": await video_ref(e.video, url_for),
        "idr": idr(e.idr) if e.HasField("idr") else None,
        "tags": tags(e.tags),
        "removed": tags(e.removed),
        "state_source": e.state_source,
        "provider_label": e.provider_label or None,
        **copy_fields(e.copy),
        "duration_s": e.duration_s,
        "dialogue": e.dialogue,
        "frame_idrs": [
            {
                "timestamp_s": f.timestamp_s,
                "face_found": f.face_found,
                "idr": idr(f.score) if f.face_found else None,
            }
            for f in e.frame_idrs
        ],
        "context": scene_context(e.context) if e.HasField("context") else None,
        "with_characters": [{"character_id": c.character_id, "name": c.name, "role": c.role} for c in e.cast],
        "created_at": _ts(e, "created_at"),
    }


def cast_results(j: orchestrator_service_pb2.Job) -> list[dict[str, Any]]:
    """Each character of a scene of several: its results once the job has them, its name and role before."""
    done = {r.character_id: r for r in j.metrics.cast}
    out = []
    for c in j.cast:
        r = done.get(c.character_id)
        item: dict[str, Any] = {"character_id": c.character_id, "name": c.name, "role": c.role}
        item |= {
            "face_found": r.face_found if r else None,
            "idr_before": idr(r.idr_before) if r and r.HasField("idr_before") else None,
            "idr_after": idr(r.idr_after) if r and r.HasField("idr_after") else None,
            "refined": bool(r and r.refined),
            "note": (r.note or None) if r else None,
            "tags": tags(r.tags) if r else None,
            "removed": tags(r.removed) if r else None,
            "episode_id": (r.episode_id or None) if r else None,
            "scene_index": r.scene_index if r and r.episode_id else None,
        }
        out.append(item)
    return out


async def job(j: orchestrator_service_pb2.Job, url_for: UrlFor) -> dict[str, Any]:
    result = None
    if j.result_image.uri or j.result_video.uri:
        result = {
            "image": await image_ref(j.result_image, url_for),
            "video": await video_ref(j.result_video, url_for),
        }
    return {
        "job_id": j.id,
        "status": job_status(j.status),
        "character_id": j.character_id,
        "prompt": j.prompt,
        "pose_image_url": j.pose_image_uri or None,
        "style_overrides": list(j.style_overrides),
        "options": MessageToDict(
            j.options, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
        "result": result,
        "metrics": job_metrics(j.metrics) if j.HasField("metrics") else {},
        "error": {"code": j.error_code, "message": j.error_message}
        if (j.error_code or j.error_message)
        else None,
        "attempts": j.attempts,
        "provider_operation": j.provider_operation or None,
        "waiting_for": j.waiting_for or None,
        "waiting_since": _ts(j, "waiting_since") if j.waiting_for else None,
        "context": scene_context(j.context) if j.HasField("context") else None,
        "characters": cast_results(j),
        "created_at": _ts(j, "created_at"),
        "updated_at": _ts(j, "updated_at"),
    }
