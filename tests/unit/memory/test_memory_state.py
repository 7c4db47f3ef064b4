import pytest

from services.memory.state import (
    SceneTags,
    StateCache,
    StateFold,
    attribute_history,
    compute_state,
    infer_removals,
    normalize_name,
)


def story():
    return [
        SceneTags(
            1,
            added={"clothing": ["Battle Armor"], "props": ["sword"], "setting": ["castle gate"]},
            text="The knight stands at the castle gate in battle armour, sword in hand.",
        ),
        SceneTags(
            2,
            added={"injuries": ["cut on left cheek"], "setting": ["forest"]},
            text="An ambush in the forest; a blade leaves a cut on her left cheek.",
        ),
        SceneTags(
            3, added={"clothing": ["battle armour"]}, text="At the camp she removes the armour and rests."
        ),
    ]


def test_normalize_names():
    assert normalize_name("The Armor") == "armour"
    assert normalize_name("ARMOUR") == "armour"
    assert normalize_name("swords") == "sword"
    assert normalize_name("injuries") == "injury"
    assert normalize_name("dress") == "dress"
    assert normalize_name("trousers") == "trousers"
    assert normalize_name("knives") == "knife"
    assert normalize_name("battle_armor") == "battle armour"


def test_three_scene_state():
    st = compute_state(story())
    assert st.names("props") == ["sword"]
    assert st.names("injuries") == ["cut on left cheek"]
    assert st.names("clothing") == []
    assert st.names("setting") == ["forest"]  # exclusive: forest ended the castle gate
    assert st.last_scene == 3
    hist = st.history("clothing", "battle armor")
    assert [(i.start_scene, i.end_scene) for i in hist] == [(1, 3)]
    assert [(i.start_scene, i.end_scene) for i in st.history("setting", "castle gate")] == [(1, 2)]
    assert [(i.start_scene, i.end_scene) for i in st.history("props", "Swords")] == [(1, None)]
    assert [i.name for i in st.ended_since(3)] == ["battle armour"]


def test_reintroduced_attribute_has_two_intervals():
    scenes = story() + [
        SceneTags(5, added={"clothing": ["armour"]}),
        SceneTags(7, removed={"clothing": ["Armor"]}),
    ]
    hist = attribute_history(scenes, "clothing", "armour")
    assert [(i.start_scene, i.end_scene) for i in hist] == [(5, 7)]
    hist = attribute_history(scenes, "clothing", "battle armour")
    assert [(i.start_scene, i.end_scene) for i in hist] == [(1, 3)]


def test_explicit_removed_tags_and_heals():
    scenes = [
        SceneTags(1, added={"injuries": ["bruised ribs", "cut on left cheek"], "props": ["shield"]}),
        SceneTags(2, text="Weeks later the wound on her cheek healed."),
        SceneTags(3, removed={"props": ["Shields"]}),
    ]
    st = compute_state(scenes)
    assert st.names("injuries") == ["bruised rib"]
    assert st.names("props") == []
    scenes.append(SceneTags(4, text="She rests and heals completely."))
    assert compute_state(scenes).names("injuries") == []


def test_heuristic_phrases():
    names = lambda t: [(r.name, r.category) for r in infer_removals(t)]
    assert names("She removes the armour.") == [("armour", "*")]
    assert names("He takes off his Armor and walks away") == [("armour", "*")]
    assert names("took the helmet off") == [("helmet", "*")]
    assert names("drops the sword and the shield") == [("sword", "*"), ("shield", "*")]
    assert names("loses his boots in the river") == [("boot", "*")]
    assert names("her cut has healed") == [("cut", "injuries")]
    assert names("he never drops the sword") == []
    assert infer_removals("the knight heals")[0].all_of_category


def test_order_independent_and_infer_off():
    sc = story()
    assert compute_state(list(reversed(sc))) == compute_state(sc)
    st = compute_state(sc, infer=False)
    assert "battle armour" in st.names("clothing")


