"""Published results (tlcgcnn.report.claims, .summary, .provenance, .publish, .readme): claims and their
verdicts, the README's results table, and the committed docs/results/ folders against their own CSVs and figures."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from tlcgcnn import config as C
from tlcgcnn.report.claims import CLAIM_COLUMNS, OTHER_FAMILY, ReportError, build_claims, property_label, verdict
from tlcgcnn.report.provenance import code_state, code_version, devices
from tlcgcnn.report.publish import benchmark_rule, check_published, copy_file, publish, wall_times
from tlcgcnn.report.readme import BEGIN, EMPTY_STATE, END, check_readme, readme_folders, rewrite_readme
from tlcgcnn.report.summary import _devices_text, claim_cells, fmt_error, fmt_p
from tlcgcnn.utils import fileio as io

# published runs (claims.csv, summary.md, provenance.json) and published comparisons of a run
# with a study (tables/comparison.csv: tlcgcnn.report.backbones, tested in test_backbones_report.py)
PUBLISHED = sorted(
    p.parent
    for p in (ROOT / "docs" / "results").glob("*/summary.md")
    if not (p.parent / "tables" / "comparison.csv").is_file()
)


# --------------------------------------------------------------------------- synthetic run
# Paired seed errors per (target, size, mode): chosen so that eg_ft clearly beats scratch,
# ef_ft is clearly worse, and noisy is indistinguishable from it.
SCRATCH = np.array([1.00, 1.10, 0.95, 1.05, 1.02])
ERRORS = {
    "scratch": SCRATCH,
    "eg_ft": SCRATCH - np.array([0.40, 0.42, 0.38, 0.41, 0.39]),
    "ef_ft": SCRATCH + np.array([0.30, 0.31, 0.29, 0.32, 0.30]),
    "noisy": SCRATCH + np.array([0.05, -0.06, 0.04, -0.05, 0.01]),
}
# eg_ft and noisy fine-tune source eg, ef_ft is ef's only mode. Validation prefers noisy, the
# test set eg_ft: stats/protocol.csv selects noisy, and a `selected:eg` claim must follow it.
SOURCE = {"eg_ft": "eg", "noisy": "eg", "ef_ft": "ef"}
VAL = {"scratch": 0.9, "eg_ft": 0.6, "noisy": 0.5, "ef_ft": 0.8}


def _metrics() -> pd.DataFrame:
    rows = [
        {
            "target": "gap",
            "size": size,
            "mode": mode,
            "seed": seed,
            "error": float(err[seed]) * (1 if size == 50 else 0.8),
            "mae": float(err[seed]) * (1 if size == 50 else 0.8),
            "task": "regression",
            "family": "scratch" if mode == "scratch" else "transfer",
            "pretrained": SOURCE.get(mode),
            "best_val_mae": VAL[mode] + 0.01 * seed,
            "data_sha256": "d" * 64,
            "config_sha256": "c" * 64,
            "git_commit": "a" * 40,
            "torch_version": "2.13.0",
            "device": "cpu",
            "precision": "fp32",
        }
        for size in (50, 100)
        for mode, err in ERRORS.items()
        for seed in range(5)
    ]
    return pd.DataFrame(rows)


def _tests(metrics: pd.DataFrame) -> pd.DataFrame:
    """stats/ttests.csv as tlcgcnn.analysis.stats.run writes it: the selected modes' tests appended."""
    from tlcgcnn.analysis.stats import error_tests, selected_tests

    return pd.concat(
        [error_tests(metrics, baseline="scratch"), selected_tests(metrics, _protocol(metrics))], ignore_index=True
    )


def _protocol(metrics: pd.DataFrame) -> pd.DataFrame:
    from tlcgcnn.analysis.stats import protocol_table

    return protocol_table(metrics, baseline="scratch", mode_order=list(ERRORS))


def _claim(cid: str, mode: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "paper": "TL-CGCNN",
        "claim": f"{mode} beats scratch | really",
        "paper_value": "p = 6.9e-5, −20 %",
        "target": "gap",
        "size": 50,
        "mode": mode,
        "versus": None,
        "direction": "lower",
        **kw,
    }


