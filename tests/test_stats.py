from __future__ import annotations

import numpy as np
import pandas as pd
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
