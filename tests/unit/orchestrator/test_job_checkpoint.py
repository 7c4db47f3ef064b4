"""The job checkpoint is a `JobCheckpoint` message stored as proto JSON; rows written by the release before it (a
dict of step results, video operations as `<tag>_operation` keys) read into the same message."""

import json

from idlock.v1 import common_pb2
from idlock.v1 import job_checkpoint_pb2 as ck
from services.orchestrator.checkpoint import Checkpoint, latest_operation, parse, upgrade

VECTOR = [0.01 * i - 0.5 for i in range(128)]

#: what release 8265736 stored for a video job that had rendered, scored and regenerated once
LEGACY = {
    "context": {
        "prompt": "Arya on the beach, red cloak",
        "negative_prompt": "blurry",
        "engine": "template",
        "fallback_reason": "",
        "memory_version": 3,
        "identity": {"encoder": "dlib", "values": VECTOR},
        "references": [
            {"uri": "file:///refs/a.png", "sha256": "ab", "mime": "image/png", "width": 64, "height": 64}
        ],
        "model_seconds": 0.012,
        "seconds": 0.05,
    },
    "render_operation": {"name": "models/veo/operations/op-1"},
    "regen1_operation": {"name": "models/veo/operations/op-2"},
    "render": {
        "video": {"uri": "file:///jobs/j/video/video.mp4", "duration_s": 2.0},
        "provenance": {"provider": "veo", "model": "veo-3", "estimated_cost_usd": 0.5, "label": "veo"},
        "operation_name": "models/veo/operations/op-1",
        "polls": 12,
        "seconds": 2.5,
    },
    "score": {
        "face_found": True,
        "idr": {"raw": 0.93, "calibrated": 0.81, "verdict": "VERDICT_PASS", "encoder": "dlib"},
        "embedding": {"encoder": "dlib", "values": VECTOR},
        "frames": [{"timestamp_s": 0.0, "face_found": True, "score": {"calibrated": 0.81}}],
        "frames_scored": 1,
        "frame_idr_min": 0.81,
        "frame_idr_mean": 0.81,
        "seconds": 0.4,
    },
    "refine": {"needed": True, "refined": False, "note": "kept", "attempts": 2, "seconds": 1.0},
    "state": {
        "added": {"clothing": ["red cloak"]},
        "removed": {},
        "source": "heuristic",
        "model_seconds": 0.0,
    },
}


def test_a_legacy_checkpoint_reads_into_the_message() -> None:
    msg = parse(json.loads(json.dumps(LEGACY)))  # as read back from the JSON column
    assert msg.context.prompt == "Arya on the beach, red cloak" and msg.context.memory_version == 3
    assert list(msg.context.identity.values) == [
        float(common_pb2.IdentityVector(values=[v]).values[0]) for v in VECTOR
    ]
    assert msg.context.references[0].uri == "file:///refs/a.png"
    assert msg.render.provenance.provider == "veo" and msg.render.polls == 12
    assert msg.score.idr.verdict == common_pb2.VERDICT_PASS and len(msg.score.embedding.values) == 128
    assert msg.refine.HasField("attempts") and msg.refine.attempts == 2
    assert list(msg.state.added.clothing) == ["red cloak"]
    assert msg.operations["render"].name.endswith("op-1") and msg.operations["regen1"].name.endswith("op-2")
    assert not msg.HasField("record") and not msg.HasField("regenerate")


def test_a_gate_that_let_the_image_be_has_no_attempts() -> None:
    msg = parse({"refine": {"needed": False, "refined": False, "note": "", "seconds": 0.0}})
    assert msg.HasField("refine") and not msg.refine.HasField("attempts")


def test_the_stored_form_round_trips_and_is_written_in_the_new_layout() -> None:
    ckpt = Checkpoint(LEGACY)
    stored = json.loads(json.dumps(ckpt.to_stored()))
    assert "render_operation" not in stored and stored["operations"]["render"]["name"].endswith("op-1")
    assert list(stored["operations"]) == ["render", "regen1"]
    assert stored["context"]["identity"] == {
        "encoder": "dlib",
        "values": list(ckpt.msg.context.identity.values),
    }
    assert parse(stored) == ckpt.msg
    assert upgrade(stored) == stored  # the new layout is already current


def test_steps_set_forget_operations_and_show_the_latest() -> None:
    ckpt = Checkpoint()
    assert not ckpt.done("context") and ckpt.to_stored() == {}
    ckpt.set("record", ck.RecordStep(episode_id="ep", scene_index=4, seconds=0.1))
    ckpt.set_operation("render", "op-a")
    ckpt.set_operation("regen2", "op-c")
    ckpt.set_operation("regen1", "op-b")
    stored = ckpt.to_stored()
    assert stored["record"]["scene_index"] == 4 and ckpt.steps_done() == ["record"]
    assert latest_operation(stored) == "op-c" and latest_operation(LEGACY).endswith("op-2")
    ckpt.set_operation("regen2", "")
    assert latest_operation(ckpt.to_stored()) == "op-b" and ckpt.operation("regen2") == ""
    assert latest_operation({}) == ""