def test_claims_held_reversed_not_significant_and_other_comparisons():
    metrics = _metrics()
    tests = _tests(metrics)
    claims = [
        _claim("held", "eg_ft"),
        _claim("reversed", "ef_ft"),
        _claim("noise", "noisy"),
        _claim("higher", "ef_ft", direction="higher", size=100),
        _claim("eg_vs_ef", "eg_ft", versus="ef_ft"),
    ]
    df = build_claims(claims, tests, metrics, "scratch", {"gap": "HSE gap"}).set_index("id")
    assert list(df.reset_index().columns) == list(CLAIM_COLUMNS)
    assert df.loc["held", "verdict"] == "held" and bool(df.loc["held", "held"])
    assert df.loc["reversed", "verdict"] == "reversed" and not df.loc["reversed", "held"]
    assert df.loc["noise", "verdict"] == "not significant" and not df.loc["noise", "held"]
    assert df.loc["higher", "verdict"] == "held"  # ef_ft worse than scratch, as claimed
    # a claim against the baseline carries the stats table's numbers and family
    row = tests[(tests["mode"] == "eg_ft") & (tests["size"] == 50)].iloc[0]
    assert (df["resolved_mode"] == df["mode"]).all() and df.loc["eg_vs_ef", "resolved_versus"] == "ef_ft"
    assert df.loc["held", "p"] == row["p_value"] and df.loc["held", "p_holm"] == row["p_holm"]
    assert df.loc["held", "holm_family"] == "transfer_vs_scratch" and df.loc["held", "n_seeds"] == 5
    assert df.loc["held", "ours_mode_error"] == pytest.approx(ERRORS["eg_ft"].mean())
    assert df.loc["held", "change_pct"] == pytest.approx(100 * (ERRORS["eg_ft"].mean() / SCRATCH.mean() - 1))
    # another pair of modes: tested here on the paired seeds, its own Holm family
    other = df.loc["eg_vs_ef"]
    assert other["versus"] == "ef_ft" and other["holm_family"] == OTHER_FAMILY and other["verdict"] == "held"
    from scipy.stats import ttest_rel

    assert other["p"] == pytest.approx(ttest_rel(ERRORS["eg_ft"], ERRORS["ef_ft"]).pvalue)
    assert df.loc["held", "target_label"] == "HSE gap"


def test_selected_claims_follow_the_validation_choice_not_the_test_set():
    metrics = _metrics()
    tests, protocol = _tests(metrics), _protocol(metrics)
    group = protocol[(protocol["size"] == 50) & (protocol["pretrained"] == "eg")].set_index("mode")
    assert bool(group.loc["noisy", "selected"]) and not group["selected_is_test_best"].any()  # eg_ft is the test-best
    claims = [
        _claim("sel", "selected:eg"),
        _claim("one", "selected:ef"),
        _claim("vs", "eg_ft", versus="selected:eg"),
        _claim("plain", "noisy"),
    ]
    df = build_claims(claims, tests, metrics, "scratch", protocol=protocol).set_index("id")
    assert df.loc["sel", "mode"] == "selected:eg" and df.loc["sel", "resolved_mode"] == "noisy"
    chosen = tests[
        (tests["holm_family"] == "selected_vs_scratch") & (tests["size"] == 50) & (tests["pretrained"] == "eg")
    ].iloc[0]
    assert df.loc["sel", "holm_family"] == "selected_vs_scratch" and df.loc["sel", "p_holm"] == chosen["p_holm"]
    assert df.loc["sel", "ours_mode_error"] == pytest.approx(ERRORS["noisy"].mean())
    # a plain claim on the same mode keeps the mode's own test (not the selected family's repeat)
    assert df.loc["plain", "holm_family"] == "transfer_vs_scratch" and df.loc["plain", "resolved_mode"] == "noisy"
    # one mode from ef: no protocol group, the mode itself
    assert df.loc["one", "resolved_mode"] == "ef_ft" and df.loc["one", "holm_family"] == "transfer_vs_scratch"
    assert tuple(df.loc["vs", ["resolved_mode", "resolved_versus", "holm_family"]]) == (
        "eg_ft",
        "noisy",
        OTHER_FAMILY,
    )
    cells = claim_cells(df.reset_index().iloc[0].to_dict())
    assert cells[5].startswith("noisy (selected on validation from eg) ") and " vs scratch " in cells[5]
    with pytest.raises(ReportError, match=r"claim sel: mode selected:eg: stats/protocol.csv selects 0 modes from eg"):
        build_claims(claims[:1], tests, metrics, "scratch", protocol=protocol.assign(selected=False))
    with pytest.raises(
        ReportError, match=r"no selection from eg for target gap at size 50, and stats/metrics.csv has 2 modes"
    ):
        build_claims(claims[:1], tests, metrics, "scratch")  # two modes from eg need the protocol table


def test_verdict_rules():
    assert verdict(-0.1, 0.01, "lower") == "held"
    assert verdict(0.1, 0.01, "lower") == "reversed"
    assert verdict(-0.1, 0.05, "lower") == "not significant"  # p must be below 0.05
    assert verdict(0.1, 0.01, "higher") == "held"
    assert verdict(-0.1, float("nan"), "lower") == "not tested"
    with pytest.raises(ReportError, match="direction"):
        verdict(-0.1, 0.01, "down")


def test_a_claim_the_tables_lack_is_an_error_naming_it():
    metrics = _metrics()
    tests = _tests(metrics)
    with pytest.raises(ReportError, match=r"claim lost: stats/ttests.csv has 0 rows for target gap, size 200"):
        build_claims([_claim("lost", "eg_ft", size=200)], tests, metrics, "scratch")
    with pytest.raises(ReportError, match=r"claim gone: stats/metrics.csv has no run of mode 'nope'"):
        build_claims([_claim("gone", "nope", versus="eg_ft")], tests, metrics, "scratch")


