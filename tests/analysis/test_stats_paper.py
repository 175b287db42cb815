"""Statistics added for the papers' study."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tlcgcnn.analysis import stats
from tlcgcnn.analysis.evaluate import classification_metrics


def _runs():
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(8):
        for size in (50, 200):
            base = 1.0 if size == 50 else 0.5
            noise = 0.01 * rng.normal()
            rows.append(
                {
                    "target": "gap",
                    "task": "regression",
                    "property": "band_gap",
                    "size": size,
                    "seed": seed,
                    "mode": "scratch",
                    "family": "scratch",
                    "model_kind": "cgcnn",
                    "n_params": 100,
                    "error": base + noise,
                    "mae": base + noise,
                    "spearman_rho": 0.5,
                }
            )
            rows.append(
                {
                    "target": "gap",
                    "task": "regression",
                    "property": "band_gap",
                    "size": size,
                    "seed": seed,
                    "mode": "tl",
                    "family": "transfer",
                    "model_kind": "cgcnn",
                    "n_params": 100,
                    "error": base * 0.8 + noise + 0.005 * rng.normal(),
                    "mae": base * 0.8,
                    "spearman_rho": 0.6,
                }
            )
            rows.append(
                {
                    "target": "gap",
                    "task": "regression",
                    "property": "band_gap",
                    "size": size,
                    "seed": seed,
                    "mode": "rf",
                    "family": "baseline",
                    "model_kind": "rf",
                    "n_params": None,
                    "error": base * 1.1 + 0.02 * rng.normal(),
                    "mae": base * 1.1,
                    "spearman_rho": 0.4,
                }
            )
        auc_s, auc_t = 0.80 + 0.01 * rng.normal(), 0.85 + 0.01 * rng.normal()
        rows.append(
            {
                "target": "metal",
                "task": "classification",
                "property": "is_metal",
                "size": 100,
                "seed": seed,
                "mode": "scratch",
                "family": "scratch",
                "model_kind": "cgcnn",
                "n_params": 100,
                "error": 1 - auc_s,
                "roc_auc": auc_s,
                "accuracy": 0.7,
            }
        )
        rows.append(
            {
                "target": "metal",
                "task": "classification",
                "property": "is_metal",
                "size": 100,
                "seed": seed,
                "mode": "tl",
                "family": "transfer",
                "model_kind": "cgcnn",
                "n_params": 100,
                "error": 1 - auc_t,
                "roc_auc": auc_t,
                "accuracy": 0.75,
            }
        )
    return pd.DataFrame(rows)


def test_error_tests_use_the_tasks_metric_and_holm_within_families():
    t = stats.error_tests(_runs())
    assert set(t["metric"]) == {"mae", "1-roc_auc"}
    cls = t[t["target"] == "metal"].iloc[0]
    assert cls["mae_mode"] == pytest.approx(1 - _runs().query("target == 'metal' and mode == 'tl'")["roc_auc"].mean())
    assert cls["mean_diff"] < 0 and cls["p_value"] < 0.01
    fam = dict(zip(zip(t["target"], t["mode"], t["size"], strict=True), t["holm_family"], strict=True))
    assert fam[("gap", "tl", 50)] == "transfer_vs_scratch" and fam[("gap", "rf", 50)] == "baseline_vs_scratch"
    assert fam[("metal", "tl", 100)] == "classification"
    assert set(t["holm_family"]) <= set(stats.FAMILIES)
    for _, g in t.groupby("holm_family"):
        np.testing.assert_allclose(g["p_holm"], stats.holm(g["p_value"].to_numpy()))
    # not pooled: the pooled correction differs (three families of 2, 2 and 1 tests)
    assert not np.allclose(t["p_holm"], stats.holm(t["p_value"].to_numpy()))


def test_adding_baselines_leaves_the_transfer_family_alone():
    runs = _runs()
    without = stats.error_tests(runs[runs["family"] != "baseline"])
    with_ = stats.error_tests(runs)
    assert len(with_) > len(without) and "baseline_vs_scratch" in set(with_["holm_family"])
    key = ["target", "size", "mode"]
    a = without[without["holm_family"] == "transfer_vs_scratch"].set_index(key).sort_index()
    b = with_[with_["holm_family"] == "transfer_vs_scratch"].set_index(key).sort_index()
    assert len(a) == 2
    pd.testing.assert_series_equal(a["p_holm"], b["p_holm"])
    # and pooling would have changed them
    pooled = stats.holm(with_["p_value"].to_numpy())[with_["holm_family"].eq("transfer_vs_scratch").to_numpy()]
    assert (pooled > b["p_holm"].to_numpy() * 1.5).all()


def test_families_of_an_other_model_from_scratch_and_of_records_without_family():
    runs = _runs()
    att = runs[runs["mode"] == "scratch"].assign(
        mode="attention", model_kind="attention", error=lambda d: d["error"] * 0.9
    )
    t = stats.error_tests(pd.concat([runs, att], ignore_index=True))
    assert set(t[(t["mode"] == "attention") & (t["target"] == "gap")]["holm_family"]) == {"model_vs_scratch"}
    assert set(t[(t["mode"] == "attention") & (t["target"] == "metal")]["holm_family"]) == {"classification"}
    # per-seed records (no family column) name the pretrained source instead
    plain = (
        runs[runs["target"] == "gap"]
        .drop(columns=["family", "task", "error"])
        .assign(pretrained=lambda d: np.where(d["mode"] == "tl", "ef_all", None))
    )
    t = stats.paired_tests(plain)
    assert dict(zip(t["mode"], t["holm_family"], strict=True)) == {
        "rf": "model_vs_scratch",
        "tl": "transfer_vs_scratch",
    }
    with pytest.raises(ValueError, match="unknown run family 'other'"):
        stats.hypothesis_family("regression", "other")


def test_improvement_vs_size():
    t = stats.error_tests(_runs())
    imp = stats.improvement_vs_size(t)
    row = imp[(imp["mode"] == "tl") & (imp["size"] == 50) & (imp["target"] == "gap")].iloc[0]
    assert row["improvement_rate"] == pytest.approx(0.2, abs=0.02)
    assert bool(row["significant_better"])
    mean = imp[imp["target"] == "(mean over targets)"]
    assert set(mean["mode"]) == {"tl", "rf"}
    assert (mean[mean["mode"] == "rf"]["improvement_rate"] < 0).all()
    assert set(mean[mean["mode"] == "tl"]["holm_family"]) == {
        "classification",
        "transfer_vs_scratch",
    }  # sizes 100 and 50, 200


def test_rank_and_classification_summaries():
    m = _runs()
    assert stats.rank_summary(m, prop="band_gap").query("mode == 'tl'")["spearman_mean"].iloc[0] == pytest.approx(0.6)
    assert stats.rank_summary(m, prop="formation_energy_per_atom").empty
    c = stats.classification_summary(m)
    assert set(c["target"]) == {"metal"} and c["n"].max() == 8


def test_best_transfer_and_model_summary():
    m = _runs()
    t = stats.error_tests(m)
    best = stats.best_transfer(t, dict(zip(m["mode"], m["family"], strict=True)))
    row = best[(best["target"] == "gap") & (best["size"] == 50)].iloc[0]
    assert row["best_tl_mode"] == "tl" and row["best_baseline"] == "rf"
    assert row["holm_family"] == "transfer_vs_scratch" and row["baseline_holm_family"] == "baseline_vs_scratch"
    assert row["ci_low"] < row["diff"] < row["ci_high"] < 0
    ms = stats.model_summary(m)
    assert set(ms["mode"]) == {"scratch"}


def test_property_correlation():
    x = np.linspace(-3, 0, 200)
    df = pd.DataFrame({"formation_energy_per_atom": x, "band_gap": -2 * x + 1})
    df.loc[5, "band_gap"] = np.nan
    r = stats.property_correlation(df)
    assert r["n"] == 199 and r["pearson_r"] == pytest.approx(-1.0) and r["spearman_rho"] == pytest.approx(-1.0)
    rng = np.random.default_rng(1)
    noisy = pd.DataFrame({"formation_energy_per_atom": rng.normal(size=500), "band_gap": rng.normal(size=500)})
    r = stats.property_correlation(noisy)
    assert r["pearson_ci_low"] < 0 < r["pearson_ci_high"] and r["pearson_p"] > 0.01


def test_collect_reads_cells_of_seeds(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps(
            [{"target": "t", "size": 1, "mode": "m", "seed": 0}, {"target": "t", "size": 1, "mode": "m", "seed": 1}]
        )
    )
    (tmp_path / "b.json").write_text(json.dumps({"target": "t", "size": 1, "mode": "n", "seed": 0}))
    assert len(stats.collect([tmp_path / "a.json", tmp_path / "b.json"])) == 3


def test_classification_metrics():
    y = np.array([0, 0, 1, 1])
    perfect = classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["accuracy"] == 1.0 and perfect["error"] == 0.0
    reversed_ = classification_metrics(y, np.array([0.9, 0.8, 0.2, 0.1]))
    assert reversed_["roc_auc"] == 0.0 and reversed_["accuracy"] == 0.0
    assert classification_metrics(y, np.full(4, 0.5))["roc_auc"] == 0.5
    assert np.isnan(classification_metrics(np.ones(3), np.array([0.2, 0.5, 0.9]))["roc_auc"])
