"""The papers' claims in the papers' own terms (tlcgcnn.report.paper_claims, issue 28): verdicts,
the one claims family (Holm and Benjamini-Hochberg), paired / trend / multi-task / correlation
estimates with their confidence intervals, the results page's table against claims_papers.csv, and
the committed numbers against the reference compilation of the papers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from scipy import stats as sstats

from tlcgcnn.analysis.stats import benjamini_hochberg, holm_within_families
from tlcgcnn.report.claims import ReportError
from tlcgcnn.report.paper_claims import (
    BEGIN,
    CSV_NAME,
    END,
    VERDICTS,
    build_paper_claims,
    check_papers,
    count_sentence,
    load_declared,
    paper_verdict,
    read_paper_claims,
    read_tables,
    rewrite_papers,
)
from tlcgcnn.utils import fileio as io

DECLARED = ROOT / "config" / "claims" / "paper-cpu.yaml"
PAGE = ROOT / "docs" / "results.md"
PUBLISHED = ROOT / "docs" / "results" / "paper-cpu"
REFERENCE = Path(os.environ.get("TLCGCNN_PAPERS_REFERENCE", ROOT.parent / "shared" / "reference" / "papers.md"))


# --------------------------------------------------------------------------- verdicts and families
@pytest.mark.parametrize(
    ("estimate", "p_holm", "expect", "verdict"),
    [
        (-1.0, 0.01, "lower", "reproduced"),
        (-1.0, 0.20, "lower", "not reproduced"),
        (1.0, 0.01, "lower", "contradicted"),
        (1.0, 0.01, "higher", "reproduced"),
        (-1.0, 0.01, "higher", "contradicted"),
        (-1.0, 0.20, "not lower", "reproduced"),  # the paper finds no gain: ours, a gain not significant, agrees
        (1.0, 0.01, "not lower", "reproduced"),
        (-1.0, 0.01, "not lower", "contradicted"),
        (1.0, 0.20, "no difference", "reproduced"),
        (1.0, 0.01, "no difference", "contradicted"),
        (-1.0, float("nan"), "lower", "not tested"),
    ],
)
def test_verdicts_in_the_papers_terms(estimate, p_holm, expect, verdict):
    assert paper_verdict(estimate, p_holm, expect) == verdict


def test_the_verdict_vocabulary_is_exactly_four_words():
    assert VERDICTS == ("reproduced", "not reproduced", "contradicted", "not tested")
    with pytest.raises(ReportError, match="expect 'better'"):
        paper_verdict(-1.0, 0.01, "better")
    assert set(read_paper_claims(PUBLISHED / CSV_NAME)["verdict"]) <= set(VERDICTS)


def test_benjamini_hochberg_q_values():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    np.testing.assert_allclose(q[:4], [0.02, 0.04, 0.04, 0.02])
    assert np.isnan(q[4])


def test_holm_counts_a_repeated_test_once():
    row = {"size": 100, "mode": "ef_head", "baseline": "scratch", "n_pairs": 10, "mae_baseline": 1.0}
    tests = pd.DataFrame(
        [
            {**row, "target": "a", "mae_mode": 0.9, "p_value": 0.01, "holm_family": "f"},
            {**row, "target": "a_copy", "mae_mode": 0.9, "p_value": 0.01, "holm_family": "f"},
            {**row, "target": "a", "mode": "eg_ft", "mae_mode": 0.8, "p_value": 0.02, "holm_family": "f"},
        ]
    )
    np.testing.assert_allclose(holm_within_families(tests), [0.02, 0.02, 0.02])  # m = 2, not 3


# --------------------------------------------------------------------------- a synthetic published folder
SEEDS = range(6)
SIZES = (50, 100, 200, 500)
NOISE = np.array([0.010, -0.008, 0.004, -0.006, 0.002, -0.002])


def _folder(tmp_path: Path) -> Path:
    """tables/ of a published folder: scratch on a learning curve of slope -(0.3 + 0.01 seed), a
    transfer mode ``tl`` whose gain shrinks with n by 4 pp per decade on average over the seeds, a
    ``worse`` mode, a multi-task table and a correlation."""
    rows = []
    for size in SIZES:
        for s in SEEDS:
            scratch = (1.0 + 0.1 * s + NOISE[s]) * (size / 50) ** -(0.3 + 0.01 * s)
            change = -0.30 + (0.04 + 0.001 * (s - 2.5)) * np.log10(size)  # relative change vs scratch
            for mode, err in (
                ("scratch", scratch),
                ("tl", scratch * (1 + change)),
                ("worse", scratch + 0.05 + NOISE[s]),
            ):
                rows.append(
                    {"target": "gap", "size": size, "mode": mode, "seed": s, "error": err, "task": "regression"}
                )
    folder = tmp_path / "pub"
    io.write_csv(pd.DataFrame(rows), folder / "tables" / "metrics.csv")
    t, n = -2.5, 400
    io.write_csv(
        pd.DataFrame(
            [
                {
                    "property": "band_gap",
                    "size": 1000,
                    "mt_source": "mt_1k",
                    "st_source": "eg_1k",
                    "n_test": n,
                    "mae_mt": 0.50,
                    "mae_st": 0.52,
                    "t": t,
                    "p": float(2 * sstats.t.sf(abs(t), n - 1)),
                }
            ]
        ),
        folder / "tables" / "multitask.csv",
    )
    r = {"n": 500, "pearson_r": -0.5, "pearson_ci_low": -0.56, "pearson_ci_high": -0.43, "pearson_p": 1e-30}
    io.write_json(
        folder / "tables" / "ef_eg_correlation.json", {**r, "x": "formation_energy_per_atom", "y": "band_gap"}
    )
    return folder


def _claim(key: str, cid: str, expect: str, test: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "id": cid,
        "paper": "TL-CGCNN",
        "claim": f"claim {key}",
        "paper_number": "figure only",
        "expect": expect,
        "registered": "after the results",
        "setting": f"setting {key}",
        "test": test,
    }


def _declaration(tmp_path: Path) -> Path:
    cell = {"kind": "paired", "target": "gap", "mode": "tl", "versus": "scratch"}
    curve = {"kind": "trend", "target": "gap", "x": "size", "log_x": True}
    claims = [
        _claim("paired", "T4", "lower", {**cell, "size": 100}),
        _claim("strongest", "T9", "lower", {**cell, "size": 200, "versus": "strongest:scratch,worse"}),
        _claim("worse", "B4", "not lower", {**cell, "size": 50, "mode": "worse"}),
        _claim("trend", "T7", "higher", {**curve, "modes": ["tl"], "versus": "scratch", "y": "change"}),
        _claim("curve", "T2", "lower", {**curve, "modes": ["scratch"], "y": "log_error"}),
        _claim("mt", "M1", "lower", {"kind": "multitask", "property": "band_gap", "size": 1000}),
        _claim("r", "T1", "lower", {"kind": "correlation"}),
        _claim("none", "T6", "lower", {"kind": "none", "reason": "not run"}),
    ]
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"family": "papers", "alpha": 0.05, "claims": claims}, allow_unicode=True))
    return path


def test_estimates_intervals_and_one_family(tmp_path):
    folder = _folder(tmp_path)
    df = build_paper_claims(load_declared(_declaration(tmp_path)), read_tables(folder)).set_index("key")
    m = pd.read_csv(folder / "tables" / "metrics.csv")
    cell = m[m["size"] == 100].pivot(index="seed", columns="mode", values="error")
    ref = sstats.ttest_rel(cell["tl"], cell["scratch"])
    r = df.loc["paired"]
    assert r["estimate"] == pytest.approx((cell["tl"] - cell["scratch"]).mean())
    assert (r["ci_low"], r["ci_high"], r["p"]) == pytest.approx(
        (ref.confidence_interval().low, ref.confidence_interval().high, ref.pvalue)
    )
    assert r["change_pct"] == pytest.approx(100 * r["estimate"] / cell["scratch"].mean())
    assert (r["n"], r["n_unit"], r["verdict"]) == (6, "seeds", "reproduced")
    assert df.loc["strongest", "versus"] == "scratch"  # of the two, the lower mean error (`worse` is worse)
    assert df.loc["strongest", "ours_versus"] == pytest.approx(
        m[(m["size"] == 200) & (m["mode"] == "scratch")]["error"].mean()
    )
    assert df.loc["trend", "estimate"] == pytest.approx(4.0)  # pp per decade of n, the seeds' mean slope
    assert df.loc["trend", "ci_low"] < 4.0 < df.loc["trend", "ci_high"] and df.loc["trend", "verdict"] == "reproduced"
    assert df.loc["curve", "estimate"] == pytest.approx(-0.325)  # log10 MAE per decade of n
    mt = df.loc["mt"]
    assert mt["estimate"] == pytest.approx(-0.02) and mt["ci_low"] < -0.02 < mt["ci_high"] < 0
    half = 0.02 / 2.5 * sstats.t.ppf(0.975, 399)  # |diff / t| times the t quantile
    assert (mt["ci_low"], mt["ci_high"], mt["n"]) == pytest.approx((-0.02 - half, -0.02 + half, 400))
    assert (df.loc["r", "estimate"], df.loc["r", "n_unit"]) == (-0.5, "crystals")
    assert df.loc["worse", "verdict"] == "reproduced"  # significantly worse, as a "no gain" paper result allows
    assert df.loc["none", "verdict"] == "not tested" and np.isnan(df.loc["none", "p_holm"])
    tested = df["p"].notna()
    np.testing.assert_allclose(df.loc[tested, "family_size"], tested.sum())
    assert (df.loc[tested, "p_holm"] >= df.loc[tested, "q_bh"]).all() and (
        df.loc[tested, "q_bh"] >= df.loc[tested, "p"]
    ).all()


def test_a_paired_claim_reads_a_companion_folder_that_proves_its_cells(tmp_path):
    """records: a comparison folder beside the study adds the runs of a mode the study lacks (T6's
    non-metal source); its same_cells.csv must prove the cells are the study's, and its re-run
    modes do not replace the study's records."""
    folder = _folder(tmp_path)
    m = pd.read_csv(folder / "tables" / "metrics.csv")
    ran = m[m["mode"].eq("scratch")].copy()
    companion = tmp_path / "nm"
    new = ran.assign(mode="nm", error=ran["error"] * 0.8)
    rerun = ran.assign(error=ran["error"] + 1.0)  # a study mode re-run: must not count
    io.write_csv(pd.concat([new, rerun]), companion / "tables" / "metrics.csv")
    io.write_csv(
        pd.DataFrame({"target": ["gap"], "mode": ["scratch"], "same": [True]}), companion / "tables" / "same_cells.csv"
    )
    claim = _claim(
        "nm",
        "T6",
        "lower",
        {"kind": "paired", "target": "gap", "size": 100, "mode": "nm", "versus": "scratch", "records": "../nm"},
    )
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"family": "papers", "alpha": 0.05, "claims": [claim]}, allow_unicode=True))
    r = build_paper_claims(load_declared(path), read_tables(folder)).iloc[0]
    cell = ran[ran["size"].eq(100)]
    assert r["ours_versus"] == pytest.approx(cell["error"].mean())
    assert r["ours_mode"] == pytest.approx(0.8 * cell["error"].mean())
    assert r["change_pct"] == pytest.approx(-20.0) and r["verdict"] == "reproduced"
    io.write_csv(
        pd.DataFrame({"target": ["gap"], "mode": ["scratch"], "same": [False]}), companion / "tables" / "same_cells.csv"
    )
    with pytest.raises(ReportError, match="does not prove"):
        build_paper_claims(load_declared(path), read_tables(folder))
    (companion / "tables" / "same_cells.csv").unlink()
    with pytest.raises(ReportError, match="same_cells.csv: not found"):
        build_paper_claims(load_declared(path), read_tables(folder))


