"""Memory's rows as protobuf messages and back (characters, sheets, episodes, state items)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from idlock.v1 import common_pb2
from idlock.v1 import memory_service_pb2 as pb
from services.memory import characters
from services.memory.llm import GroqLlm
from services.memory.models import STATUS_NEEDS_MORE_REFS, STATUS_READY, TAG_CATEGORIES
from services.memory.prompt import ComposedPrompt
from services.memory.vectors import point_id

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


def ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def now() -> timestamp_pb2.Timestamp:
    return ts(datetime.now(UTC))  # type: ignore[return-value]


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
        consent_at=ts(ch.consent_at),
        status=STATUS.get(ch.status, pb.CHARACTER_STATUS_UNSPECIFIED),
        status_reasons=list(ch.status_reasons or []),
        encoder=ch.encoder or "",
        semantic_vector_id=point_id("semantic", ch.id) if ch.encoder else "",
        reference_images=[image_ref_pb(r) for r in ch.ref_image_refs or []],
        memory_version=ch.memory_version,
        episode_count=ch.episode_count,
        created_at=ts(ch.created_at),
        updated_at=ts(ch.updated_at),
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


def episode_pb(ep: Any, encoder: str = "", *, with_context: bool = False) -> pb.Episode:
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
        provider_label=ep.provider_label or "",
        created_at=ts(ep.created_at),
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
    if ep.copy_check:
        json_format.ParseDict(ep.copy_check, out.copy, ignore_unknown_fields=True)
    for c in ep.cast_members or ():
        out.cast.add(character_id=c.get("character_id", ""), name=c.get("name", ""), role=c.get("role", ""))
    if with_context and ep.context:
        json_format.ParseDict(ep.context, out.context, ignore_unknown_fields=True)
    if ep.face_embedding:
        out.face_embedding.CopyFrom(
            common_pb2.IdentityVector(encoder=encoder, values=list(ep.face_embedding))
        )
    if ep.idr_calibrated is not None or ep.idr_raw is not None:
        cal = ep.idr_calibrated or 0.0
        out.idr.CopyFrom(
            common_pb2.IdrScore(raw=ep.idr_raw or 0.0, calibrated=cal, verdict=verdict(cal), encoder=encoder)
        )
        if out.copy.near_copy and out.idr.verdict == common_pb2.VERDICT_GOLDEN:
            out.idr.verdict = common_pb2.VERDICT_PASS  # a copy is never a training candidate
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
        "context": json_format.MessageToDict(e.context, preserving_proto_field_name=True)
        if e.HasField("context")
        else None,
        "provider_label": e.provider_label,
        "copy_check": json_format.MessageToDict(e.copy, preserving_proto_field_name=True)
        if e.copy.checked
        else None,
        "cast_members": [{"character_id": c.character_id, "name": c.name, "role": c.role} for c in e.cast],
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


def engine_label(prompt: ComposedPrompt, llm: GroqLlm | None) -> str:
    """The proto's engine string: "template" or "llm:<model>"."""
    if prompt.engine == "llm" and llm is not None:
        return f"llm:{llm.config.model}"
    return prompt.engine
