"""The papers' claims in the papers' own terms, tested on a published results folder.

A declaration (``config/claims/<name>.yaml``, :func:`load_declared`) lists each claim of the
three papers with its id in the reference compilation (T1-T9, B1-B4, M1-M4), its wording, the
paper's number (a committed quote), the direction the paper states (``expect``) and the test on
the published tables. :func:`build_paper_claims` computes one row per claim from the folder's
``tables/`` (per-seed test errors from ``tables/metrics.csv`` wherever they exist):

* the estimate with its 95 % confidence interval (t interval): a mode's error minus the compared
  mode's, paired over seeds (``paired``) or over test crystals (``multitask``, one pretraining run
  each); the mean per-seed slope of a trend (``trend``); a correlation (``correlation``);
* the raw two-sided p, the Holm-adjusted p and the Benjamini-Hochberg q over ONE family, every
  tested claim of the declaration (each distinct test once: a repeated test is an error);
* a verdict in the paper's terms (:func:`paper_verdict`): ``reproduced``, ``not reproduced``,
  ``contradicted``; ``not tested`` for a claim the published data cannot test (its reason given).

:func:`papers_block` is the Markdown of the results page (docs/results.md) between
:data:`BEGIN` and :data:`END`; :func:`rewrite_papers` writes the CSV and that block,
:func:`check_papers` checks the block against the CSV and the CSV against its declaration and
tables (``python -m tlcgcnn.report papers|check``). Torch-free: pandas, numpy, scipy, yaml.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats as sstats

from tlcgcnn.analysis.stats import benjamini_hochberg, holm, read_table
from tlcgcnn.report.claims import ReportError, resolve_mode
from tlcgcnn.report.summary import fmt_error, fmt_p, table_rows
from tlcgcnn.utils import fileio as io

VERDICTS = ("reproduced", "not reproduced", "contradicted", "not tested")
EXPECTS = ("lower", "higher", "not lower", "no difference")
KINDS = ("paired", "multitask", "correlation", "trend", "none")
TREND_X = {"size": "n", "pretrain_size": "source size", "freeze": "frozen convolution"}
TREND_Y = ("change", "log_error")
ID_RE = re.compile(r"[TBM][0-9]")
CSV_NAME = "claims_papers.csv"
BEGIN = "<!-- papers:begin -->"
END = "<!-- papers:end -->"
SOURCE_MARK = "<!-- papers:source {} {} -->"
_SOURCE_RE = re.compile(r"<!-- papers:source (\S+) (\S+) -->")
STRONGEST = "strongest:"
COLUMNS = (
    "key",
    "id",
    "paper",
    "claim",
    "paper_number",
    "expect",
    "registered",
    "setting",
    "note",
    "kind",
    "target",
    "size",
    "mode",
    "versus",
    "estimate_kind",
    "unit",
    "n",
    "n_unit",
    "ours_mode",
    "ours_versus",
    "estimate",
    "ci_low",
    "ci_high",
    "change_pct",
    "change_ci_low_pct",
    "change_ci_high_pct",
    "p",
    "p_holm",
    "q_bh",
    "family",
    "family_size",
    "verdict",
    "reason",
)
NUMERIC = (
    "n",
    "ours_mode",
    "ours_versus",
    "estimate",
    "ci_low",
    "ci_high",
    "change_pct",
    "change_ci_low_pct",
    "change_ci_high_pct",
    "p",
    "p_holm",
    "q_bh",
    "family_size",
)
TEXT = tuple(c for c in COLUMNS if c not in NUMERIC)
HEADER = (
    "row",
    "id",
    "the paper's claim",
    "paper's number",
    "our test",
    "ours [95 % CI]",
    "n",
    "p",
    "p Holm",
    "q BH",
    "verdict",
)
_REQUIRED = ("key", "id", "paper", "claim", "paper_number", "expect", "registered", "test")


def paper_verdict(estimate: float, p_holm: float, expect: str, alpha: float = 0.05) -> str:
    """The verdict of one claim in the paper's terms. ``expect`` ``lower`` / ``higher``: the paper
    finds the estimate below / above zero; ``reproduced`` when ours is significant (Holm p <
    ``alpha``) that way, ``contradicted`` when significant the other way, ``not reproduced``
    otherwise. ``not lower``: the paper finds no gain (or a loss); ``reproduced`` unless ours is
    significantly lower (``contradicted``). ``no difference``: ``reproduced`` unless ours differs
    significantly (``contradicted``). ``not tested`` without a p-value."""
    if expect not in EXPECTS:
        raise ReportError(f"expect {expect!r} is not one of {EXPECTS}")
    if p_holm is None or not math.isfinite(p_holm) or not math.isfinite(estimate):
        return "not tested"
    significant, below = p_holm < alpha, estimate < 0
    if expect == "not lower":
        return "contradicted" if significant and below else "reproduced"
    if expect == "no difference":
        return "contradicted" if significant else "reproduced"
    if not significant:
        return "not reproduced"
    return "reproduced" if below == (expect == "lower") else "contradicted"


# --------------------------------------------------------------------------- the declaration
def load_declared(path: str | Path) -> dict[str, Any]:
    """A claims declaration: ``family`` (its name), ``alpha`` and ``claims``, each checked."""
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"{p}: no such claims declaration")
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    family, alpha, claims = raw.get("family"), raw.get("alpha", 0.05), raw.get("claims") or []
    if not isinstance(family, str) or not family:
        raise ReportError(f"{p}: needs `family`, the name of the claims' Holm family")
    if not isinstance(alpha, float) or not 0 < alpha < 1:
        raise ReportError(f"{p}: alpha {alpha!r} is not a number between 0 and 1")
    keys = [c.get("key") for c in claims]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ReportError(f"{p}: repeated keys {repeated}")
    for c in claims:
        where = f"{p}: claim {c.get('key', '?')}"
        missing = [k for k in _REQUIRED if not c.get(k)]
        if missing:
            raise ReportError(f"{where}: missing {missing}")
        if not ID_RE.fullmatch(str(c["id"])):
            raise ReportError(f"{where}: id {c['id']!r} is not a paper id such as T4, B1 or M2")
        if c["expect"] not in EXPECTS:
            raise ReportError(f"{where}: expect {c['expect']!r} is not one of {EXPECTS}")
        kind = c["test"].get("kind")
        if kind not in KINDS:
            raise ReportError(f"{where}: test kind {kind!r} is not one of {KINDS}")
        if kind == "none" and not c["test"].get("reason"):
            raise ReportError(f"{where}: a claim not tested needs its reason")
        if kind != "none" and not c.get("setting"):
            raise ReportError(f"{where}: a tested claim needs its setting (what our test compares)")
        if c["test"].get("study") and (kind not in ("paired", "trend") or c["test"].get("records")):
            raise ReportError(
                f"{where}: study (another published study's runs) is for a paired or trend test without records"
            )
        if kind == "trend" and (c["test"].get("x") not in TREND_X or c["test"].get("y") not in TREND_Y):
            raise ReportError(f"{where}: a trend needs x in {sorted(TREND_X)} and y in {list(TREND_Y)}")
    return {"family": family, "alpha": alpha, "claims": claims}


# --------------------------------------------------------------------------- the tests
def _t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, 95 % t interval and two-sided one-sample p of ``values`` (NaN without spread)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or np.std(v) == 0:
        return float(v.mean()) if v.size else math.nan, math.nan, math.nan, math.nan
    t = sstats.ttest_1samp(v, 0.0)
    ci = t.confidence_interval(0.95)
    return float(v.mean()), float(ci.low), float(ci.high), float(t.pvalue)


def _cell(metrics: pd.DataFrame, target: str, size: Any = None) -> pd.DataFrame:
    sub = metrics[metrics["target"] == target]
    if size is not None:
        sub = sub[sub["size"].astype(str) == str(size)]
    if sub.empty:
        raise ReportError(f"tables/metrics.csv has no run of target {target}" + (f" at size {size}" if size else ""))
    return sub


def _errors(cell: pd.DataFrame, mode: str, where: str) -> pd.Series:
    sub = cell[cell["mode"] == mode]
    if sub.empty:
        raise ReportError(f"{where}: tables/metrics.csv has no run of mode {mode!r} in this cell")
    if sub["seed"].duplicated().any():
        raise ReportError(f"{where}: mode {mode!r} has two runs of one seed")
    return sub.set_index("seed")["error"].astype(float)


def with_records(metrics: pd.DataFrame, study: str | Path, records: str | None, where: str) -> pd.DataFrame:
    """``metrics`` (the study's) with the runs of a companion comparison folder ``records``
    (relative to the study folder ``study``) whose (target, mode) the study lacks. The folder's
    ``tables/same_cells.csv`` (written by a ``python -m tlcgcnn.report`` comparison) must prove
    that its runs share the study's cells: every re-run record gave the study's test MAE."""
    if not records:
        return metrics
    tabs = Path(study) / records / "tables"
    for name in ("metrics.csv", "same_cells.csv"):
        if not (tabs / name).is_file():
            raise ReportError(f"{where}: {tabs / name}: not found (records: names a published comparison folder)")
    same = read_table(tabs / "same_cells.csv")
    if same.empty or not same["same"].astype(str).eq("True").all():
        raise ReportError(f"{where}: {tabs / 'same_cells.csv'} does not prove that {records} shares the study's cells")
    extra = read_table(tabs / "metrics.csv")
    have = set(zip(metrics["target"].astype(str), metrics["mode"].astype(str), strict=True))
    new = [(t, m) not in have for t, m in zip(extra["target"].astype(str), extra["mode"].astype(str), strict=True)]
    return pd.concat([metrics, extra[new]], ignore_index=True)


def study_tables(tables: Mapping[str, Any], study: str | None, where: str) -> Mapping[str, Any]:
    """The tables a test reads: the folder's own, or with ``study`` (a path relative to the
    folder) those of another published study, a run of its own cells (its own scratch, its own
    seeds: the Berkeley report's setting in ``docs/results/berkeley-cpu``), read once."""
    if not study:
        return tables
    cache = tables.setdefault("studies", {}) if isinstance(tables, dict) else {}
    if study not in cache:
        folder = Path(tables["folder"]) / study
        if not (folder / "tables" / "metrics.csv").is_file():
            raise ReportError(f"{where}: study {study}: {folder / 'tables' / 'metrics.csv'} not found")
        cache[study] = read_tables(folder)
    return cache[study]


def _paired(c: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    t, where = c["test"], f"claim {c['key']}"
    tables = study_tables(tables, t.get("study"), where)
    metrics = with_records(tables["metrics"], tables["folder"], t.get("records"), where)
    protocol = tables["protocol"]
    cell = _cell(metrics, t["target"], t["size"])
    spec = {"id": c["key"], "target": t["target"], "size": t["size"], "mode": t["mode"], "versus": t["versus"]}
    sources = ("tables/ttests.csv", "tables/metrics.csv", "tables/protocol.csv")
    mode, _ = resolve_mode(spec, "mode", protocol, metrics, sources)
    mine = _errors(cell, mode, where)
    versus = str(t["versus"])
    if versus.startswith(STRONGEST):  # the candidate with the lowest mean error on the paired seeds
        candidates = [v.strip() for v in versus.removeprefix(STRONGEST).split(",") if v.strip()]
        means = {v: float(_errors(cell, v, where).reindex(mine.index).dropna().mean()) for v in candidates}
        versus = min(candidates, key=lambda v: (means[v], v))
    else:
        versus, _ = resolve_mode(spec, "versus", protocol, metrics, sources)
    theirs = _errors(cell, versus, where)
    pairs = pd.concat([mine.rename("mode"), theirs.rename("versus")], axis=1, join="inner")
    if len(pairs) < 2:
        raise ReportError(f"{where}: modes {mode!r} and {versus!r} share {len(pairs)} seeds (a paired test needs 2)")
    est, lo, hi, p = _t_interval((pairs["mode"] - pairs["versus"]).to_numpy())
    classifier = "task" in cell.columns and (cell["task"].astype(str) == "classification").any()
    return {
        "mode": mode,
        "versus": versus,
        "estimate_kind": "difference",
        "unit": "1 − ROC-AUC" if classifier else "test MAE",
        "n": len(pairs),
        "n_unit": "seeds",
        "ours_mode": float(pairs["mode"].mean()),
        "ours_versus": float(pairs["versus"].mean()),
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
        "p": p,
    }


def _multitask(c: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    t, mt = c["test"], tables["multitask"]
    hit = mt[(mt["property"] == t["property"]) & (mt["size"].astype(str) == str(t["size"]))] if len(mt) else mt
    if len(hit) != 1:
        raise ReportError(
            f"claim {c['key']}: tables/multitask.csv has {len(hit)} rows for {t['property']} at size {t['size']}"
        )
    r = hit.iloc[0]
    n, tstat, diff = int(r["n_test"]), float(r["t"]), float(r["mae_mt"]) - float(r["mae_st"])
    p = float(2 * sstats.t.sf(abs(tstat), n - 1))
    if not math.isclose(p, float(r["p"]), rel_tol=1e-6, abs_tol=1e-300):
        raise ReportError(
            f"claim {c['key']}: tables/multitask.csv's p {r['p']} is not the two-sided paired t-test's p {p} "
            f"of t = {tstat} over {n} test crystals"
        )
    half = abs(diff / tstat) * float(sstats.t.ppf(0.975, n - 1))
    return {
        "target": t["property"],
        "mode": str(r["mt_source"]),
        "versus": str(r["st_source"]),
        "estimate_kind": "difference",
        "unit": "test MAE",
        "n": n,
        "n_unit": "test crystals",
        "ours_mode": float(r["mae_mt"]),
        "ours_versus": float(r["mae_st"]),
        "estimate": diff,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "p": float(r["p"]),
    }


def _correlation(c: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    r = tables["correlation"]
    if not r:
        raise ReportError(f"claim {c['key']}: the folder has no tables/ef_eg_correlation.json")
    return {
        "target": f"{r['x']} vs {r['y']}",
        "estimate_kind": "correlation",
        "unit": "Pearson r",
        "n": int(r["n"]),
        "n_unit": "crystals",
        "estimate": float(r["pearson_r"]),
        "ci_low": float(r["pearson_ci_low"]),
        "ci_high": float(r["pearson_ci_high"]),
        "p": float(r["pearson_p"]),
    }


def _trend(c: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    t, where = c["test"], f"claim {c['key']}"
    tables = study_tables(tables, t.get("study"), where)
    cell = _cell(tables["metrics"], t["target"], t.get("size"))
    xcol, log_x, y = t["x"], bool(t.get("log_x")), t["y"]
    frames = []
    for mode in t["modes"]:
        sub = cell[cell["mode"] == mode][["seed", "size", xcol, "error"]].copy()
        if sub.empty:
            raise ReportError(f"{where}: tables/metrics.csv has no run of mode {mode!r} in target {t['target']}")
        frames.append(sub.loc[:, ~sub.columns.duplicated()])
    runs = pd.concat(frames, ignore_index=True)
    if y == "change":
        base = cell[cell["mode"] == t["versus"]][["seed", "size", "error"]].rename(columns={"error": "versus"})
        runs = runs.merge(base, on=["seed", "size"], how="inner")
        runs["y"] = 100.0 * (runs["error"] - runs["versus"]) / runs["versus"]
    else:
        runs["y"] = np.log10(runs["error"].astype(float))
    x = pd.to_numeric(runs[xcol], errors="raise").astype(float)
    runs["x"] = np.log10(x) if log_x else x
    slopes = [
        float(np.polyfit(g["x"].to_numpy(float), g["y"].to_numpy(float), 1)[0])
        for _, g in runs.groupby("seed", sort=True)
        if g["x"].nunique() >= 3
    ]
    if len(slopes) < 2:
        raise ReportError(f"{where}: {len(slopes)} seeds ran at 3 or more points of the trend (a test needs 2)")
    est, lo, hi, p = _t_interval(np.array(slopes))
    per = f"per 10× {TREND_X[xcol]}" if log_x else f"per {TREND_X[xcol]}"
    unit = f"pp of the change vs {t['versus']} {per}" if y == "change" else f"log10 MAE {per}"
    return {
        "mode": " → ".join(t["modes"]),
        "versus": t.get("versus") or "",
        "estimate_kind": "slope",
        "unit": unit,
        "n": len(slopes),
        "n_unit": "seeds",
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
        "p": p,
    }


_TESTS = {"paired": _paired, "multitask": _multitask, "correlation": _correlation, "trend": _trend}


def read_tables(folder: str | Path) -> dict[str, Any]:
    """The published tables the claims read: metrics, protocol, multitask, correlation (and the
    folder, for a paired test's ``records``)."""
    tabs = Path(folder) / "tables"
    if not (tabs / "metrics.csv").is_file():
        raise ReportError(f"{tabs / 'metrics.csv'}: not found (is {folder} a published results folder?)")
    opt = {n: tabs / f"{n}.csv" for n in ("protocol", "multitask")}
    corr = tabs / "ef_eg_correlation.json"
    return {
        "folder": Path(folder),
        "metrics": read_table(tabs / "metrics.csv"),
        **{n: read_table(p) if p.is_file() else pd.DataFrame() for n, p in opt.items()},
        "correlation": io.read_json(corr) if corr.is_file() else {},
    }


def build_paper_claims(declared: Mapping[str, Any], tables: Mapping[str, Any]) -> pd.DataFrame:
    """One row per declared claim (columns :data:`COLUMNS`), Holm and BH over every tested claim."""
    rows = []
    for c in declared["claims"]:
        t = c["test"]
        row: dict[str, Any] = {k: c.get(k, "") or "" for k in ("key", "id", "paper", "claim", "paper_number")}
        row.update(expect=c["expect"], registered=c["registered"], setting=c.get("setting") or "")
        row.update(note=c.get("note") or "", kind=t["kind"], target=t.get("target") or t.get("property") or "")
        row.update(size=str(t.get("size") or ""), family="", reason=t.get("reason") or "")
        if t["kind"] != "none":
            row.update(_TESTS[t["kind"]](c, tables))
            row["family"] = declared["family"]
        rows.append(row)
    df = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    tested = df["p"].notna()
    seen = df[tested].duplicated(["estimate", "ci_low", "ci_high", "p"], keep=False)
    if seen.any():
        raise ReportError(f"claims {sorted(df[tested][seen]['key'])} repeat one test (a family counts each test once)")
    df.loc[tested, "p_holm"] = holm(df.loc[tested, "p"].to_numpy(float))
    df.loc[tested, "q_bh"] = benjamini_hochberg(df.loc[tested, "p"].to_numpy(float))
    df.loc[tested, "family_size"] = float(tested.sum())
    diff = df["estimate_kind"] == "difference"
    for col, src in (("change_pct", "estimate"), ("change_ci_low_pct", "ci_low"), ("change_ci_high_pct", "ci_high")):
        df.loc[diff, col] = 100.0 * df.loc[diff, src] / df.loc[diff, "ours_versus"]
    df["verdict"] = [
        paper_verdict(e, p, x, declared["alpha"]) if k != "none" else "not tested"
        for e, p, x, k in zip(df["estimate"], df["p_holm"], df["expect"], df["kind"], strict=True)
    ]
    return df[list(COLUMNS)]


def read_paper_claims(path: str | Path) -> pd.DataFrame:
    """A written claims_papers.csv: text as written, numbers as floats."""
    if not Path(path).is_file():
        raise ReportError(f"{path}: no such file")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in COLUMNS if c not in df.columns]
    if absent:
        raise ReportError(f"{path}: columns {absent} are missing")
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col].replace("", np.nan)).astype(float)
    return df[list(COLUMNS)]


# --------------------------------------------------------------------------- Markdown
def _minus(s: str) -> str:
    return s.replace("-", "−")


def _num(x: float, digits: int, sign: bool = True) -> str:
    return _minus(f"{x:{'+' if sign else ''}.{digits}f}")


def fmt_pp(p: float, alpha: float = 0.05) -> str:
    """A p-value as the tables show it: 2 significant digits, 3 where 2 would round it across
    ``alpha`` (0.0496 is 0.0496, not 0.05); a p that underflowed to 0 is ``<1e-300``."""
    if p == 0:
        return "<1e-300"
    text = fmt_p(p)
    if math.isfinite(p) and (float(text) < alpha) != (p < alpha):
        text = f"{p:.3g}"
    return text


def ours_text(r: Mapping[str, Any]) -> str:
    """The estimate with its 95 % CI, as the results page shows it."""
    kind = r["estimate_kind"]
    if kind == "difference":
        return (
            f"{fmt_error(r['ours_mode'])} vs {fmt_error(r['ours_versus'])}: {_num(r['change_pct'], 1)} % "
            f"[{_num(r['change_ci_low_pct'], 1)}, {_num(r['change_ci_high_pct'], 1)}]"
        )
    if kind == "correlation":
        return f"r = {_num(r['estimate'], 3, False)} [{_num(r['ci_low'], 3, False)}, {_num(r['ci_high'], 3, False)}]"
    digits = 3 if r["unit"].startswith("log10") else 1
    return f"{_num(r['estimate'], digits)} [{_num(r['ci_low'], digits)}, {_num(r['ci_high'], digits)}] {r['unit']}"


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def row_cells(r: Mapping[str, Any]) -> list[str]:
    """The results page's cells of one claims_papers.csv row (columns :data:`HEADER`)."""
    if r["kind"] == "none":
        test, ours, n, p, ph, q = f"not tested: {r['reason']}", "–", "–", "–", "–", "–"
    else:
        versus = f" vs {r['versus']}" if r["versus"] and r["estimate_kind"] != "slope" else ""
        test = f"{r['setting']} ({r['mode']}{versus})" if r["mode"] else str(r["setting"])
        if r["note"]:
            test += f"; {r['note']}"
        ours, n = ours_text(r), f"{int(r['n']):,} {r['n_unit']}"
        p, ph, q = fmt_pp(r["p"]), fmt_pp(r["p_holm"]), fmt_pp(r["q_bh"])
    return [_md(x) for x in (r["key"], r["id"], r["claim"], r["paper_number"], test, ours, n, p, ph, q, r["verdict"])]


def verdict_counts(df: pd.DataFrame) -> dict[str, int]:
    return {v: int((df["verdict"] == v).sum()) for v in VERDICTS}


def count_sentence(df: pd.DataFrame) -> str:
    """The headline count by verdict, as the results page states it."""
    k = verdict_counts(df)
    tested = len(df) - k["not tested"]
    return (
        f"Of the papers' claims tested here ({tested} tests), {k['reproduced']} reproduced, "
        f"{k['not reproduced']} not reproduced, {k['contradicted']} contradicted; "
        f"{k['not tested']} claims not tested"
    )


_COUNT_RE = re.compile(
    r"Of the papers' claims tested here \((\d+) tests\), (\d+) reproduced, (\d+) not reproduced, "
    r"(\d+) contradicted; (\d+) claims not tested"
)


def papers_block(df: pd.DataFrame, declared_rel: str, folder_rel: str, alpha: float = 0.05) -> str:
    """The results page's block: where it comes from, the count by verdict, the table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in df.to_dict("records")]
    family = df.loc[df["family"] != "", "family"]
    size = int(df["family_size"].max()) if df["family_size"].notna().any() else 0
    return "\n".join(
        [
            SOURCE_MARK.format(declared_rel, folder_rel),
            f"{count_sentence(df)}. One family (`{family.iloc[0] if len(family) else '–'}`, {size} tests): "
            f"p is the raw two-sided p, p Holm its Holm-adjusted value over the family, q BH its "
            f"Benjamini–Hochberg q; a verdict needs p Holm < {alpha}. Written from "
            f"[`{folder_rel}/{CSV_NAME}`]({folder_rel}/{CSV_NAME}), declared in "
            f"[`{Path(declared_rel).name}`]({declared_rel}).",
            "",
            *lines,
        ]
    )


def _markers(text: str, page: Path) -> tuple[int, int]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(f"{page}: needs one {BEGIN} followed by one {END} (where the papers' claims go)")
    return text.index(BEGIN) + len(BEGIN), text.index(END)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def rewrite_papers(declared_path: str | Path, folder: str | Path, page: str | Path) -> pd.DataFrame:
    """Write ``<folder>/claims_papers.csv`` from the declaration and the folder's tables, and the
    page's block between :data:`BEGIN` and :data:`END` from that CSV."""
    declared = load_declared(declared_path)
    df = build_paper_claims(declared, read_tables(folder))
    io.write_csv(df, Path(folder) / CSV_NAME)
    df = read_paper_claims(Path(folder) / CSV_NAME)
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(text, path)
    base = path.parent
    block = papers_block(df, _rel(Path(declared_path), base), _rel(Path(folder), base), declared["alpha"])
    new = text[:start] + "\n" + block + "\n" + text[end:]
    if new != text:
        io.write_text(path, new)
    return df


def check_papers(page: str | Path) -> list[str]:
    """Problems with the page's papers' claims: a cell or the count sentence that differs from
    claims_papers.csv, a claim missing or extra, and a CSV number, verdict or quoted paper number
    that its declaration and published tables do not give. Empty when all agree; a page without
    the block has none."""
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text and END not in text:
        return []
    try:
        start, end = _markers(text, path)
    except ReportError as err:
        return [str(err)]
    block = text[start:end]
    src = _SOURCE_RE.search(block)
    if src is None:
        return [f"{path}: the papers' block does not say where it comes from ({SOURCE_MARK.format('…', '…')})"]
    declared_path, folder = (path.parent / src.group(1)), (path.parent / src.group(2))
    try:
        df = read_paper_claims(folder / CSV_NAME)
        again = build_paper_claims(load_declared(declared_path), read_tables(folder))
    except (ReportError, FileNotFoundError) as err:
        return [f"{path}: papers' claims: {err}"]
    problems = _compare_csv(df, again, folder / CSV_NAME)
    expected = {str(r["key"]): row_cells(r) for r in df.to_dict("records")}
    seen: set[str] = set()
    for cells in table_rows(block, HEADER):
        key = cells[0] if cells else ""
        if key not in expected:
            problems.append(f"{path}: papers' claims row {key!r} is not in {folder / CSV_NAME}")
            continue
        seen.add(key)
        if cells != expected[key]:
            for col, got, want in zip(HEADER, cells, expected[key], strict=False):
                if got != want:
                    problems.append(f"{path}: papers' claim {key}: {col} is {got!r}, {CSV_NAME} gives {want!r}")
            if len(cells) != len(HEADER):
                problems.append(f"{path}: papers' claim {key}: {len(cells)} cells, expected {len(HEADER)}")
    problems += [
        f"{path}: papers' claim {k} of {CSV_NAME} is missing from the table" for k in expected if k not in seen
    ]
    k = verdict_counts(df)
    want = (len(df) - k["not tested"], k["reproduced"], k["not reproduced"], k["contradicted"], k["not tested"])
    for m in _COUNT_RE.finditer(text):
        if tuple(int(g) for g in m.groups()) != want:
            problems.append(f"{path}: {m.group(0)!r} does not match {CSV_NAME} ({count_sentence(df)})")
    if not _COUNT_RE.search(block):
        problems.append(f"{path}: the papers' block lacks its count by verdict")
    return problems


def _compare_csv(mine: pd.DataFrame, want: pd.DataFrame, where: Path) -> list[str]:
    problems = []
    if list(mine["key"]) != list(want["key"]):
        return [f"{where}: claims {list(mine['key'])}, its declaration gives {list(want['key'])}"]
    for (_, a), (_, b) in zip(mine.iterrows(), want.iterrows(), strict=True):
        for col in NUMERIC:
            x, y = float(a[col]), float(b[col])
            if not (x == y or (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-300)):
                problems.append(f"{where}: claim {a['key']}: {col} = {x!r}, its declaration and tables give {y!r}")
        for col in TEXT:
            if str(a[col]) != str(b[col] if isinstance(b[col], str) else ""):
                problems.append(f"{where}: claim {a['key']}: {col} = {a[col]!r}, its declaration gives {b[col]!r}")
    return problems


def main_papers(paths: Sequence[str]) -> list[str]:
    """``python -m tlcgcnn.report papers DECLARATION FOLDER PAGE``: write, then check."""
    declared, folder, page = paths
    rewrite_papers(declared, folder, page)
    return check_papers(page)