def test_a_claim_reads_another_study_of_its_own_cells(tmp_path):
    """study: a paired or trend claim reads another published study's runs (the Berkeley report's
    own setting: its own scratch and seeds), not the folder's; a missing study or one combined with
    records is refused."""
    folder = _folder(tmp_path)
    rows = []
    for s in SEEDS:
        base = 0.8 + NOISE[s]
        rows.append({"target": "bg", "size": 1000, "mode": "scratch", "seed": s, "error": base, "freeze": 0})
        for k in (1, 2, 3):  # error rises by 0.05 a frozen convolution (+1 % per seed's noise)
            err = base - 0.04 + 0.05 * k + 0.01 * NOISE[s] * k
            rows.append({"target": "bg", "size": 1000, "mode": f"ef_f{k}", "seed": s, "error": err, "freeze": k})
    io.write_csv(pd.DataFrame(rows), tmp_path / "bk" / "tables" / "metrics.csv")
    paired = _claim(
        "bk1", "B1", "lower", {"kind": "paired", "target": "bg", "size": 1000, "mode": "ef_f1", "versus": "scratch"}
    )
    paired["test"]["study"] = "../bk"
    trend = _claim(
        "bkt",
        "B1",
        "higher",
        {
            "kind": "trend",
            "target": "bg",
            "size": 1000,
            "modes": ["ef_f1", "ef_f2", "ef_f3"],
            "versus": "scratch",
            "x": "freeze",
            "y": "change",
            "study": "../bk",
        },
    )
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"family": "papers", "alpha": 0.05, "claims": [paired, trend]}, allow_unicode=True))
    df = build_paper_claims(load_declared(path), read_tables(folder)).set_index("key")
    m = pd.DataFrame(rows)
    assert df.loc["bk1", "estimate"] == pytest.approx(0.01)  # ef_f1 - scratch = -0.04 + 0.05
    assert df.loc["bk1", "ours_versus"] == pytest.approx(m[m["mode"].eq("scratch")]["error"].mean())
    assert df.loc["bkt", "estimate"] > 0 and df.loc["bkt", "verdict"] == "reproduced"
    assert df.loc["bkt", "n"] == len(SEEDS)
    paired["test"]["study"] = "../nowhere"
    path.write_text(yaml.safe_dump({"family": "papers", "alpha": 0.05, "claims": [paired]}, allow_unicode=True))
    with pytest.raises(ReportError, match="study ../nowhere: .*metrics.csv not found"):
        build_paper_claims(load_declared(path), read_tables(folder))
    paired["test"].update(study="../bk", records="../nm")
    path.write_text(yaml.safe_dump({"family": "papers", "alpha": 0.05, "claims": [paired]}, allow_unicode=True))
    with pytest.raises(ReportError, match="study .* without records"):
        load_declared(path)