def _raw_config(claims: list[dict[str, Any]]) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    raw["report"] = {"claims": claims}
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "nope"}, "report.claims c1: target 'nope' is not a finetune target"),
        ({"size": 75}, "report.claims c1: size 75 is not a training size of target hse_gap"),
        ({"mode": "nope"}, "report.claims c1: mode 'nope' is not a mode of target hse_gap"),
        ({"versus": "nope"}, "report.claims c1: versus 'nope' is not a mode of target hse_gap"),
        ({"mode": "scratch"}, "report.claims c1: mode and versus are both 'scratch'"),
        ({"mode": "selected:nope"}, "report.claims c1: mode 'selected:nope': 'nope' is not a pretrain name"),
        (
            {"versus": "selected:hse_gap"},
            "report.claims c1: versus 'selected:hse_gap': 'hse_gap' is not a pretrain name",
        ),
    ],
)
def test_config_refuses_a_claim_outside_the_grid(change, message):
    claim = {
        "id": "c1",
        "paper": "TL-CGCNN",
        "claim": "x",
        "paper_value": "y",
        "target": "hse_gap",
        "size": 50,
        "mode": "eg_ft",
        **change,
    }
    with pytest.raises(C.ConfigError, match=message):
        C.load(_raw_config([claim]))


def test_config_checks_a_selected_claim_has_a_mode_from_its_source():
    claim = {
        "id": "c1",
        "paper": "TL-CGCNN",
        "claim": "x",
        "paper_value": "y",
        "target": "hse_gap",
        "size": 50,
        "mode": "selected:ef",
    }
    assert C.load(_raw_config([claim])).claims()[0]["mode"] == "selected:ef"  # resolved by the report, not here
    raw = _raw_config([claim])
    next(t for t in raw["finetune"]["targets"] if t["name"] == "hse_gap")["modes"] = ["scratch", "eg_ft"]
    with pytest.raises(
        C.ConfigError, match=r"report.claims c1: mode 'selected:ef': target hse_gap has no transfer mode from ef"
    ):
        C.load(raw)


def test_config_resolves_claims_and_schema_checks_them():
    claim = {
        "id": "c1",
        "paper": "MT-CGCNN",
        "claim": "x",
        "paper_value": "y",
        "target": "hse_gap",
        "size": 50,
        "mode": "eg_ft",
    }
    cfg = C.load(_raw_config([claim, {**claim, "id": "c2", "versus": "ef_ft", "direction": "higher"}]))
    assert cfg.report.dir == "docs/results"
    assert [(c["versus"], c["direction"]) for c in cfg.claims()] == [("scratch", "lower"), ("ef_ft", "higher")]
    with pytest.raises(C.ConfigError, match="report.claims.0.paper"):
        C.load(_raw_config([{**claim, "paper": "Nature"}]))
    with pytest.raises(C.ConfigError, match="repeated ids"):
        C.load(_raw_config([claim, claim]))


def _multitask_table() -> pd.DataFrame:
    """stats/multitask.csv of two pretraining sizes (MT-CGCNN's comparison)."""
    return pd.DataFrame(
        {
            "property": ["band_gap", "band_gap", "efermi"],
            "size": [1000, 4000, 4000],
            "mt_source": ["mt_1k", "mt_4k", "mt_4k"],
            "st_source": ["eg_1k", "eg_4k", "efermi_4k"],
            "n_test": [1000, 1000, 1000],
            "mae_mt": [0.50, 0.40, 0.52],
            "mae_st": [0.55, 0.41, 0.45],
            "change_pct": [-9.0909, -2.439, 15.5556],
            "spearman_mt": [0.8, 0.85, 0.9],
            "spearman_st": [0.78, 0.85, 0.93],
            "t": [-4.0, -0.5, 5.0],
            "p": [1e-4, 0.6, 2e-6],
            "p_holm": [2e-4, 0.6, 6e-6],
            "holm_family": ["multitask_vs_single"] * 3,
        }
    )


def _mt_claim(cid: str, prop: str, size: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "kind": "multitask",
        "paper": "MT-CGCNN",
        "claim": "multi-task lowers the error",
        "paper_value": "up to −8 %",
        "property": prop,
        "size": size,
        "direction": "lower",
        **kw,
    }


