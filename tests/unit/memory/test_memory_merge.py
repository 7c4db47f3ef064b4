import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from idlock.errors import InvalidInput
from services.memory.merge import MergeConfig, decay_weights, episode_weights, merge_identity, normalize

DIM = 8
finite = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False)
vec = arrays(np.float64, DIM, elements=finite).filter(lambda v: np.linalg.norm(v) > 1e-3)


@settings(max_examples=60, deadline=None)
@given(vec, st.lists(vec, max_size=6), st.floats(0.05, 1.0), st.floats(0.0, 1.0))
def test_unit_norm(s, eps, alpha, w_e):
    m = merge_identity(s, eps, MergeConfig(w_s=1 - w_e + 0.01, w_e=w_e, alpha=alpha))
    assert np.isclose(np.linalg.norm(m), 1.0)


@settings(max_examples=40, deadline=None)
@given(vec)
def test_semantic_only_without_episodes(s):
    assert np.allclose(merge_identity(s, []), normalize(s))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 10), st.floats(0.05, 0.99))
def test_older_episodes_weigh_less(n, alpha):
    w = decay_weights(n, alpha)
    assert np.isclose(w.sum(), 1.0)
    assert all(w[i] > w[i + 1] for i in range(n - 1))
    ew = episode_weights(n, MergeConfig(alpha=alpha))
    assert np.isclose(sum(ew), 0.4)


@settings(max_examples=40, deadline=None)
@given(vec, st.floats(0.1, 0.9))
def test_newest_episode_pulls_harder(s, alpha):
    # two orthogonal episodes: the merged vector leans towards the newest one
    e1 = np.zeros(DIM)
    e1[0] = 1
    e2 = np.zeros(DIM)
    e2[1] = 1
    sem = np.zeros(DIM)
    sem[2] = 1
    m = merge_identity(sem, [e1, e2], MergeConfig(alpha=alpha))
    assert m[0] > m[1]


def test_defaults_match_seed():
    s = np.array([1.0, 0, 0])
    e1 = np.array([0, 1.0, 0])
    e2 = np.array([0, 0, 1.0])
    m = merge_identity(s, [e1, e2])
    d = np.array([1, 0.6]) / 1.6
    expect = 0.6 * s + 0.4 * (d[0] * e1 + d[1] * e2)
    assert np.allclose(m, expect / np.linalg.norm(expect))


def test_bad_inputs():
    with pytest.raises(InvalidInput):
        merge_identity(np.zeros(4))
    with pytest.raises(InvalidInput):
        merge_identity(np.ones(4), [np.ones(3)])
    with pytest.raises(InvalidInput):
        MergeConfig(alpha=0)