def test_a_repeated_test_in_the_family_is_an_error(tmp_path):
    path = _declaration(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["claims"].append({**raw["claims"][0], "key": "again"})
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ReportError, match=r"claims \['again', 'paired'\] repeat one test"):
        build_paper_claims(load_declared(path), read_tables(_folder(tmp_path)))


def test_the_page_is_written_from_the_csv_and_checked_against_it(tmp_path):
    folder, declared = _folder(tmp_path), _declaration(tmp_path)
    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\nHeadline.\n\n{BEGIN}\n{END}\n\nAfter.\n")
    df = rewrite_papers(declared, folder, page)
    assert (folder / CSV_NAME).is_file() and check_papers(page) == []
    text = page.read_text()
    assert text.startswith("# Results\n\nHeadline.") and text.endswith("After.\n")
    rewrite_papers(declared, folder, page)
    assert page.read_text() == text  # a second run changes nothing
    p_cell = [line for line in text.splitlines() if line.startswith("| paired |")][0]
    wrong = text.replace(p_cell, p_cell.replace("| reproduced |", "| not reproduced |"))
    page.write_text(wrong)
    assert any("papers' claim paired: verdict is 'not reproduced'" in p for p in check_papers(page))
    k = (df["verdict"] == "reproduced").sum()
    headline = f"Of the papers' claims tested here (7 tests), {k + 1} reproduced, 0 not reproduced, 0 contradicted"
    page.write_text(text.replace("Headline.", f"{headline}; 1 claims not tested."))
    assert any("does not match" in p for p in check_papers(page))
    csv = pd.read_csv(folder / CSV_NAME)
    csv.loc[0, "p"] = 0.5
    csv.to_csv(folder / CSV_NAME, index=False)
    page.write_text(text)
    assert any("claim paired: p = 0.5, its declaration and tables give" in p for p in check_papers(page))