def test_multitask_claims_take_their_numbers_from_the_multitask_table():
    metrics = _metrics()
    claims = [
        _mt_claim("eg1k", "band_gap", 1000),
        _mt_claim("eg4k", "band_gap", 4000),
        _mt_claim("ef4k", "efermi", 4000),
        _claim("held", "eg_ft"),
    ]
    df = build_claims(
        claims, _tests(metrics), metrics, "scratch", {"gap": "HSE gap"}, multitask=_multitask_table()
    ).set_index("id")
    assert list(df["verdict"]) == ["held", "not significant", "reversed", "held"]
    assert list(df["kind"]) == ["multitask", "multitask", "multitask", "compare"]
    eg = df.loc["eg1k"]
    assert (eg["target"], eg["resolved_mode"], eg["resolved_versus"], eg["n_seeds"]) == (
        "band_gap",
        "mt_1k",
        "eg_1k",
        1000,
    )
    assert eg["ours_mode_error"] == 0.50 and eg["ours_versus_error"] == 0.55 and eg["p_holm"] == 2e-4
    assert eg["change_pct"] == pytest.approx(-100 * 0.05 / 0.55) and eg["target_label"] == property_label("band_gap")
    assert property_label("band_gap").endswith("(eV)") and property_label("nope") == "nope"
    cells = claim_cells(df.reset_index().iloc[0].to_dict())
    assert "pretraining n = 1000 (1000 test crystals)" in cells[4] and cells[5].startswith(
        "multi-task mt_1k 0.5 vs single-task eg_1k 0.55"
    )
    with pytest.raises(
        ReportError,
        match="claim nope: stats/multitask.csv has 0 rows for property band_gap at pretraining size 8000",
    ):
        build_claims(
            [_mt_claim("nope", "band_gap", 8000)], _tests(metrics), metrics, "scratch", multitask=_multitask_table()
        )
    with pytest.raises(ReportError, match=r"claim bad: missing \['property'\]"):
        build_claims(
            [{**_mt_claim("bad", "band_gap", 1000), "property": None}],
            _tests(metrics),
            metrics,
            "scratch",
            multitask=_multitask_table(),
        )


def test_config_checks_multitask_claims_against_its_sources():
    raw = _raw_config([_mt_claim("m1", "band_gap", 100)])
    raw["pretrain"] = [
        *raw["pretrain"],
        {
            "name": "mt_s",
            "property": "formation_energy_per_atom",
            "properties": ["formation_energy_per_atom", "band_gap"],
            "size": 100,
            "labelled_with": ["band_gap"],
        },
        {"name": "eg_s", "property": "band_gap", "size": 100, "labelled_with": ["formation_energy_per_atom"]},
    ]
    cfg = C.load(raw)
    assert cfg.claims()[0]["kind"] == "multitask" and cfg.claims()[0]["versus"] is None
    with pytest.raises(
        C.ConfigError, match=r"report.claims m1: needs a multi-task pretrain source with efermi and a single-task one"
    ):
        C.load({**raw, "report": {"claims": [_mt_claim("m1", "efermi", 100)]}})
    # both sources exist but on two splits: stats/multitask.csv would have no row for the claim
    other_split = [
        {k: v for k, v in p.items() if k != "labelled_with"} if p["name"] == "eg_s" else p for p in raw["pretrain"]
    ]
    with pytest.raises(
        C.ConfigError, match=r"report.claims m1: .* on one split .*found multi-task \['mt_s'\], single-task \['eg_s'\]"
    ):
        C.load({**raw, "pretrain": other_split})
    with pytest.raises(
        C.ConfigError,
        match=r"report.claims m1: a kind: multitask claim compares two pretraining sources; "
        r"it sets property and size, not \['target'\]",
    ):
        C.load({**raw, "report": {"claims": [_mt_claim("m1", "band_gap", 100, target="hse_gap")]}})
    with pytest.raises(C.ConfigError, match="report.claims c1: a claim comparing two modes needs target and mode"):
        C.load(_raw_config([{"id": "c1", "paper": "TL-CGCNN", "claim": "x", "paper_value": "y", "size": 50}]))


