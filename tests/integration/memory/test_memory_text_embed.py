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


def test_hashing_embedder():
    e = HashingTextEmbedder()
    v = e.embed(["sword fight", "sword fight", ""])
    assert v.shape == (3, 384) and np.allclose(v[0], v[1]) and not v[2].any()