# --------------------------------------------------------------------------- what is committed
def test_committed_papers_table_equals_its_csv_and_tables():
    """docs/results.md's papers' claims: every cell the CSV's, the CSV what the declaration and the
    published tables give, and the headline count the CSV's."""
    assert check_papers(PAGE) == []
    text = PAGE.read_text(encoding="utf-8")
    assert text.count("Of the papers' claims tested here") >= 2  # the headline and the table's own line
    headline = count_sentence(read_paper_claims(PUBLISHED / CSV_NAME))
    assert headline in " ".join((ROOT / "README.md").read_text(encoding="utf-8").split()), "README.md's count"


def test_declaration_states_the_papers_directions():
    """Issue 28: no claim the papers did not make."""
    claims = {c["key"]: c for c in load_declared(DECLARED)["claims"]}
    assert claims["bk_freeze3"]["expect"] == "higher"  # the report finds freeze 3 worse: 0.865 vs 0.812
    assert claims["bk_attention"]["expect"] == "not lower"  # slightly higher test MAE
    assert claims["mt_ef_8k"]["expect"] == "not lower"  # hard sharing can hurt ΔEf
    assert claims["t7_kvrh"]["test"]["kind"] == "trend"  # the gain shrinks with data: a trend, not one cell
    assert claims["mt_eg_1k"]["id"] == "M1" and claims["m3_less_data"]["test"]["kind"] == "none"
    assert claims["t9_kvrh"]["test"]["versus"].startswith("strongest:")
    assert "tl_kvrh_1000" not in claims and "mt_transfer_kvrh" not in claims
    assert not any("not available to us" in str(c["paper_number"]) for c in claims.values())