# --------------------------------------------------------------------------- a published folder
def _publish(tmp_path: Path, name: str = "demo") -> Path:
    """A published folder written by tlcgcnn.report.publish.publish from a synthetic run."""
    run = tmp_path / "results" / name
    (run / "stats").mkdir(parents=True)
    (run / "figures").mkdir()
    metrics = _metrics()
    io.write_csv(metrics, run / "stats" / "metrics.csv")
    io.write_csv(_tests(metrics), run / "stats" / "ttests.csv")
    io.write_csv(_protocol(metrics), run / "stats" / "protocol.csv")
    io.write_csv(_multitask_table(), run / "stats" / "multitask.csv")
    io.write_json(
        run / "stats" / "ef_eg_correlation.json",
        {
            "x": "formation_energy_per_atom",
            "y": "band_gap",
            "n": 36736,
            "pearson_r": -0.5742,
            "pearson_p": 0.0,
            "pearson_ci_low": -0.581,
            "pearson_ci_high": -0.5673,
            "spearman_rho": -0.6022,
        },
    )
    (run / "figures" / "learning_curve.png").write_bytes(b"\x89PNG fake")
    io.write_json(
        run / "data" / "ingest_summary.json",
        {"input": "t.csv", "input_sha256": "e" * 64, "rows_in": 10, "rows_kept": 9},
    )
    io.write_json(
        run / "pretrain" / "eg" / "metrics.json",
        {"pretrain": "eg", "mae": 0.4, "n_test": 5, "n_train": 20, "data_sha256": "d" * 64},
    )
    bench = run / "benchmarks"
    for rel, s in (
        ("finetune/gap/n50/eg_ft.tsv", 10.0),
        ("finetune/gap/n50/scratch.tsv", 5.5),
        ("stats.tsv", 1.0),
        ("report/report.tsv", 99.0),
    ):
        (bench / rel).parent.mkdir(parents=True, exist_ok=True)
        (bench / rel).write_text(f"s\th:m:s\n{s}\t0:00:{int(s):02d}\n")
    pub = tmp_path / "docs" / "results" / name
    tables = []
    for t in ("metrics", "ttests", "protocol", "multitask"):
        copy_file(run / "stats" / f"{t}.csv", pub / "tables" / f"{t}.csv")
        tables.append(pub / "tables" / f"{t}.csv")
    copy_file(run / "figures" / "learning_curve.png", pub / "figures" / "learning_curve.png")
    ft = {
        "targets": [
            {
                "name": "gap",
                "property": "band_gap_hse",
                "transform": "none",
                "subset": "all",
                "task": "regression",
                "label": "HSE gap",
            }
        ],
        "sizes": [50, 100],
        "seeds": [0, 1, 2, 3, 4],
        "baseline": "scratch",
        "modes": {
            m: {"pretrained": SOURCE.get(m), "freeze": 0, "reinit": "none", "model": None, "estimator": None}
            for m in ERRORS
        },
    }
    settings = {
        "config": {
            "name": name,
            "finetune": ft,
            "pretrain": [{"name": "eg", "target": {"property": "band_gap", "subset": "all"}, "size": "all", "seed": 0}],
        },
        "config_sha256": "c" * 64,
        "configfiles": [f"config/{name}.yaml"],
        "baseline": "scratch",
        "baseline_modes": [],
        "claims": [
            _claim("held", "eg_ft"),
            _claim("reversed", "ef_ft"),
            _claim("noise", "noisy"),
            _claim("eg_vs_ef", "eg_ft", versus="ef_ft"),
            _claim("sel", "selected:eg"),
            _claim("one", "selected:ef"),
            _mt_claim("mt", "band_gap", 1000),
        ],
        "labels": {"gap": "HSE gap"},
        "captions": {"learning_curve": "Test MAE ``x`` against size."},
        "results": str(run),
        "repo": str(tmp_path),
        "report_dir": str(tmp_path / "docs" / "results"),
    }
    publish(
        tests=run / "stats" / "ttests.csv",
        metrics=run / "stats" / "metrics.csv",
        ingest_summary=run / "data" / "ingest_summary.json",
        pretrain_metrics=[run / "pretrain" / "eg" / "metrics.json"],
        tables=tables,
        figures=[pub / "figures" / "learning_curve.png"],
        out_claims=pub / "claims.csv",
        out_summary=pub / "summary.md",
        out_provenance=pub / "provenance.json",
        settings=settings,
        protocol=run / "stats" / "protocol.csv",
        multitask=run / "stats" / "multitask.csv",
        correlation=run / "stats" / "ef_eg_correlation.json",
    )
    return pub


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Project\n\nProse stays.\n\n## Results\n\n{BEGIN}\n{EMPTY_STATE}\n{END}\n\n## Later\n\nMore prose.\n"
    )
    return readme


def test_published_folder_summary_and_provenance(tmp_path):
    pub = _publish(tmp_path)
    summary = (pub / "summary.md").read_text()
    assert "![Test MAE `x` against size.](figures/learning_curve.png)" in summary
    assert "### `transfer_vs_scratch`" in summary and "| held | TL-CGCNN |" in summary
    assert "beats scratch \\| really" in summary  # a pipe in a claim does not break the table
    prov = io.read_json(pub / "provenance.json")
    wall = prov["wall_time"]
    assert wall["per_rule"] == {
        "finetune": {"s": 15.5, "jobs": 2},
        "stats": {"s": 1.0, "jobs": 1},
    }  # report's own left out
    assert wall["total_s"] == 16.5 and wall["jobs"] == 3
    assert "Job time: 0 min 16 s, the wall times of 3 jobs summed" in summary
    # the compute per rule, longest first, with the total (the closing note's table)
    compute = summary.split("## Compute per rule", 1)[1].split("## Tables", 1)[0]
    assert (
        "| `finetune` | 2 | 0 min 16 s | – |\n| `stats` | 1 | 0 min 1 s | – |\n| **total** | 3 | 0 min 16 s | – |"
        in compute
    )
    assert prov["data"]["data_sha256_of_runs"] == ["d" * 64] and prov["config_matches_runs"] is True
    assert prov["machine"]["cores"] and "git_commit" in prov["code"]
    claims = pd.read_csv(pub / "claims.csv")
    assert list(claims["verdict"]) == [
        "held",
        "reversed",
        "not significant",
        "held",
        "not significant",
        "reversed",
        "held",
    ]
    assert list(claims["resolved_mode"]) == ["eg_ft", "ef_ft", "noisy", "eg_ft", "noisy", "ef_ft", "mt_1k"]
    assert (
        "## Multi-task vs single-task pretraining (MT-CGCNN)" in summary and "| mt_4k | efermi_4k | 1000 |" in summary
    )
    assert (
        "Over the 36,736 crystals with both" in summary
        and "Pearson r = -0.574 (95 % CI -0.581 to -0.567, p = 0)" in summary
    )
    assert "| sel | TL-CGCNN |" in summary and "noisy (selected on validation from eg) " in summary
    assert "[protocol.csv](tables/protocol.csv)" in summary
    assert check_published(pub) == []