def test_a_fold_kept_between_calls_equals_replaying_the_whole_story():
    scenes = story() + [
        SceneTags(4, added={"props": ["torch"], "mood": ["wary"]}, text="She drops the sword."),
        SceneTags(5, added={"setting": ["cave"]}, removed={"injuries": ["cut on left cheek"]}),
    ]
    fold = StateFold()
    for n in range(1, len(scenes) + 1):
        fold.add(scenes[n - 1])
        assert fold.state() == compute_state(scenes[:n])  # read at every point, as context builds do
    fold.add(scenes[1])  # a scene already applied changes nothing
    assert fold.state() == compute_state(scenes) and fold.last == 5
    assert fold.state().names("props") == ["torch"] and fold.state().names("injuries") == []


def test_the_cache_keeps_one_fold_per_character_and_starts_over_when_the_story_shrank():
    cache = StateCache(max_characters=2)
    a = cache.fold("a", 0)
    for sc in story():
        a.add(sc)
    assert cache.fold("a", 3) is a and cache.fold("a", 7) is a
    assert cache.fold("a", 2) is not a  # fewer scenes than it holds: replayed from the start
    cache.fold("b", 0)
    cache.fold("c", 0)  # over the limit: "a", least recently used, is dropped
    assert cache.fold("b", 0).last is None and "a" not in cache._folds
    cache.forget("b")
    assert "b" not in cache._folds


def test_a_stored_fold_read_back_goes_on_as_the_whole_replay():
    import json

    scenes = story() + [
        SceneTags(4, added={"props": ["torch"], "mood": ["wary"]}, text="She drops the sword."),
        SceneTags(5, added={"setting": ["cave"]}, removed={"injuries": ["cut on left cheek"]}),
    ]
    fold = StateFold()
    for sc in scenes[:3]:
        fold.add(sc)
    stored = json.loads(json.dumps(fold.to_dict()))  # as the database gives it back
    again = StateFold.from_dict(stored)
    assert again.state() == fold.state() and again.last == 3
    for sc in scenes[3:]:
        again.add(sc)
    assert again.state() == compute_state(scenes)
    with pytest.raises(ValueError, match="unknown story fold version"):
        StateFold.from_dict({**stored, "v": 99})


def test_the_cache_says_when_a_fold_is_due_to_be_stored():
    cache = StateCache(store_every=2)
    a = cache.fold("a", 0)
    assert cache.due("a") is None  # nothing folded yet
    a.add(story()[0])
    assert cache.due("a") is not None  # never stored: due at once
    assert cache.due("a") is None  # counted as stored
    a.add(story()[1])
    assert cache.due("a") is None  # one scene past the stored copy
    a.add(story()[2])
    assert cache.due("a")["last"] == 3
    adopted = cache.adopt("b", StateFold.from_dict(a.to_dict()))
    assert cache.fold("b", 3) is adopted and cache.due("b") is None  # read from the store: already there


def test_a_long_story_reads_only_what_ended_lately():
    """A context asks what ended in the last few scenes: that reads the tail of the ended attributes, and the
    story's whole sorted history is built only when a history is asked for."""
    fold = StateFold()
    for i in range(1, 2001):  # a new setting every scene: 1999 settings ended
        fold.add(SceneTags(i, added={"setting": [f"place {i}"], "props": ["lamp"] if i % 2 else []}))
    st = fold.state()
    assert [iv.end_scene for iv in st.ended] == sorted(iv.end_scene for iv in st.ended)  # in end order
    assert [(iv.name, iv.end_scene) for iv in st.ended_since(1999)] == [
        ("place 1999", 2000),
        ("place 1998", 1999),
    ]
    assert "intervals" not in vars(st)  # the context's reads did not sort the whole story
    assert len(st.intervals) == 2000 + 1  # every setting and the lamp, built when asked
    assert [(i.start_scene, i.end_scene) for i in st.history("setting", "place 7")] == [(7, 8)]
    # what was stored reads back in the same order, and answers the same
    again = StateFold.from_dict(fold.to_dict()).state()
    assert again.ended == st.ended and again.ended_since(1999) == st.ended_since(1999)
