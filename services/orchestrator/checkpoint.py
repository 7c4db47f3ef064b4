"""A running job's checkpoint: the `JobCheckpoint` message (protos/idlock/v1/job_checkpoint.proto) and what the
step runner needs to know about it between writes. Stored in the job row as proto JSON with field names.

Rows written before the checkpoint was a message (a dict of step name -> result, the video operations as
`<tag>_operation` keys) read the same: their step keys are the message's field names, and `upgrade` moves the
operations into their map. A job checkpointed by the previous release resumes after the upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from idlock.v1 import common_pb2, memory_service_pb2
from idlock.v1 import job_checkpoint_pb2 as ck

#: the steps a flow checkpoints, by field of `JobCheckpoint`
STEP_FIELDS = ("context", "render", "score", "refine", "state", "record", "regenerate")
_LEGACY_OPERATION = "_operation"
#: the fields the context step shares with memory's `SceneContext` (what a scene was made from, as the job and its
#: episode show it); the step's others are the identity, the references and timings
SCENE_CONTEXT_FIELDS = frozenset(f.name for f in memory_service_pb2.SceneContext.DESCRIPTOR.fields)


def vector_to_dict(v: common_pb2.IdentityVector) -> dict[str, Any]:
    """An identity vector as stored, without json_format's walk over each float."""
    return {"encoder": v.encoder, "values": list(v.values)} if v.encoder or v.values else {}


def step_to_dict(step: Any) -> dict[str, Any]:
    """A step message as stored. Identity vectors skip json_format, which walks each float in Python (~0.7 ms a
    vector, and a job writes its steps up to four times)."""
    vectors = {
        f.name: getattr(step, f.name)
        for f in step.DESCRIPTOR.fields
        if f.message_type is common_pb2.IdentityVector.DESCRIPTOR and step.HasField(f.name)
    }
    if not vectors:
        return json_format.MessageToDict(step, preserving_proto_field_name=True)
    copy = type(step)()
    copy.CopyFrom(step)
    for name in vectors:
        copy.ClearField(name)
    out = json_format.MessageToDict(copy, preserving_proto_field_name=True)
    out.update({name: vector_to_dict(v) for name, v in vectors.items()})
    return out


def upgrade(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored checkpoint in the current layout (the dict-of-steps layout of earlier releases included)."""
    out: dict[str, Any] = {}
    operations = dict((stored or {}).get("operations") or {})
    for key, value in (stored or {}).items():
        if key.endswith(_LEGACY_OPERATION) and isinstance(value, Mapping):
            operations[key.removesuffix(_LEGACY_OPERATION)] = dict(value)
        elif key != "operations":
            out[key] = value
    if operations:
        out["operations"] = operations
    return out


def parse(stored: Mapping[str, Any] | None) -> ck.JobCheckpoint:
    msg = ck.JobCheckpoint()
    data = upgrade(stored)
    if data:
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    return msg


def _render_order(tag: str) -> tuple[int, int, str]:
    """ "render" first, then "regen1", "regen2", ... in number order."""
    n = tag.removeprefix("regen")
    return (0, 0, tag) if tag == "render" else (1, int(n) if n.isdigit() else 0, tag)


class Checkpoint:
    """The finished steps of a job this worker runs, and the runner's knowledge of the row:

    - `confirmed`: the last thing done was a conditional write that found the job running here (a step run since
      may not be in the row yet);
    - `unwritten`: a step whose result must be written before the job goes on (written while the next step's call
      is out)."""

    def __init__(self, stored: Mapping[str, Any] | None = None) -> None:
        self.msg = parse(stored)
        self.confirmed = True
        self.unwritten = ""
        self._stored: dict[str, dict[str, Any]] = {}  # a finished step never changes: serialised once

    def done(self, step: str) -> bool:
        return self.msg.HasField(step)

    def get(self, step: str) -> Any:
        return getattr(self.msg, step)

    def set(self, step: str, result: Any) -> None:
        getattr(self.msg, step).CopyFrom(result)
        self._stored.pop(step, None)

    def steps_done(self) -> list[str]:
        return [name for name in STEP_FIELDS if self.msg.HasField(name)]

    def set_operation(self, tag: str, name: str) -> None:
        if name:
            self.msg.operations[tag].name = name
        else:  # forgotten: the operation ended in an error
            self.msg.operations.pop(tag, None)

    def operation(self, tag: str) -> str:
        op = self.msg.operations.get(tag)
        return op.name if op is not None else ""

    def to_stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.steps_done():
            if name not in self._stored:
                self._stored[name] = step_to_dict(getattr(self.msg, name))
            out[name] = self._stored[name]
        if self.msg.operations:
            out["operations"] = {
                tag: {"name": self.msg.operations[tag].name}
                for tag in sorted(self.msg.operations, key=_render_order)
            }
        if self.msg.HasField("result_video"):
            out["result_video"] = json_format.MessageToDict(
                self.msg.result_video, preserving_proto_field_name=True
            )
        return out


def latest_operation(stored: Mapping[str, Any] | None) -> str:
    """The provider operation a job's row shows (the last render's: regenerations come after the first)."""
    operations = upgrade(stored).get("operations") or {}
    names = [
        op.get("name", "")
        for _, op in sorted(operations.items(), key=lambda kv: _render_order(kv[0]))
        if isinstance(op, Mapping)
    ]
    return names[-1] if names else ""


__all__ = ["STEP_FIELDS", "Checkpoint", "latest_operation", "parse", "step_to_dict", "upgrade"]