def _reference() -> str:
    if not REFERENCE.is_file():
        pytest.skip(f"the reference compilation of the papers is not at {REFERENCE} (../shared is absent)")
    return REFERENCE.read_text(encoding="utf-8")


def _reference_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| ([TBM]\d) \|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split(" | ")]
    return rows


_NUMBER = re.compile(r"[−-]?\d+\.\d+|[−-]?\d+ %")


def test_every_claim_quotes_the_reference_number_for_its_id():
    """TL-CGCNN and MT-CGCNN rows quote the reference table's number for their id verbatim; a
    Berkeley row's numbers all occur in the reference's Berkeley section (its Tables 2 and 3 and
    claims). Every claim of the reference is listed, tested or not."""
    text = _reference()
    rows = _reference_rows(text)
    berkeley = text[text.index("## Layer freezing") : text.index("## MT-CGCNN")]
    csv = read_paper_claims(PUBLISHED / CSV_NAME).set_index("key")
    declared = {c["key"]: c for c in load_declared(DECLARED)["claims"]}
    assert set(rows) == set(csv["id"]), "every claim of the reference has a row (tested or not tested)"
    problems = []
    for key, r in csv.iterrows():
        if r["paper_number"] != declared[key]["paper_number"]:
            problems.append(
                f"{key}: CSV quotes {r['paper_number']!r}, the declaration {declared[key]['paper_number']!r}"
            )
        if r["id"][0] in "TM":
            want = rows[r["id"]][-1]
            if r["paper_number"] != want:
                problems.append(f"{key} ({r['id']}): quotes {r['paper_number']!r}, the reference gives {want!r}")
        else:
            absent = [n for n in _NUMBER.findall(r["paper_number"]) if n.replace("-", "−") not in berkeley]
            if absent:
                problems.append(f"{key} ({r['id']}): {absent} are not numbers of the reference's Berkeley section")
    assert not problems, "\n".join(problems)
