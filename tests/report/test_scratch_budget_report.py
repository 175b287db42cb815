"""tlcgcnn.report.scratch_budget: the study's transfer against scratch chosen on validation
among several training protocols, paired seed by seed.

The study's side is the committed ``docs/results/paper-cpu/tables/metrics.csv`` (real runs).
The run's extra "scratch protocol" of these tests is the study's real attention-model scratch
records relabelled, so every number tested is a real test MAE whose right answer the test
computes on its own."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats as sstats

from tlcgcnn.report import scratch_budget as S
from tlcgcnn.report.backbones import check_same_cells

STUDY = ROOT / "docs" / "results" / "paper-cpu"
TARGET = "log_kvrh"


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return pd.read_csv(STUDY / "tables" / "metrics.csv")


def _run(study: pd.DataFrame) -> pd.DataFrame:
    cell = study[study["target"].eq(TARGET) & study["size"].astype(str).isin(["50", "100"])]
    other = cell[cell["mode"].eq("attention")].assign(mode="scratch_alt")
    return pd.concat([cell[cell["mode"].eq("svr")], other], ignore_index=True)


def test_scratch_is_chosen_on_validation_and_the_transfer_tested_against_both(study):
    run = _run(study)
    assert check_same_cells(run, study, new=S.is_scratch)["same"].all()
    tests = S.compare(run, study)
    assert len(tests) == 4 and set(tests["versus"]) == set(S.OPPONENTS)
    cells = study[study["target"].eq(TARGET)].assign(size=lambda d: d["size"].astype(str))
    for size in ("50", "100"):
        c = cells[cells["size"].eq(size)]
        val = {
            m: c[c["mode"].eq(real)]["best_val_mae"].mean()
            for m, real in (("scratch", "scratch"), ("scratch_alt", "attention"))
        }
        rows = tests[tests["size"].eq(size)].set_index("versus")
        assert rows.loc["scratch_tuned", "scratch_mode"] == min(val, key=val.get)
        assert rows.loc["scratch", "scratch_mode"] == "scratch"
        tl = c[c["family"].eq("transfer") & ~c["features"].isin(["zero_shot", "recalibrated", "delta"])]
        tl_mode = tl.groupby("mode")["best_val_mae"].mean().idxmin()
        assert (rows["transfer_mode"] == tl_mode).all()
        mine = c[c["mode"].eq(tl_mode)].set_index("seed")["mae"]
        real = "scratch" if min(val, key=val.get) == "scratch" else "attention"
        theirs = c[c["mode"].eq(real)].set_index("seed")["mae"]
        seeds = sorted(set(mine.index) & set(theirs.index))
        assert rows.loc["scratch_tuned", "p_value"] == pytest.approx(
            sstats.ttest_rel(mine.loc[seeds], theirs.loc[seeds]).pvalue, rel=1e-12
        )
    assert (tests["p_holm"] >= tests["p_value"] - 1e-15).all() and set(tests["holm_family"]) == {S.FAMILY}
    protocols = S.protocol_table(S.scratch_candidates(run, study))
    assert protocols.groupby(["target", "size"])["chosen"].sum().eq(1).all()


def test_publish_writes_the_folder_and_the_page_block(study, tmp_path):
    metrics = tmp_path / "metrics.csv"
    _run(study).to_csv(metrics, index=False)
    page = tmp_path / "results.md"
    page.write_text(f"x\n{S.PAGE_BEGIN}\n{S.PAGE_END}\ny\n")
    out = tmp_path / "out"
    assert S.main([str(metrics), str(STUDY), str(out), "--page", str(page)]) == 0
    assert S.check_page(out, page) == [] and "| log_kvrh | 50 |" in page.read_text()
    assert json.loads((out / "provenance.json").read_text())["comparison"]["family"] == S.FAMILY
    assert (out / "tables" / "scratch_protocols.csv").is_file() and (out / "summary.md").is_file()


PUBLISHED = ROOT / "docs" / "results" / "scratch-protocol-cpu"


@pytest.mark.skipif(not (PUBLISHED / "tables" / "metrics.csv").is_file(), reason="not published")
def test_the_published_comparison_recomputes_from_the_committed_records(study):
    run = pd.read_csv(PUBLISHED / "tables" / "metrics.csv")
    assert check_same_cells(run, study, new=S.is_scratch)["same"].all()
    fresh = S.compare(run, study)
    pub = pd.read_csv(PUBLISHED / "tables" / "comparison.csv", dtype={"size": str})
    for col in ("target", "versus", "scratch_mode", "transfer_mode", "verdict"):
        assert list(pub[col]) == list(fresh[col]), col
    for col in ("mae_transfer", "mae_scratch", "p_value", "p_holm"):
        assert pub[col].to_numpy(float) == pytest.approx(fresh[col].to_numpy(float), rel=1e-9), col
    assert S.check_page(PUBLISHED, ROOT / "docs" / "results.md") == []
