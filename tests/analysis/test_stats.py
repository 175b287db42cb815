from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from tlcgcnn.analysis.stats import holm, paired_tests


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


def _protocol_runs(n_seeds: int = 5) -> pd.DataFrame:
    """One target, one size: scratch and three transfer modes of source `ef` whose validation
    and test rankings disagree (ef_head best on validation, ef_ft best on test), one mode of
    source `eg` (alone: no choice), and a classification target with two modes of `ef`."""
    rng = np.random.default_rng(0)
    # mode: (family, source, mean validation score, mean test error)
    modes = {
        "scratch": ("scratch", None, 0.50, 0.50),
        "ef_ft": ("transfer", "ef", 0.40, 0.30),
        "ef_head": ("transfer", "ef", 0.35, 0.40),
        "ef_slow": ("transfer", "ef", 0.45, 0.45),
        "eg_ft": ("transfer", "eg", 0.20, 0.20),
    }
    rows = []
    for seed in range(n_seeds):
        for mode, (fam, src, val, test) in modes.items():
            rows.append(
                {
                    "target": "k",
                    "property": "k_vrh",
                    "transform": "log10",
                    "task": "regression",
                    "size": 50,
                    "seed": seed,
                    "mode": mode,
                    "family": fam,
                    "pretrained": src,
                    "best_val_mae": val + 0.01 * rng.normal(),
                    "error": test + 0.01 * rng.normal(),
                    "n_val": 60,
                }
            )
        for mode, val, test in (("scratch", 0.6, 0.3), ("ef_ft", 0.5, 0.1), ("ef_head", 0.5, 0.2)):
            rows.append(
                {
                    "target": "metal",
                    "property": "is_metal",
                    "transform": "none",
                    "task": "classification",
                    "size": 100,
                    "seed": seed,
                    "mode": mode,
                    "family": "transfer" if mode != "scratch" else "scratch",
                    "pretrained": "ef" if mode != "scratch" else None,
                    "best_val_mae": val,
                    "error": test + 0.01 * rng.normal(),
                    "n_val": 60,
                }
            )
    return pd.DataFrame(rows)


def test_protocol_is_chosen_on_validation_scores_only():
    from tlcgcnn.analysis.stats import protocol_table

    df = _protocol_runs()
    p = protocol_table(df, mode_order=["scratch", "ef_slow", "ef_ft", "ef_head", "eg_ft"])
    k = p[p["target"] == "k"]
    assert list(k["mode"]) == ["ef_slow", "ef_ft", "ef_head"]  # config order; eg_ft alone: no choice to make
    assert k.loc[k["selected"], "mode"].tolist() == ["ef_head"]  # best validation, not best test (ef_ft)
    r = k.iloc[0]
    assert r["selected_mode"] == "ef_head" and not r["selected_is_test_best"]
    ef_head, ef_ft, ef_slow = (k.set_index("mode").loc[m, "test_mean"] for m in ("ef_head", "ef_ft", "ef_slow"))
    assert r["choice_vs_best_pct"] == pytest.approx(100 * (ef_head - ef_ft) / ef_ft) and r["choice_vs_best_pct"] > 20
    assert (
        r["choice_vs_worst_pct"] == pytest.approx(100 * (ef_head - ef_slow) / ef_slow) and r["choice_vs_worst_pct"] < 0
    )
    assert r["spread_pct"] == pytest.approx(100 * (ef_slow - ef_ft) / ef_ft)
    assert (k["n_seeds"] == 5).all() and (k["val_metric"] == "mae").all() and (k["n_val"] == 60).all()
    assert r["baseline_test_mean"] == pytest.approx(
        df[(df["target"] == "k") & (df["mode"] == "scratch")]["error"].mean()
    )
    # swapping the test errors changes no choice; swapping validation scores does
    swapped = df.copy()
    swapped.loc[swapped["mode"] == "ef_ft", "error"], swapped.loc[swapped["mode"] == "ef_head", "error"] = (
        df.loc[df["mode"] == "ef_head", "error"].to_numpy(),
        df.loc[df["mode"] == "ef_ft", "error"].to_numpy(),
    )
    q = protocol_table(swapped, mode_order=["ef_slow", "ef_ft", "ef_head"])
    assert q.loc[q["selected"] & (q["target"] == "k"), "mode"].tolist() == ["ef_head"]
    # classification: validation BCE; equal scores: the first in config order wins
    c = p[p["target"] == "metal"]
    assert (c["val_metric"] == "bce").all() and (c["metric"] == "1-roc_auc").all()
    assert c.loc[c["selected"], "mode"].tolist() == ["ef_ft"]
    c2 = protocol_table(df, mode_order=["ef_head", "ef_ft"])
    assert c2.loc[c2["selected"] & (c2["target"] == "metal"), "mode"].tolist() == ["ef_head"]
    # records without validation scores or mode fields: an empty table with its columns
    assert protocol_table(df.drop(columns="best_val_mae")).empty


def test_selected_modes_form_their_own_holm_family(tmp_path):
    from tlcgcnn.analysis.stats import SELECTED_FAMILY, error_tests, mode_tests, read_table, run
    from tlcgcnn.utils import fileio as io

    df = _protocol_runs()
    files = []
    for (t, m), g in df.groupby(["target", "mode"]):
        files.append(tmp_path / f"{t}_{m}.json")
        io.write_json(files[-1], g.to_dict("records"))
    out = {k: tmp_path / f"{k}.csv" for k in ("metrics", "tests", "protocol")}
    run(
        [str(f) for f in files],
        out["metrics"],
        out["tests"],
        out_protocol=out["protocol"],
        mode_order=["scratch", "ef_ft", "ef_head", "ef_slow", "eg_ft"],
    )
    tests, protocol = read_table(out["tests"]), read_table(out["protocol"])
    assert protocol["selected"].sum() == 2
    sel = tests[tests["holm_family"] == SELECTED_FAMILY]
    assert sorted(zip(sel["target"], sel["mode"], sel["pretrained"], strict=True)) == [
        ("k", "ef_head", "ef"),
        ("metal", "ef_ft", "ef"),
    ]
    assert np.allclose(sel["p_holm"], holm(sel["p_value"].to_numpy()))
    # the other families and their Holm corrections are those of the tests alone
    before = error_tests(read_table(out["metrics"]))
    kept = mode_tests(tests)
    assert len(kept) == len(before) and set(kept["holm_family"]) == set(before["holm_family"])
    pd.testing.assert_series_equal(kept["p_holm"], before["p_holm"], check_names=False)
    r = sel[sel["target"] == "k"].iloc[0]
    b = df[(df["target"] == "k") & (df["mode"] == "scratch")]["error"].to_numpy()
    a = df[(df["target"] == "k") & (df["mode"] == "ef_head")]["error"].to_numpy()
    assert np.isclose(r["p_value"], sstats.ttest_rel(a, b).pvalue) and r["metric"] == "mae"
