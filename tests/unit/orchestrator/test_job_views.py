"""A watch's successive job protos: what a column holds now is what the proto shows, whether it was parsed again
or copied from the proto before."""

from __future__ import annotations

from datetime import UTC, datetime

from services.orchestrator.models import Job
from services.orchestrator.views import JobProtos, to_proto

AT = datetime(2026, 12, 5, tzinfo=UTC)


def _job(**values) -> Job:
    row = {
        "id": "job_1",
        "owner_id": "u",
        "character_id": "c",
        "prompt": "p",
        "status": "running",
        "step": "render",
        "options": {"seed": "7"},
        "checkpoint": {"context": {"prompt": "composed", "memory_version": 2, "identity": {"values": [1]}}},
        "created_at": AT,
        "updated_at": AT,
    }
    return Job(**(row | values))


def test_each_update_shows_the_columns_as_they_are_now() -> None:
    protos = JobProtos()
    first = _job()
    assert protos.to_proto(first) == to_proto(first)
    assert protos.to_proto(first).context.prompt == "composed"

    ended = _job(
        status="succeeded",
        metrics={"provider": "compositor", "scene_index": 3},
        result_image={"uri": "file:///a.png", "width": 8},
        checkpoint={"context": {"prompt": "composed", "negative_prompt": "blur"}, "render": {}},
    )
    shown = protos.to_proto(ended)
    assert shown == to_proto(ended)
    assert (shown.metrics.scene_index, shown.result_image.width, shown.context.negative_prompt) == (
        3,
        8,
        "blur",
    )

    # a column that changed is parsed again, one that went empty is empty
    changed = _job(
        metrics={"provider": "gemini"},
        options={},
        checkpoint={"context": {"prompt": "another", "negative_prompt": "blur"}},
    )
    again = protos.to_proto(changed)
    assert again == to_proto(changed)
    assert (again.metrics.provider, again.metrics.scene_index, again.context.prompt) == (
        "gemini",
        0,
        "another",
    )
    assert not again.HasField("options") and not again.HasField("result_image")
