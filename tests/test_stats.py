from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from tlcgcnn.stats import holm, paired_tests


def test_holm_matches_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    adj = holm(p)
    assert np.isnan(adj[3])
    assert np.allclose(adj[[4, 0, 2, 1]], [0.02, 0.03, 0.06, 0.06])


def test_paired_tests_against_scipy():
    rng = np.random.default_rng(1)
    rows = []
    for size in (50, 100):
        base = rng.normal(1.0, 0.1, 6)
        tl = base - 0.2 + rng.normal(0, 0.05, 6)
        for seed in range(6):
            rows.append({"target": "k", "size": size, "seed": seed, "mode": "scratch", "mae": base[seed]})
            rows.append({"target": "k", "size": size, "seed": seed, "mode": "transfer", "mae": tl[seed]})
    df = pd.DataFrame(rows)
    out = paired_tests(df)
    assert len(out) == 2 and (out["n_pairs"] == 6).all()
    sub = df[df["size"] == 50].pivot(index="seed", columns="mode", values="mae")
    ref = sstats.ttest_rel(sub["transfer"], sub["scratch"])
    r = out[out["size"] == 50].iloc[0]
    assert np.isclose(r["p_value"], ref.pvalue) and np.isclose(r["t_stat"], ref.statistic)
    assert r["mean_diff"] < 0 and r["ci_high"] < 0 and r["improvement_rate"] > 0.1
    assert np.allclose(out["p_holm"], holm(out["p_value"].to_numpy()))


def _holm_from_definition(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment written from its definition, independently of holm():
    with r(j) = 1 + #{k: p_k < p_j} (tied p-values share their smallest rank) and m tests,
    p_adj(i) = min(1, max over j with p_j <= p_i of (m − r(j) + 1) · p_j)."""
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    adj = np.full(len(p), np.nan)
    vals = []
    for pi in q:
        vals.append(min(1.0, max((m - (1 + int(np.sum(q < pj))) + 1) * pj for pj in q if pj <= pi)))
    adj[ok] = vals
    return adj


def _holm_rejections(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's procedure itself: reject H(1..k−1), k the first i with p(i) > alpha / (m − i + 1)."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    reject = np.zeros(m, bool)
    for i, idx in enumerate(order):
        if p[idx] > alpha / (m - i):
            break
        reject[idx] = True
    # tied p-values stand or fall together
    for v in np.unique(p):
        reject[p == v] = reject[p == v].all()
    return reject


def test_holm_against_an_independent_implementation():
    rng = np.random.default_rng(7)
    for trial in range(200):
        m = int(rng.integers(1, 25))
        p = rng.uniform(0, 0.2 if trial % 2 else 1.0, m)
        if m > 3:  # ties, exact ones and the occasional p = 1 or p = 0
            p[rng.integers(0, m, 2)] = p[0]
            p[rng.integers(0, m)] = 1.0
            if trial % 5 == 0:
                p[rng.integers(0, m)] = 0.0
        p = np.round(p, 3)  # more ties
        if trial % 3 == 0:
            p[rng.integers(0, m)] = np.nan
        adj = holm(p)
        np.testing.assert_allclose(adj, _holm_from_definition(p), rtol=0, atol=1e-12, equal_nan=True)
        ok = ~np.isnan(p)
        assert (adj[ok] >= p[ok] - 1e-15).all() and (adj[ok] <= 1).all()
        for alpha in (0.01, 0.05, 0.1):
            np.testing.assert_array_equal(adj[ok] <= alpha, _holm_rejections(p[ok], alpha))


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = np.round(rng.uniform(0, 1, int(rng.integers(1, 30))), 2)
        p[0] = 1.0
        np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1], atol=1e-12)


def test_holm_edge_cases():
    assert np.isnan(holm(np.array([np.nan, np.nan]))).all()
    assert holm(np.array([])).size == 0
    np.testing.assert_allclose(holm(np.array([0.3, 0.3, 0.3])), [0.9, 0.9, 0.9])
    np.testing.assert_allclose(holm(np.array([1.0, 0.5])), [1.0, 1.0])
