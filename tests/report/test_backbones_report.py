"""tlcgcnn.report.backbones: a backbone run paired with the published study, seed by seed.

The study's side is the committed ``docs/results/paper-cpu/tables/metrics.csv`` (real runs).
The "backbone" records of these tests are real frozen-feature records of that study (the
ΔEf and Eg sources' vectors + ridge on the HSE gap) relabelled as a backbone's, so that every
number they are tested on is a real test MAE whose right answer the test computes on its own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats as sstats

from tlcgcnn.report import backbones as B
from tlcgcnn.report.figures import quality

STUDY = ROOT / "docs" / "results" / "paper-cpu"
TARGET = "hse_gap"


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return pd.read_csv(STUDY / "tables" / "metrics.csv")


def _run(study: pd.DataFrame) -> pd.DataFrame:
    """A backbone run: the study's descriptor SVR records (the split check) and two 'backbone' modes."""
    hse = study[study["target"].eq(TARGET)]
    svr = hse[hse["mode"].eq("svr")]
    fake = []
    for mode, name in (("ef_ridge", "chgnet_ridge"), ("eg_ridge", "chgnet_rf")):
        fake.append(hse[hse["mode"].eq(mode)].assign(mode=name, backbone="chgnet-0.3.0", pretrained="chgnet"))
    return pd.concat([svr, *fake], ignore_index=True)


def test_the_split_check_accepts_the_same_cells_and_names_a_changed_one(study):
    run = _run(study)
    checked = B.check_same_cells(run, study)
    assert checked["same"].all() and len(checked) == int(study.query("target == @TARGET and mode == 'svr'").shape[0])

    bad = run.copy()
    i = bad.index[(bad["mode"] == "svr") & (bad["size"].astype(str) == "200") & (bad["seed"] == 3)][0]
    bad.loc[i, "mae"] = bad.loc[i, "mae"] * (1 + 1e-2)
    with pytest.raises(B.ComparisonError, match=r"hse_gap n=200 svr seed 3: .*test MAE"):
        B.check_same_cells(bad, study)
    other_table = run.assign(data_sha256="0" * 64)
    with pytest.raises(B.ComparisonError, match="table sha256"):
        B.check_same_cells(other_table, study)
    # a size with backbone records but no shared record proves nothing: refused
    no_check = run[~((run["mode"] == "svr") & (run["size"].astype(str) == "50"))]
    with pytest.raises(B.ComparisonError, match=r"hse_gap n=50: no record shared"):
        B.check_same_cells(no_check, study)


def _mean(df: pd.DataFrame, col: str) -> float:
    return float(df[col].astype(float).mean())


def test_compare_chooses_on_validation_and_tests_paired_by_seed(study):
    run = _run(study)
    cells = B.split_cells(run, study)
    tests = B.compare(cells)
    hse = study[study["target"].eq(TARGET)].assign(size=lambda d: d["size"].astype(str))
    for size in ("50", "500", "2000"):
        rows = tests[tests["size"].eq(size)].set_index("versus")
        assert set(rows.index) == set(B.OPPONENTS)
        # the backbone's mode: lowest mean validation MAE of its two modes
        val = {
            m: _mean(hse[hse["mode"].eq(o) & hse["size"].eq(size)], "best_val_mae")
            for o, m in (("ef_ridge", "chgnet_ridge"), ("eg_ridge", "chgnet_rf"))
        }
        assert rows["backbone_mode"].iloc[0] == min(val, key=val.get)
        mine = run[run["mode"].eq(min(val, key=val.get)) & run["size"].astype(str).eq(size)].set_index("seed")["mae"]
        # hindsight opponent: the CGCNN transfer mode with the lowest mean test MAE
        tl = hse[hse["family"].eq("transfer") & hse["size"].eq(size)]
        best = tl.groupby("mode")["mae"].mean().idxmin()
        assert rows.loc["cgcnn_transfer_best", "versus_mode"] == best
        # the chosen-on-validation opponent never has a lower test MAE than the hindsight one
        assert rows.loc["cgcnn_transfer", "mae_versus"] >= rows.loc["cgcnn_transfer_best", "mae_versus"]
        # p against scratch is the paired t-test of the same seeds
        scratch = hse[hse["mode"].eq("scratch") & hse["size"].eq(size)].set_index("seed")["mae"]
        seeds = sorted(set(mine.index) & set(scratch.index))
        t = sstats.ttest_rel(mine.loc[seeds], scratch.loc[seeds])
        assert rows.loc["scratch", "p_value"] == pytest.approx(t.pvalue, rel=1e-12)
        assert rows.loc["scratch", "n_pairs"] == len(seeds) == (10 if size != "2000" else 5)
        assert rows.loc["scratch", "mean_diff"] == pytest.approx(float((mine.loc[seeds] - scratch.loc[seeds]).mean()))
    # one Holm family over every test: adjusted >= raw, the family size is the number of tests
    assert (tests["p_holm"] >= tests["p_value"] - 1e-15).all() and (tests["q_bh"] <= tests["p_holm"] + 1e-15).all()
    assert set(tests["holm_family"]) == {B.FAMILY} and (tests["family_size"] == len(tests)).all()
    smallest = tests["p_value"].idxmin()
    assert tests.loc[smallest, "p_holm"] == pytest.approx(min(1.0, tests.loc[smallest, "p_value"] * len(tests)))
    for r in tests.itertuples():
        want = (
            "no significant difference"
            if r.p_holm >= 0.05
            else ("backbone better" if r.mean_diff < 0 else "backbone worse")
        )
        assert r.verdict == want


