"""Weighted merge of the semantic identity vector with recent episodic face vectors (seed §8).

    merged = normalize(w_s * v_s + w_e * sum_i decay(i) * e_i),   decay(i) = alpha^(i-1), decays normalised to 1

Episodes are given newest first (i = 1 is the most recent scene). With no episodes the result is the normalised
semantic vector alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from idlock.errors import InvalidInput

_EPS = 1e-12


@dataclass(frozen=True)
class MergeConfig:
    """Weights of the merge; the defaults are the seed's."""

    w_s: float = 0.6
    w_e: float = 0.4
    alpha: float = 0.6
    #: at most this many episodes take part (the newest); None: all given
    max_episodes: int | None = None

    def __post_init__(self) -> None:
        if self.w_s < 0 or self.w_e < 0 or self.w_s + self.w_e <= 0:
            raise InvalidInput("merge weights must be >= 0 and not both 0")
        if not 0 < self.alpha <= 1:
            raise InvalidInput("merge alpha must be in (0, 1]")
        if self.max_episodes is not None and self.max_episodes < 0:
            raise InvalidInput("max_episodes must be >= 0")


def normalize(v: np.ndarray | Sequence[float]) -> np.ndarray:
    """L2-normalise a vector (float64). A zero or non-finite vector is invalid input."""
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InvalidInput("vector is empty or not finite")
    n = float(np.linalg.norm(arr))
    if n < _EPS:
        raise InvalidInput("cannot normalise a zero vector")
    return arr / n


def decay_weights(n: int, alpha: float = 0.6) -> np.ndarray:
    """alpha^(i-1) for i = 1..n, normalised to sum 1 (empty for n = 0)."""
    if n <= 0:
        return np.zeros(0, dtype=np.float64)
    w = alpha ** np.arange(n, dtype=np.float64)
    return w / w.sum()


def merge_identity(
    semantic: np.ndarray | Sequence[float],
    episodes: Sequence[np.ndarray | Sequence[float]] = (),
    config: MergeConfig | None = None,
) -> np.ndarray:
    """The merged identity vector (unit norm, float64). `episodes` newest first; each is normalised first."""
    cfg = config or MergeConfig()
    v_s = normalize(semantic)
    eps = list(episodes)
    if cfg.max_episodes is not None:
        eps = eps[: cfg.max_episodes]
    if not eps or cfg.w_e == 0:
        return v_s
    mat = np.stack([normalize(e) for e in eps])
    if mat.shape[1] != v_s.shape[0]:
        raise InvalidInput(
            f"episodic vectors have {mat.shape[1]} dimensions, the semantic vector {v_s.shape[0]}"
        )
    d = decay_weights(len(eps), cfg.alpha)
    merged = cfg.w_s * v_s + cfg.w_e * (d[:, None] * mat).sum(axis=0)
    n = float(np.linalg.norm(merged))
    if n < 1e-9:  # episodes exactly cancel the semantic vector: keep who the character is
        return v_s
    return merged / n


def episode_weights(n: int, config: MergeConfig | None = None) -> list[float]:
    """The effective weight of each of n episodes (newest first) in the merge: w_e * decay(i)."""
    cfg = config or MergeConfig()
    if cfg.max_episodes is not None:
        n = min(n, cfg.max_episodes)
    return [float(cfg.w_e * x) for x in decay_weights(n, cfg.alpha)]
