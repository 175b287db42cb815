"""tlcgcnn.report.nm_source: a source pretrained on non-metals only against the all-materials
source of the same property (fine-tuned the same way) and scratch, paired seed by seed (T6).

The study's side is the committed ``docs/results/paper-cpu/tables/metrics.csv`` (real runs); the
"run" of these tests is that study's own non-metal-source records on the HSE gap (efnm_head) with
its descriptor SVR, so every number tested is a real test MAE whose right answer the test
computes on its own."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats as sstats

from tlcgcnn.report import nm_source as N
from tlcgcnn.report.backbones import ComparisonError, check_same_cells

STUDY = ROOT / "docs" / "results" / "paper-cpu"
TARGET = "hse_gap"
SIZES = ["50", "100"]


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return pd.read_csv(STUDY / "tables" / "metrics.csv")


def _run(study: pd.DataFrame) -> pd.DataFrame:
    cell = study[study["target"].eq(TARGET) & study["size"].astype(str).isin(SIZES)]
    return cell[cell["mode"].isin(["svr", "efnm_head"])].reset_index(drop=True)


def test_the_non_metal_source_is_paired_with_the_all_materials_one_fine_tuned_the_same_way(study):
    run = _run(study)
    assert check_same_cells(run, study, new=N.is_subset_source)["same"].all()
    tests = N.compare(run, study)
    assert len(tests) == 2 * len(SIZES) and list(tests["versus"][:2]) == list(N.OPPONENTS)
    rows = tests.set_index(["size", "versus"])
    for size in SIZES:
        assert rows.loc[(size, "all_source"), "versus_mode"] == "ef_head"  # head re-initialised, like efnm_head
        assert rows.loc[(size, "all_source"), "versus_pretrain_size"] == 28525
        c = study[study["target"].eq(TARGET) & study["size"].astype(str).eq(size)]
        mine = c[c["mode"].eq("efnm_head")].set_index("seed")["mae"]
        for versus, mode in (("all_source", "ef_head"), ("scratch", "scratch")):
            theirs = c[c["mode"].eq(mode)].set_index("seed")["mae"]
            r = rows.loc[(size, versus)]
            assert r["mean_diff"] == pytest.approx((mine - theirs).mean(), rel=1e-12)
            assert r["p_value"] == pytest.approx(sstats.ttest_rel(mine, theirs).pvalue, rel=1e-12)
    assert (tests["p_holm"] >= tests["p_value"] - 1e-15).all() and set(tests["family_size"]) == {4}


def test_the_sources_zero_shot_control_is_shown_not_paired(study):
    """A zero-shot record of the non-metal source (here the study's efnm_head rows relabelled as
    one) is a control: it gets no test of its own, its mean MAE stands beside the cell's tests."""
    run = _run(study)
    zero = run[run["mode"].eq("efnm_head")].assign(mode="efnm_zero_shot", features="zero_shot", mae=1.5, error=1.5)
    tests = N.compare(pd.concat([run, zero], ignore_index=True), study)
    assert set(tests["mode"]) == {"efnm_head"} and len(tests) == 2 * len(SIZES)
    assert (tests["mae_zero_shot"] == 1.5).all()
    assert "| 1.5 |" in N.page_block(tests) and "| – |" in N.page_block(N.compare(run, study))


def test_a_source_without_an_all_materials_counterpart_is_refused(study):
    run = _run(study)
    with pytest.raises(ComparisonError, match="no transfer from an all-materials"):
        N.compare(run.assign(reinit="unfrozen"), study)
    with pytest.raises(ComparisonError, match="no transfer record from a source pretrained on the nonmetals"):
        N.compare(run[run["mode"].eq("svr")], study)


def test_publish_writes_the_folder_the_figure_and_the_page_block(study, tmp_path):
    metrics = tmp_path / "metrics.csv"
    _run(study).to_csv(metrics, index=False)
    page = tmp_path / "results.md"
    page.write_text(f"x\n{N.PAGE_BEGIN}\n{N.PAGE_END}\ny\n")
    out = tmp_path / "out"
    assert N.main([str(metrics), str(STUDY), str(out), "--page", str(page)]) == 0
    assert N.check_page(out, page) == [] and "| hse_gap | 50 | 10 |" in page.read_text()
    assert json.loads((out / "provenance.json").read_text())["comparison"]["family"] == N.FAMILY
    assert (out / "figures" / "nm_source.png").is_file() and "28,525" in (out / "summary.md").read_text()
    page.write_text(page.read_text().replace("| hse_gap | 50 | 10 |", "| hse_gap | 50 | 9 |"))
    assert N.check_page(out, page) != []


PUBLISHED = ROOT / "docs" / "results" / "nm-source-cpu"


