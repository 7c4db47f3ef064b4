from services.memory.consolidation import ConsolidationPolicy, SceneRecord, consolidate, digest
from services.memory.state import SceneTags, compute_state


def test_policy_defaults():
    p = ConsolidationPolicy()
    assert not p.due(["image"] * 4)
    assert p.due(["image"] * 5)
    assert not p.due(["video"] * 2)
    assert p.due(["video"] * 3)
    assert p.due(["image"] * 3 + ["video"] * 2)  # 3/5 + 2/3 >= 1
    assert not p.due(["image"] * 3 + ["video"])  # 3/5 + 1/3 < 1
    assert not p.due(["image"] * 2 + ["video"])
    assert ConsolidationPolicy(every_images=2, every_videos=1).due(["video"])


def test_digest_is_deterministic_and_labelled():
    scenes = [SceneRecord(i, "image", f"scene text {i}") for i in range(1, 6)]
    st = compute_state([SceneTags(1, added={"props": ["sword"]})])
    a = digest(scenes, st, "Earlier: she left home.")
    assert a == digest(list(reversed(scenes)), st, "Earlier: she left home.")
    assert a.startswith("Earlier: she left home.") and "scene 5 (image)" in a and "props sword" in a
    assert len(digest(scenes * 50, st, max_chars=200)) <= 200


async def test_consolidate_without_llm():
    r = await consolidate([SceneRecord(1, "video", "a chase")], None)
    assert r.engine == "digest" and r.fallback_reason == "no llm configured" and r.up_to_scene == 1