def test_published_check_resolves_selected_claims_from_the_published_protocol(tmp_path):
    pub = _publish(tmp_path)
    claims = pd.read_csv(pub / "claims.csv")
    good = claims.copy()
    claims.loc[claims["id"] == "sel", "resolved_mode"] = "eg_ft"
    claims.to_csv(pub / "claims.csv", index=False)
    assert check_published(pub) == [
        "%s: claim sel: resolved_mode = 'eg_ft', its tables give 'noisy'" % (pub / "claims.csv")
    ]
    good.to_csv(pub / "claims.csv", index=False)
    protocol = pd.read_csv(pub / "tables" / "protocol.csv")
    eg = protocol["pretrained"] == "eg"
    protocol.loc[eg, "selected"] = protocol.loc[eg, "mode"] == "eg_ft"  # a selection the run's tests do not have
    protocol.to_csv(pub / "tables" / "protocol.csv", index=False)
    problems = check_published(pub)
    assert (
        len(problems) == 1 and "family selected_vs_scratch from eg for target gap, size 50, mode eg_ft" in problems[0]
    ), problems
    (pub / "tables" / "protocol.csv").unlink()  # eg has two modes: no resolution without the table
    assert any(
        "cannot be recomputed from its tables" in p and "no selection from eg" in p for p in check_published(pub)
    )


def test_readme_rewrite_is_idempotent_and_keeps_the_prose(tmp_path):
    pub = _publish(tmp_path)
    readme = _readme(tmp_path)
    assert check_readme(readme) == []  # the empty state
    assert rewrite_readme(readme, [pub]) is True
    first = readme.read_text()
    assert rewrite_readme(readme, [pub]) is False and readme.read_text() == first
    assert first.startswith("# Project\n\nProse stays.\n") and first.endswith("## Later\n\nMore prose.\n")
    assert (
        "| held | TL-CGCNN |" in first
        and "| eg_vs_ef |" in first
        and "[summary](docs/results/demo/summary.md)" in first
    )
    assert check_readme(readme) == [] and readme_folders(readme) == [pub.resolve()]
    # back to no folders: the empty state again
    assert rewrite_readme(readme, []) is True and EMPTY_STATE in readme.read_text()
    no_markers = tmp_path / "NOTES.md"
    no_markers.write_text("# Notes\n")
    with pytest.raises(ReportError, match="needs one <!-- results:begin -->"):
        rewrite_readme(no_markers, [pub])


def test_readme_rewrite_keeps_the_pages_folder_order_and_adds_new_folders_last(tmp_path):
    """`make results-readme` passes every published folder alphabetically: the page keeps
    the order it shows, a folder it does not show yet goes last."""
    import shutil

    pub = _publish(tmp_path)
    second, third = pub.parent / "b-second", pub.parent / "a-third"
    shutil.copytree(pub, second)
    shutil.copytree(pub, third)
    readme = _readme(tmp_path)
    rewrite_readme(readme, [second, pub])
    assert readme_folders(readme) == [second.resolve(), pub.resolve()]
    assert rewrite_readme(readme, sorted([pub, second, third])) is True
    assert readme_folders(readme) == [second.resolve(), pub.resolve(), third.resolve()]
    assert check_readme(readme) == []


def test_readme_check_fails_on_a_wrong_number_a_lost_row_or_a_stray_row(tmp_path):
    pub = _publish(tmp_path)
    readme = _readme(tmp_path)
    rewrite_readme(readme, [pub])
    good = readme.read_text()
    claims = pd.read_csv(pub / "claims.csv").set_index("id")
    right = fmt_p(float(claims.loc["held", "p_holm"]))
    row = next(line for line in good.splitlines() if line.startswith("| held |"))
    wrong = row.replace(f"| {right} |", "| 0.5 |")
    assert wrong != row
    readme.write_text(good.replace(row, wrong))
    problems = check_readme(readme)
    assert (
        len(problems) == 1 and "claim held" in problems[0] and "'0.5'" in problems[0] and repr(right) in problems[0]
    ), problems
    # one digit of an error changed
    mode_err = fmt_error(float(claims.loc["held", "ours_mode_error"]))
    readme.write_text(good.replace(row, row.replace(mode_err, mode_err[:-1] + ("1" if mode_err[-1] != "1" else "2"))))
    assert any("ours: mode vs compared" in p for p in check_readme(readme))
    # a claim dropped from the table, and a row that is no claim
    readme.write_text(good.replace(row + "\n", ""))
    assert any("claim held of" in p and "missing" in p for p in check_readme(readme))
    readme.write_text(good.replace(row, row + "\n" + row.replace("| held |", "| made_up |", 1)))
    assert any("'made_up' is not a claim" in p for p in check_readme(readme))


def test_published_check_fails_when_claims_csv_disagrees_with_its_tables_or_a_figure_is_missing(tmp_path):
    pub = _publish(tmp_path)
    claims = pd.read_csv(pub / "claims.csv")
    claims.loc[0, "p_holm"] = 0.0123
    claims.to_csv(pub / "claims.csv", index=False)
    assert any("p_holm = 0.0123" in p for p in check_published(pub))
    (pub / "figures" / "learning_curve.png").unlink()
    assert any("links figures/learning_curve.png, which does not exist" in p for p in check_published(pub))


