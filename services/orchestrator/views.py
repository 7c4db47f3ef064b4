"""The job row as the API shows it (`orchestrator_service.proto`'s `Job`), and proto <-> JSON for the row's
JSON columns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format

from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.checkpoint import SCENE_CONTEXT_FIELDS, latest_operation
from services.orchestrator.models import (
    CANCELLED,
    FAILED,
    NEEDS_MORE_REFS,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    aware,
)

STATUS_PB = {
    QUEUED: common_pb2.JOB_STATUS_QUEUED,
    RUNNING: common_pb2.JOB_STATUS_RUNNING,
    SUCCEEDED: common_pb2.JOB_STATUS_SUCCEEDED,
    FAILED: common_pb2.JOB_STATUS_FAILED,
    NEEDS_MORE_REFS: common_pb2.JOB_STATUS_NEEDS_MORE_REFS,
    CANCELLED: common_pb2.JOB_STATUS_CANCELLED,
}


def msg_to_dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def dict_to_msg(d: Mapping[str, Any] | None, msg: Any) -> Any:
    if d:
        json_format.ParseDict(dict(d), msg, ignore_unknown_fields=True)
    return msg


#: fills a message from a JSON column: (column name, its value, the message)
Fill = Callable[[str, Mapping[str, Any] | None, Any], Any]


def _parse(_column: str, d: Mapping[str, Any] | None, msg: Any) -> None:
    dict_to_msg(d, msg)


def to_proto(job: Job, fill: Fill = _parse) -> pb.Job:
    """The job as the API shows it (`fill`: how its JSON columns become messages; see `JobProtos`)."""
    out = pb.Job(
        id=job.id,
        owner_id=job.owner_id,
        character_id=job.character_id,
        prompt=job.prompt,
        pose_image_uri=job.pose_image_uri or "",
        style_overrides=list(job.style_overrides or []),
        status=STATUS_PB.get(job.status, common_pb2.JOB_STATUS_UNSPECIFIED),
        error_code=job.error_code or "",
        error_message=job.error_message or "",
        attempts=job.attempts or 0,
    )
    fill("options", job.options, out.options)
    for member in job.cast_members or ():
        dict_to_msg(member, out.cast.add())
    fill("result_image", job.result_image, out.result_image)
    fill("metrics", job.metrics, out.metrics)
    ckpt = job.checkpoint or {}
    fill("result_video", ckpt.get("result_video"), out.result_video)  # video jobs
    out.provider_operation = latest_operation(ckpt)
    context = ckpt.get("context")
    if isinstance(context, Mapping):  # the scene context's fields, without the step's identity and references
        fill("context", {k: v for k, v in context.items() if k in SCENE_CONTEXT_FIELDS}, out.context)
    if job.waiting_for:
        out.waiting_for = job.waiting_for
        if job.waiting_since is not None:
            out.waiting_since.FromDatetime(aware(job.waiting_since))
    out.created_at.FromDatetime(aware(job.created_at))
    out.updated_at.FromDatetime(aware(job.updated_at))
    return out


class JobProtos:
    """One job's successive protos (a watch sends the job at each step): a JSON column equal to the one parsed
    last time is copied from that proto instead of parsed again, as json_format walks each field in Python."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[Mapping[str, Any], Any]] = {}

    def to_proto(self, job: Job) -> pb.Job:
        return to_proto(job, self._fill)

    def _fill(self, column: str, d: Mapping[str, Any] | None, msg: Any) -> None:
        if not d:
            return
        last = self._parsed.get(column)
        if last is not None and last[0] == d:
            msg.CopyFrom(last[1])
            return
        dict_to_msg(d, msg)
        self._parsed[column] = (d, msg)  # the row's columns are never changed in place, only replaced


__all__ = ["STATUS_PB", "JobProtos", "dict_to_msg", "msg_to_dict", "to_proto"]
