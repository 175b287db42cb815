"""tlcgcnn.report.controls: the study's transfer against zero-shot, recalibrated and Δ-learning
controls of its source, paired seed by seed.

The study's side is the committed ``docs/results/paper-cpu/tables/metrics.csv`` (real runs).
The "control" records of these tests are real records of that study (the descriptor RF and
LASSO on the HSE gap) relabelled as controls of the Eg source, so every number they are tested
on is a real test MAE whose right answer the test computes on its own."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats as sstats

from tlcgcnn.report import controls as K
from tlcgcnn.report.backbones import ComparisonError, check_same_cells, read_comparison
from tlcgcnn.report.figures import quality

STUDY = ROOT / "docs" / "results" / "paper-cpu"
TARGET = "hse_gap"
FAKE = {"rf": ("eg_recalibrated", "recalibrated"), "lasso": ("eg_zero_shot", "zero_shot")}


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return pd.read_csv(STUDY / "tables" / "metrics.csv")


def _run(study: pd.DataFrame) -> pd.DataFrame:
    """A controls run: the study's descriptor SVR (the split check) and two 'control' modes."""
    hse = study[study["target"].eq(TARGET)]
    fake = [
        hse[hse["mode"].eq(real)].assign(mode=mode, features=features, pretrained="zoo_eg", family="transfer")
        for real, (mode, features) in FAKE.items()
    ]
    return pd.concat([hse[hse["mode"].eq("svr")], *fake], ignore_index=True)


def test_the_split_check_sees_the_controls_as_the_new_records(study):
    run = _run(study)
    checked = check_same_cells(run, study, new=K.is_control)
    assert set(checked["mode"]) == {"svr"} and checked["same"].all()
    with pytest.raises(ComparisonError, match="nothing proves that their splits are the same"):
        check_same_cells(run[run["mode"].ne("svr")], study, new=K.is_control)


def test_each_control_is_tested_against_the_sources_transfer_chosen_on_validation(study):
    run = _run(study)
    tests = K.compare(run, study)
    hse = study[study["target"].eq(TARGET)].assign(size=lambda d: d["size"].astype(str))
    assert len(tests) == 2 * hse["size"].nunique()
    for size in ("50", "500", "2000"):
        rows = tests[tests["size"].eq(size)].set_index("control")
        assert list(rows.index) == ["zero_shot", "recalibrated"]  # CONTROLS' order
        # the transfer: among the study's zoo_eg modes (fine-tuned and frozen), lowest mean validation MAE
        cell = hse[hse["size"].eq(size) & hse["pretrained"].eq("zoo_eg") & hse["family"].eq("transfer")]
        val = cell.groupby("mode")["best_val_mae"].mean()
        assert set(val.index) >= {"eg_ft", "eg_head", "eg_ridge"}
        assert (rows["transfer_mode"] == val.idxmin()).all()
        tl = cell[cell["mode"].eq(val.idxmin())].set_index("seed")["mae"]
        for real, (mode, features) in FAKE.items():
            ctl = hse[hse["mode"].eq(real) & hse["size"].eq(size)].set_index("seed")["mae"]
            seeds = sorted(set(tl.index) & set(ctl.index))
            r = rows.loc[features]
            assert r["control_mode"] == mode and r["n_pairs"] == len(seeds) == (10 if size != "2000" else 5)
            assert r["p_value"] == pytest.approx(sstats.ttest_rel(tl.loc[seeds], ctl.loc[seeds]).pvalue, rel=1e-12)
            assert r["mean_diff"] == pytest.approx(float((tl.loc[seeds] - ctl.loc[seeds]).mean()), rel=1e-12)
            epochs = cell[cell["mode"].eq(val.idxmin())]["best_epoch"]
            assert r["transfer_best_epoch"] == (
                pytest.approx(float(epochs.median()))
                if epochs.notna().any()
                else pytest.approx(float("nan"), nan_ok=True)
            )
        scratch = hse[hse["mode"].eq("scratch") & hse["size"].eq(size)]["mae"].mean()
        assert rows["mae_scratch"].iloc[0] == pytest.approx(scratch)
    assert (tests["p_holm"] >= tests["p_value"] - 1e-15).all() and (tests["family_size"] == len(tests)).all()
    assert set(tests["holm_family"]) == {K.FAMILY}
    for r in tests.itertuples():
        want = (
            "no significant difference"
            if r.p_holm >= 0.05
            else ("transfer better" if r.mean_diff < 0 else "control better")
        )
        assert r.verdict == want


def test_a_control_without_a_transfer_of_its_source_is_named(study):
    run = _run(study).assign(pretrained="nowhere")
    with pytest.raises(ComparisonError, match="hse_gap n=50: the study has no transfer from nowhere"):
        K.compare(run, study)


def test_publish_writes_the_folder_and_the_page_block(study, tmp_path):
    metrics = tmp_path / "metrics.csv"
    _run(study).to_csv(metrics, index=False)
    out = tmp_path / "controls"
    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\n{K.PAGE_BEGIN}\nold\n{K.PAGE_END}\n\nafter\n")
    assert K.main([str(metrics), str(STUDY), str(out), "--page", str(page)]) == 0
    for name in ("summary.md", "provenance.json", "tables/comparison.csv", "tables/same_cells.csv"):
        assert (out / name).is_file(), name
    quality.check_png(out / "figures" / "controls.png", "controls")
    text = page.read_text()
    assert "old" not in text and text.endswith("after\n") and "| hse_gap | 50 |" in text
    assert K.check_page(out, page) == []
    page.write_text(text.replace("| hse_gap | 50 |", "| hse_gap | 51 |"))
    assert K.check_page(out, page) != []
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["comparison"]["family"] == K.FAMILY and prov["study"]["folder"] == "paper-cpu"


PUBLISHED = ROOT / "docs" / "results" / "controls-cpu"


@pytest.mark.skipif(
    not (PUBLISHED / "tables" / "metrics.csv").is_file(), reason="docs/results/controls-cpu not published"
)
def test_the_published_comparison_recomputes_from_the_committed_records(study):
    """docs/results/controls-cpu: its records pair with the study's (the split check passes),
    comparison.csv is what compare() gives on them, and the results page shows that CSV."""
    run = pd.read_csv(PUBLISHED / "tables" / "metrics.csv")
    checked = check_same_cells(run, study, new=K.is_control)
    assert checked["same"].all() and set(checked["mode"]) == {"svr"}
    fresh = K.compare(run, study)
    pub = read_comparison(PUBLISHED)
    for col in ("target", "control", "transfer_mode", "verdict"):
        assert list(pub[col]) == list(fresh[col]), col
    for col in ("mae_transfer", "mae_control", "mean_diff", "p_value", "p_holm", "q_bh"):
        assert pub[col].to_numpy(float) == pytest.approx(fresh[col].to_numpy(float), rel=1e-9, nan_ok=True), col
    assert set(pub["target"]) == {"hse_gap", "gllbsc_gap", "ef_nm"} and set(pub["control"]) == set(K.CONTROLS)
    assert (pub[pub["size"].astype(int) < 1000]["n_pairs"] == 10).all()
    assert K.check_page(PUBLISHED, ROOT / "docs" / "results.md") == []
    prov = json.loads((PUBLISHED / "provenance.json").read_text())
    assert prov["run"]["records"] == len(run) and prov["run"]["git_commits"]