def test_the_figure_passes_the_quality_guard(study, tmp_path):
    cells = B.split_cells(_run(study), study)
    png = tmp_path / "curves.png"
    B.draw(cells, png)
    quality.check_png(png, "backbone_learning_curves")
    pts = B.curve_points(cells)
    assert set(pts["series"]) == set(B.SERIES_STYLE) and len(pts) == 4 * 6


PUBLISHED = ROOT / "docs" / "results" / "backbones-cpu"


def test_the_published_comparison_recomputes_from_the_committed_records(study):
    """docs/results/backbones-cpu: its records pair with the study's (the split check passes),
    comparison.csv is what compare() gives on them, and the results page shows that CSV."""
    run = pd.read_csv(PUBLISHED / "tables" / "metrics.csv")
    checked = B.check_same_cells(run, study)
    assert checked["same"].all() and set(checked["mode"]) == {"svr"}
    fresh = B.compare(B.split_cells(run, study))
    pub = B.read_comparison(PUBLISHED)
    assert list(pub["versus"]) == list(fresh["versus"]) and list(pub["size"]) == list(fresh["size"].astype(str))
    assert list(pub["backbone_mode"]) == list(fresh["backbone_mode"]) and list(pub["verdict"]) == list(fresh["verdict"])
    for col in ("mae_backbone", "mae_versus", "mean_diff", "p_value", "p_holm", "q_bh"):
        assert np.allclose(pub[col].to_numpy(float), fresh[col].to_numpy(float), rtol=1e-9, equal_nan=True), col
    # the four targets, every size of the study, ten seeds up to n = 500 and five above
    assert set(pub["target"]) == {"log_kvrh", "hse_gap", "gllbsc_gap", "gap_nonmetal"}
    assert (pub[pub["size"].astype(int) <= 500]["n_pairs"] == 10).all()
    assert (pub[pub["size"].astype(int) > 500]["n_pairs"] == 5).all()
    assert B.check_page(PUBLISHED, ROOT / "docs" / "results.md") == []
    # traceable: the runs' code versions, config and data hashes, the backbone, the study it pairs with
    prov = json.loads((PUBLISHED / "provenance.json").read_text())
    assert prov["run"]["git_commits"] == sorted(set(run["git_commit"].dropna().astype(str)))
    assert prov["run"]["records"] == len(run) and prov["study"]["folder"] == "paper-cpu"
    assert prov["backbone"]["backbone"] == "chgnet-0.3.0"
    assert (PUBLISHED / "figures" / "backbone_learning_curves.png").is_file()


SEVENNET = ROOT / "docs" / "results" / "backbones-sevennet-cpu"


@pytest.mark.skipif(not (SEVENNET / "tables" / "metrics.csv").is_file(), reason="backbones-sevennet-cpu not published")
def test_the_published_sevennet_comparison_recomputes_from_the_committed_records(study):
    run = pd.read_csv(SEVENNET / "tables" / "metrics.csv")
    assert B.check_same_cells(run, study)["same"].all()
    fresh = B.compare(B.split_cells(run, study))
    pub = B.read_comparison(SEVENNET)
    assert list(pub["verdict"]) == list(fresh["verdict"]) and set(pub["backbone"]) == {"sevennet-0"}
    assert np.allclose(pub["p_holm"].to_numpy(float), fresh["p_holm"].to_numpy(float), rtol=1e-9)
    assert B.check_page(SEVENNET, ROOT / "docs" / "results.md") == []
    assert B.check_page(PUBLISHED, ROOT / "docs" / "results.md") == []