@pytest.mark.skipif(not (PUBLISHED / "tables" / "metrics.csv").is_file(), reason="not published")
def test_the_published_comparison_recomputes_from_the_committed_records(study):
    run = pd.read_csv(PUBLISHED / "tables" / "metrics.csv")
    assert check_same_cells(run, study, new=N.is_subset_source)["same"].all()
    fresh = N.compare(run, study)
    pub = pd.read_csv(PUBLISHED / "tables" / "comparison.csv", dtype={"size": str})
    for col in ("target", "mode", "versus", "versus_mode", "verdict"):
        assert list(pub[col]) == list(fresh[col]), col
    for col in ("mae_nonmetal", "mae_versus", "p_value", "p_holm"):
        assert pub[col].to_numpy(float) == pytest.approx(fresh[col].to_numpy(float), rel=1e-9), col
    assert N.check_page(PUBLISHED, ROOT / "docs" / "results.md") == []
    keep, fresh_keep = N.read_keep(PUBLISHED), N.keep_source_tests(run, study)
    assert keep is not None and list(keep["verdict"]) == list(fresh_keep["verdict"])
    assert keep["mae_kept"].to_numpy(float) == pytest.approx(fresh_keep["mae_kept"].to_numpy(float), rel=1e-9)


def _kept_run(study: pd.DataFrame) -> pd.DataFrame:
    """A run with a validate_source mode: the study's ef_nm ef_ft records (the all-materials
    source) relabelled as ef_refine with another error, seeds 0-3 marked as kept unchanged, and a
    zero-shot control of the same source at 0.038 eV/atom; the descriptor SVR for the check."""
    cell = study[study["target"].eq("ef_nm") & study["size"].astype(str).isin(["50", "200"])]
    svr = cell[cell["mode"].eq("svr")]
    ft = cell[cell["mode"].eq("ef_ft")]
    mae = 0.9 * ft["mae"] + 0.002 * ft["seed"]
    kept = ft.assign(
        mode="ef_refine", validate_source=True, mae=mae, error=mae, best_epoch=[-1 if s < 4 else 3 for s in ft["seed"]]
    )
    zero = ft.assign(mode="ef_zero_shot", features="zero_shot", mae=0.038, error=0.038, best_epoch=float("nan"))
    return pd.concat([svr, kept, zero], ignore_index=True)


def test_a_kept_source_is_tested_against_its_plain_fine_tuning_and_its_own_prediction(study):
    run = _kept_run(study)
    keep = N.keep_source_tests(run, study)
    assert len(keep) == 4 and set(keep["versus"]) == set(N.KEEP_OPPONENTS) and set(keep["family_size"]) == {4}
    rows = keep.set_index(["size", "versus"])
    for size in ("50", "200"):
        c = study[study["target"].eq("ef_nm") & study["size"].astype(str).eq(size)]
        plain = c[c["mode"].eq("ef_ft")].set_index("seed")["mae"]
        mine = 0.9 * plain + 0.002 * plain.index.to_series()
        r = rows.loc[(size, "fine_tuned")]
        assert r["versus_mode"] == "ef_ft" and r["source"] == "zoo_ef" and r["kept_seeds"] == 4
        assert r["mean_diff"] == pytest.approx((mine - plain).mean(), rel=1e-12)
        assert r["p_value"] == pytest.approx(sstats.ttest_rel(mine, plain).pvalue, rel=1e-12)
        z = rows.loc[(size, "zero_shot")]
        assert z["versus_mode"] == "ef_zero_shot" and z["mae_versus"] == pytest.approx(0.038)
        assert z["p_value"] == pytest.approx(sstats.ttest_1samp(mine - 0.038, 0.0).pvalue, rel=1e-9)
    assert (keep["p_holm"] >= keep["p_value"] - 1e-15).all()
    # T6's family does not take the kept mode, and a run without one has no second family
    assert N.keep_source_tests(run[~N.is_kept(run)], study).empty
    with pytest.raises(ComparisonError, match="no zero_shot mode of the same source"):
        N.keep_source_tests(run[~run["mode"].eq("ef_zero_shot")], study)


def test_the_keep_source_block_is_written_and_checked(study, tmp_path):
    run = pd.concat([_run(study), _kept_run(study)], ignore_index=True)
    metrics = tmp_path / "metrics.csv"
    run.to_csv(metrics, index=False)
    page = tmp_path / "results.md"
    page.write_text(f"x\n{N.PAGE_BEGIN}\n{N.PAGE_END}\n{N.KEEP_BEGIN}\n{N.KEEP_END}\ny\n")
    out = tmp_path / "out"
    assert N.main([str(metrics), str(STUDY), str(out), "--page", str(page)]) == 0
    assert set(pd.read_csv(out / "tables" / "comparison.csv")["mode"]) == {"efnm_head"}
    assert len(pd.read_csv(out / "tables" / N.KEEP_TABLE)) == 4
    text = page.read_text()
    assert "| zoo_ef (all, 28,525) | ef_nm | 50 | 10 | " in text and "(ef_refine, 4 of 10)" in text
    assert N.check_page(out, page) == [] and "## Keeping the source" in (out / "summary.md").read_text()
    assert "One Holm family (`keep_source`, 4 tests)" in (out / "summary.md").read_text()
    assert (out / "figures" / "keep_source.png").is_file()
    page.write_text(text.replace("(ef_refine, 4 of 10)", "(ef_refine, 5 of 10)"))
    assert any("keep-source" in p for p in N.check_page(out, page))
