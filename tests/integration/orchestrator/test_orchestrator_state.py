"""State extraction: the labelled keyword heuristic, and Gemini vision through the real google-genai client
against the local fake Gemini server (JSON schema answer, failures fall back to the heuristic)."""

from __future__ import annotations

import json

from idlock.v1 import common_pb2
from services.orchestrator.state_extraction import StateExtractor, VisionStateReader, heuristic_state
from tests.fakes.gemini_server import FakeGeminiServer, Reply
from tests.integration.orchestrator.conftest import orchestrator
from tests.metrics_probe import Change


def test_heuristic_reads_additions_and_removals() -> None:
    s = heuristic_state(
        "Arya in a red cloak fights on a cliff, holding a sword, determined, with a cut on her left cheek"
    )
    assert s.source == "heuristic"
    assert s.added == {
        "clothing": ["red cloak"],
        "injuries": ["cut on left cheek"],
        "props": ["sword"],
        "setting": ["cliff"],
        "mood": ["determined"],
    }
    s = heuristic_state("Arya takes off the armour and drops the sword in the tavern, smiling")
    assert s.removed == {"clothing": ["armour"], "props": ["sword"]}
    assert s.added == {"setting": ["tavern"], "mood": ["happy"]}  # a removed item is never also added
    assert heuristic_state("").added == {}
    # a time of day goes with the setting; a compound place is one setting
    assert heuristic_state("Arya fights a dragon on a cliff at sunset").added["setting"] == [
        "cliff at sunset"
    ]
    assert heuristic_state("Arya rests at a forest camp at night").added["setting"] == [
        "forest camp at night"
    ]


async def test_vision_answer_in_the_schema_and_fallback_on_failure() -> None:
    with FakeGeminiServer() as fake:
        answer = {
            "clothing": ["blue jacket"],
            "injuries": [],
            "props": ["lantern"],
            "setting": ["cave", "tunnel"],
            "mood": ["calm"],
            "description": "A woman holds a lantern in a cave.",
        }
        fake.script(Reply.text_only(json.dumps(answer)), Reply.error(500), Reply.text_only("not json"))
        reader = VisionStateReader("test-key", "gemini-2.5-flash", base_url=fake.base_url, timeout_s=5)
        ex = StateExtractor(reader, timeout_s=5)
        grew = Change()
        try:
            s = await ex.extract(
                user_prompt="Arya drops the sword in a cave", image=b"\x89PNG fake", mime="image/png"
            )
            assert s.source == "vision:gemini-2.5-flash" and not s.fallback_reason
            assert s.added == {
                "clothing": ["blue jacket"],
                "props": ["lantern"],
                "setting": ["cave"],
                "mood": ["calm"],
            }
            assert s.removed == {"props": ["sword"]} and s.description.startswith("A woman")
            req = fake.requests[0]
            assert req.images and "Arya drops the sword" in " ".join(req.texts)
            cfg = req.generation_config
            assert cfg.get("responseMimeType") == "application/json" and cfg.get("responseSchema")

            for _ in range(2):  # a 500 and a non-JSON answer: the heuristic, labelled, with the reason
                s = await ex.extract(user_prompt="Arya in a forest", image=b"img")
                assert s.source == "heuristic" and s.added["setting"] == ["forest"]
                assert s.fallback_reason.startswith("vision:gemini-2.5-flash failed")
            labels = {"provider": "gemini", "model": "gemini-2.5-flash", "purpose": "state"}
            assert grew("idlock_llm_seconds_count", **labels) == 3
            assert (
                grew("idlock_llm_errors_total", **labels) == 1
            )  # the 500; "not json" is an answer, read badly
        finally:
            await ex.aclose()


async def test_a_job_uses_vision_state_extraction_when_a_key_is_configured(peers, tmp_path) -> None:
    with FakeGeminiServer() as fake:
        fake.default = Reply.text_only(
            json.dumps(
                {
                    "clothing": ["space suit"],
                    "props": ["helmet"],
                    "setting": ["launch pad"],
                    "mood": ["proud"],
                    "description": "An astronaut on a launch pad.",
                }
            )
        )
        async with orchestrator(
            peers, tmp_path, gemini_api_key="test-key", gemini_base_url=fake.base_url
        ) as orch:
            # (step, vision requests made before the write)
            writes = orch.log_writes(lambda step, checkpoint, commit: (step, len(fake.requests)))
            cid = peers.add_character()
            job = (await orch.submit(cid, prompt="Arya stands at the launch pad")).job
            done = await orch.wait_status(
                job.id, [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED]
            )
            assert done.status == common_pb2.JOB_STATUS_SUCCEEDED, done.error_message
            assert done.metrics.state_source == "vision:gemini-2.5-flash"
            # the paid vision call is confirmed first (a job cancelled meanwhile stops before it)
            assert ("state", 0) in writes and writes[-1][0] == "record", writes
            assert list(done.metrics.tags.clothing) == ["space suit"] and list(done.metrics.tags.setting) == [
                "launch pad"
            ]
            assert fake.requests and fake.requests[-1].images  # the rendered image was sent
            ep = peers.memory.episodes[(cid, job.id)]
            assert (
                ep.state_source == "vision:gemini-2.5-flash"
                and ep.description == "An astronaut on a launch pad."
            )