def test_benchmark_files_map_to_their_rules():
    """Every rule that writes a benchmark file below results/<name>/benchmarks/ is found by
    its file (rules/*.smk, read by Snakemake's parser)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(
            snakefile=ROOT / "Snakefile",
            workdir=ROOT,
            config_settings=ConfigSettings(),
            resource_settings=ResourceSettings(),
            storage_settings=StorageSettings(),
        )
        rules = [(r.name, str(r.benchmark)) for r in wf._workflow.rules if r.benchmark is not None]
    checked = 0
    for name, pattern in rules:
        prefix = "results/quickstart/benchmarks/"
        if not pattern.startswith(prefix):
            continue  # embedded_subset: outside the run's folder
        rel = pattern.removeprefix(prefix)
        mode = {"finetune_baseline": "lasso", "finetune_frozen": "ef_ridge", "finetune_readout": "bb_readout"}.get(
            name, "ef_ft"
        )
        backbone = "sevennet-0" if name == "embed_backbone_sevenn" else "chgnet-0.3.0"
        values = {"mode": mode, "published": "tables/x.csv", "backbone": backbone}
        filled = re.sub(
            r"\{(\w+)(?:,[^{}]*)?\}", lambda m, values=values: values.get(m.group(1), "w"), rel
        )  # {name} or {name,constraint}
        want = None if name.startswith("report") else name
        assert benchmark_rule(filled, ["lasso"], ["ef_ridge"], ["bb_readout"]) == want, (
            name,
            pattern,
            filled,
        )
        checked += 1
    assert checked >= 15, rules


def _dry_run(*targets: str) -> dict[str, int]:
    """Job counts of `snakemake -n` for the quickstart config under another name."""
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "snakemake")] if (bin_dir / "snakemake").exists() else [sys.executable, "-m", "snakemake"]
    res = subprocess.run(
        [
            *cmd,
            *targets,
            "-n",
            "--cores",
            "2",
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
            "--config",
            "name=dry-report",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    stats = res.stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}


def test_published_files_are_asked_for_not_part_of_all():
    """The published folder resolves when asked for (the report, its copies and what they
    need) and the default target leaves it alone; a published figure is its own target."""
    from tlcgcnn.config import load

    cells = load(ROOT / "config" / "config.yaml").cells()
    jobs = _dry_run("docs/results/dry-report/summary.md")
    assert jobs["report"] == 1 and jobs["report_copy"] == 4 and jobs["figure"] == 1  # 3 tables, 1 figure
    assert jobs["finetune"] == sum(c.kind == "gnn" for c in cells) and jobs["finetune_frozen"] == sum(
        c.kind == "frozen" for c in cells
    )
    figure = _dry_run("docs/results/dry-report/figures/learning_curve.png")
    assert figure["report_copy"] == 1 and figure["figure"] == 1 and "report" not in figure
    default = _dry_run()
    assert "all" in default and "report" not in default and "report_copy" not in default


# --------------------------------------------------------------------------- what is committed
def test_readme_results_table_is_the_committed_csvs():
    """Every row of README.md's results table is a claim of a committed claims.csv, with the
    numbers it gives; no claim of a folder the README shows is left out."""
    assert check_readme(ROOT / "docs" / "results.md") == []


def test_committed_results_are_complete_and_shown_in_the_readme():
    if not PUBLISHED:
        pytest.skip(
            "no docs/results/<name>/summary.md committed yet (publish a run: docs/paper-study.md, 'Published results')"
        )
    shown = set(readme_folders(ROOT / "docs" / "results.md"))
    problems = []
    for folder in PUBLISHED:
        problems += check_published(folder)
        if folder.resolve() not in shown:
            problems.append(
                f"{folder} is published but docs/results.md's claims table does not show it (make results-readme)"
            )
    assert not problems, "\n".join(problems)


def test_copy_is_byte_identical(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(bytes(range(256)) * 10)
    copy_file(src, tmp_path / "out" / "b.png")
    assert (tmp_path / "out" / "b.png").read_bytes() == src.read_bytes()


def test_published_check_recomputes_multitask_claims_from_the_published_table(tmp_path):
    pub = _publish(tmp_path)
    assert check_published(pub) == []
    table = pd.read_csv(pub / "tables" / "multitask.csv")
    table.loc[0, "mae_mt"] = 0.6
    table.to_csv(pub / "tables" / "multitask.csv", index=False)
    problems = check_published(pub)
    assert any("claim mt: ours_mode_error = 0.5, its tables give 0.6" in p for p in problems), problems
    (pub / "tables" / "multitask.csv").unlink()
    assert any("cannot be recomputed" in p and "multitask.csv has 0 rows" in p for p in check_published(pub))


def test_wall_times_sum_cpu_time_where_the_benchmarks_have_it(tmp_path):
    """cpu_time (Snakemake's benchmark column) is summed per rule beside the wall time: the
    compute a rule needed even when other work shared the machine."""
    for rel, s, cpu in (
        ("finetune/t/n50/a.tsv", 100.0, 60.5),
        ("finetune/t/n50/b.tsv", 50.0, 40.0),
        ("stats.tsv", 2.0, 1.5),
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:01:00\t10\t{cpu}\n")
    wall = wall_times(tmp_path)
    assert wall["per_rule"] == {
        "finetune": {"s": 150.0, "jobs": 2, "cpu_s": 100.5},
        "stats": {"s": 2.0, "jobs": 1, "cpu_s": 1.5},
    }
    assert wall["total_s"] == 152.0 and wall["total_cpu_s"] == 102.0


def test_devices_name_the_cells_and_sources_that_ran_elsewhere():
    """The summary says which cells had seeds on another device and where each source was
    trained, from the run records (old records without `hardware` give the device type)."""
    rows = [
        {
            "target": "t",
            "size": 100.0,
            "mode": "scratch",
            "seed": s,
            "device": "cpu",
            "hardware": "Intel Xeon",
            "precision": "bf16",
        }
        for s in range(3)
    ] + [
        {
            "target": "t",
            "size": 2000.0,
            "mode": "ft",
            "seed": 0,
            "device": "cuda",
            "hardware": "NVIDIA H200",
            "precision": "bf16",
        },
        {
            "target": "t",
            "size": 2000.0,
            "mode": "ft",
            "seed": 1,
            "device": "cpu",
            "hardware": "Intel Xeon",
            "precision": "bf16",
        },
        {
            "target": "t",
            "size": 100.0,
            "mode": "rf",
            "seed": 0,
            "device": None,
            "precision": None,
        },  # a baseline: no device
        {"target": "t", "size": 100.0, "mode": "old", "seed": 0, "device": "cpu", "precision": "fp32"},
    ]
    dev = devices(
        pd.DataFrame(rows),
        [{"pretrain": "ef", "device": "cuda", "hardware": "NVIDIA H200"}, {"pretrain": "eg", "device": "cpu"}],
    )
    assert dev["main_device"] == "cpu"  # cells are listed by device type: another CPU host is not "off"
    assert dev["finetune_runs"] == {
        "cpu (Intel Xeon)": {"bf16": 4},
        "cuda (NVIDIA H200)": {"bf16": 1},
        "cpu": {"fp32": 1},
    }
    assert dev["cells_off_main_device"] == {
        "t/n2000/ft": {"seeds": {"cpu (Intel Xeon)": 1, "cuda (NVIDIA H200)": 1}, "of": 2}
    }
    text = "\n".join(_devices_text(dev))
    assert (
        "fine-tuning runs 4 on cpu (Intel Xeon) (bf16 4); 1 on cuda (NVIDIA H200) (bf16 1); 1 on cpu (fp32 1)." in text
    )
    assert "`t/n2000/ft` (1 of 2 on cuda (NVIDIA H200))" in text and "`t/n100/scratch`" not in text
    assert "Pretraining sources by device: cpu: `eg`; cuda (NVIDIA H200): `ef`." in text


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_state_is_the_code_version_with_the_published_folder_left_out_of_the_dirty_check(tmp_path):
    """provenance.json's code (code_state) is code_version of the repository whose dirty check
    leaves out the folder being published; outside a checkout both git fields are None."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    git("init", "-q")
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "claims.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-q", "-m", "one")
    clean = code_state(tmp_path, ["docs/results"])
    assert clean == {**code_version(tmp_path), "dirty_ignores": ["docs/results"]} and clean["git_dirty"] is False
    assert len(clean["git_commit"]) == 40 and clean["package"]
    (tmp_path / "docs" / "results" / "claims.csv").write_text("b\n")
    assert code_state(tmp_path, ["docs/results"])["git_dirty"] is False and code_version(tmp_path)["git_dirty"] is True
    (tmp_path / "docs" / "results" / "claims.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert code_state(tmp_path, ["docs/results"])["git_dirty"] is True
    assert code_state(tmp_path / "docs", [])["git_commit"] == clean["git_commit"]  # a subfolder of the checkout
    nowhere = code_version(tmp_path.parent / "no-such-folder")
    assert nowhere["git_commit"] is None and nowhere["git_dirty"] is None


def test_summary_names_what_a_scikit_learn_mode_is_fitted_on():
    """A frozen-features mode is a ridge on a source's crystal vector, not on composition
    descriptors (metal-roc-cpu's first summary said the latter of mt_ridge)."""
    from tlcgcnn.report.summary import _mode_text

    frozen = {"pretrained": "zoo_mt", "estimator": "ridge", "features": "frozen"}
    assert _mode_text("mt_ridge", frozen, "scratch") == "`mt_ridge`: ridge on the crystal vector of `zoo_mt` (frozen)"
    assert _mode_text("rf", {"estimator": "rf"}, "scratch") == "`rf`: rf on composition descriptors"
    assert _mode_text("scratch", {}, "scratch") == "`scratch`: from scratch (the baseline)"
