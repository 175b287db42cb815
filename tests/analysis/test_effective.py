"""tlcgcnn.analysis.effective and tlcgcnn.report.effective: how many scratch crystals a source is worth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from tlcgcnn.analysis.effective import by_source, crossing, effective_data, extrapolated
from tlcgcnn.report import effective as report

STUDY = ROOT / "docs" / "results" / "paper-cpu"
PAGE = ROOT / "docs" / "results.md"


def test_effective_data_inverts_the_scratch_curve():
    sizes = [50, 100, 200, 500, 1000]
    rng = np.random.default_rng(1)
    # scratch error = 1 / sqrt(n) exactly at every seed: a power law, so log-log interpolation is exact
    ref = pd.DataFrame([{"size": str(n), "seed": s, "error": 1 / math.sqrt(n)} for n in sizes for s in range(5)])
    src = pd.DataFrame(
        [{"size": "100", "seed": s, "mode": "m", "error": 1 / math.sqrt(400)} for s in range(5)]
        + [
            {"size": "500", "seed": s, "mode": "m", "error": 0.5 / math.sqrt(1000) + rng.normal(0, 1e-6)}
            for s in range(5)
        ]
        + [{"size": "50", "seed": s, "mode": "m", "error": 2.0} for s in range(5)]
    )
    eff = effective_data(ref, src, n_boot=200).set_index("size")
    assert eff.loc["100", "n_effective"] == pytest.approx(400.0, rel=1e-9)
    assert eff.loc["100", "multiplier"] == pytest.approx(4.0, rel=1e-9) and eff.loc["100", "bound"] == ""
    assert eff.loc["100", "n_effective_low"] == pytest.approx(400.0, rel=1e-9)  # no spread: a point interval
    assert eff.loc["500", "bound"] == "≥" and eff.loc["500", "n_effective"] == 1000.0
    assert eff.loc["50", "bound"] == "≤" and eff.loc["50", "n_effective"] == 50.0
    # beyond the largest size: a power law through the last three points is recovered exactly
    assert extrapolated(np.array([200.0, 500, 1000]), 1 / np.sqrt([200.0, 500, 1000]), 1 / math.sqrt(4000)) == (
        pytest.approx(4000.0, rel=1e-9)
    )
    assert eff.loc["500", "n_effective_extrapolated"] == pytest.approx(4000.0, rel=1e-3)


def test_a_non_monotone_scratch_curve_is_made_monotone():
    # scratch got worse from 200 to 500 (noise): the curve counts 500 as good as 200
    sizes = np.array([100.0, 200, 500, 1000])
    curve = np.array([1.0, 0.5, 0.6, 0.25])
    assert crossing(sizes, curve, 0.5)[0] == pytest.approx(200.0)
    n, bound = crossing(sizes, curve, 0.4)  # between the flat 0.5 (at 500) and 0.25 (at 1000)
    assert bound == "" and 500 < n < 1000
    assert n == pytest.approx(math.exp(math.log(500) + math.log(0.4 / 0.5) / math.log(0.25 / 0.5) * math.log(2)))


def test_the_published_table_and_page_agree_with_the_study_runs():
    # the committed CSV's point estimates recomputed from the committed metrics, the page's table from the CSV
    assert report.check(STUDY, PAGE) == []
    eff = pd.read_csv(STUDY / report.CSV, keep_default_na=False, na_values=[""])
    # Eg -> HSE gap at n = 50 beats scratch trained on every size measured (2,000): a bound, not a number
    row = eff[(eff["target"] == "hse_gap") & (eff["source"] == "zoo_eg") & (eff["size"].astype(str) == "50")].iloc[0]
    assert row["bound"] == "≥" and row["multiplier"] == pytest.approx(40.0)
    # every multiplier's interval holds it; a source chosen per size on validation
    ok = eff[eff["bound"].isna()]
    assert (ok["multiplier_low"] <= ok["multiplier"] + 1e-12).all() and (
        ok["multiplier"] <= ok["multiplier_high"] + 1e-12
    ).all()


def test_by_source_uses_the_validation_choice():
    m = pd.read_csv(STUDY / "tables" / "metrics.csv")
    cell = m[(m["target"] == "log_kvrh") & (m["size"].astype(str) == "100") & (m["pretrained"] == "zoo_ef")]
    val = cell.groupby("mode")["best_val_mae"].mean()
    eff = by_source(m[m["target"] == "log_kvrh"], n_boot=1)
    row = eff[(eff["source"] == "zoo_ef") & (eff["size"] == "100")].iloc[0]
    assert row["mode"] == val.idxmin()
    assert row["mae"] == pytest.approx(cell[cell["mode"] == val.idxmin()]["mae"].mean())
