"""The published results of a run: tables, figures, the papers' claims, a summary and provenance.

``<report.dir>/<name>/`` (default ``docs/results/<name>/``) is what a finished run puts into the
repository, built only when asked for (rules/report.smk):

* ``tables/*.csv``: copies of the run's statistics tables (``results/<name>/stats/``,
  ``protocol.csv`` included);
* ``figures/*.png``: copies of the figures the config requests (the registry's ``requested``);
* ``claims.csv``: one row per claim of the papers (config ``report.claims``): the mode's and
  the compared mode's test error (mean over the paired seeds), the change in per cent, the
  paired t-test's p and Holm-adjusted p, and whether the claim held (:func:`verdict`);
* ``summary.md``: what ran, the claims, the paired t-tests per Holm family, every figure with
  its caption;
* ``provenance.json``: the data and config hashes the run records carry, the resolved config,
  the code commit (and whether the working tree differed from it), the machine, and the wall
  time per rule summed from the run's benchmark files.

A claim against the baseline mode takes its test from ``stats/ttests.csv`` (p, Holm-adjusted
p and Holm family as the statistics computed them). A claim against another mode is tested
here on the same seeds from ``stats/metrics.csv`` (paired t-test); those comparisons form
their own Holm family, :data:`OTHER_FAMILY`.

A claim of ``kind: multitask`` (MT-CGCNN) is about pretraining, not fine-tuning: the
multi-task source against the single-task source of its ``property`` on the same split at
pretraining ``size``, one row of ``stats/multitask.csv`` (paired t-test over the test crystals'
absolute errors, Holm-corrected within that table). Its claims.csv row puts the property in
``target``, the two sources in ``mode`` / ``versus`` and the number of test crystals in
``n_seeds`` (the pairs of its test).

A claim's ``mode`` (or ``versus``) ``selected:<source>`` is the transfer mode from that
pretraining source that ``stats/protocol.csv`` selected on validation data for the claim's
(target, size); where the cell has one mode from the source (no protocol group) it is that
mode (:func:`resolve_mode`). ``claims.csv`` keeps the written names and adds the ones used
(``resolved_mode``, ``resolved_versus``); a validation-selected mode against the baseline
takes its test from the ``selected_vs_scratch`` family.

:func:`rewrite_readme` writes the claims of one or more published folders between the README's
markers :data:`BEGIN` and :data:`END`; :func:`check_readme` and :func:`check_published`
verify that every number there is the one in the committed CSVs
(``python -m tlcgcnn.report.published readme|check``). Torch-free: pandas, numpy and scipy only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis.stats import FAMILIES, SELECTED_FAMILY, holm, paired, read_table
from tlcgcnn.config import SELECTED_MODE
from tlcgcnn.report.figures.labels import scheme
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

ALPHA = 0.05  # a claim holds when its Holm-adjusted p is below this
PAPERS = ("TL-CGCNN", "MT-CGCNN", "Berkeley")
OTHER_FAMILY = "claims_vs_other_modes"
SPEC_COLUMNS = ("id", "paper", "claim", "paper_value", "target", "size", "mode", "versus", "direction")
CLAIM_KINDS = ("compare", "multitask")
# what each kind of claim must say (config report.claims[]); a multitask claim's property
# becomes its claims.csv target
REQUIRED = {
    "compare": ("id", "paper", "claim", "paper_value", "target", "size", "mode", "direction"),
    "multitask": ("id", "paper", "claim", "paper_value", "property", "size", "direction"),
}
CLAIM_COLUMNS = (
    "id",
    "paper",
    "claim",
    "paper_value",
    "target",
    "target_label",
    "size",
    "mode",
    "versus",
    "resolved_mode",
    "resolved_versus",
    "direction",
    "metric",
    "ours_mode_error",
    "ours_versus_error",
    "change_pct",
    "n_seeds",
    "p",
    "p_holm",
    "holm_family",
    "held",
    "verdict",
    "kind",
)
# claims.csv columns a file written before they existed may lack, and their value there
OPTIONAL_COLUMNS = {"kind": "compare"}
NUMERIC_COLUMNS = ("ours_mode_error", "ours_versus_error", "change_pct", "n_seeds", "p", "p_holm")
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
FOLDER_MARK = "<!-- results:folder {} -->"
_FOLDER_RE = re.compile(r"<!-- results:folder (\S+) -->")
EMPTY_STATE = (
    "No results are published yet. `snakemake docs/results/<name>/summary.md --cores 2 --configfile <config file>` "
    "publishes a finished run to `docs/results/<name>/`; `make results-readme` then writes its claims here."
)
README_HEADER = (
    "id",
    "paper",
    "claim",
    "paper's number",
    "cell",
    "ours: mode vs compared (change)",
    "p (Holm)",
    "held",
)
# rules named by their benchmark files below results/<name>/benchmarks/ (rules/*.smk)
_BENCHMARK_RULES: tuple[tuple[str, str], ...] = (
    (r"evaluate/pretrain/[^/]+\.tsv", "evaluate_pretrain"),
    (r"external/[^/]+/ingest\.tsv", "ingest_external"),
    (r"external/[^/]+/featurize\.tsv", "featurize_external"),
    (r"external/[^/]+/overlap\.tsv", "external_overlap"),
    (r"external/[^/]+/[^/]+\.tsv", "evaluate_external"),
    (r"figures/[^/]+\.tsv", "figure"),
    (r"pretrain/[^/]+\.tsv", "pretrain"),
    (r"([^/]+)\.tsv", r"\1"),
)
REPORT_BENCHMARKS = "report"  # the report rules' own benchmark folder: not summed


class ReportError(ValueError):
    """Published results that cannot be built or do not agree with their sources."""


# --------------------------------------------------------------------------- claims
def verdict(mean_diff: float, p_holm: float, direction: str) -> str:
    """``held`` when the mode's error differs from the compared mode's in the claimed
    direction (``lower`` or ``higher``) with Holm-adjusted p < :data:`ALPHA`; ``reversed``
    when it differs significantly the other way; ``not significant`` otherwise; ``not
    tested`` when there is no p-value (fewer than two paired seeds, or identical errors)."""
    if direction not in ("lower", "higher"):
        raise ReportError(f"direction {direction!r} is neither 'lower' nor 'higher'")
    if p_holm is None or not math.isfinite(p_holm):
        return "not tested"
    if p_holm >= ALPHA:
        return "not significant"
    return "held" if (mean_diff < 0) == (direction == "lower") else "reversed"


def _same_size(column: pd.Series, size: Any) -> pd.Series:
    return column.astype(str) == str(size)


def _error_column(metrics: pd.DataFrame) -> str:
    return "error" if "error" in metrics.columns else "mae"


def _paired_from_metrics(c: Mapping[str, Any], metrics: pd.DataFrame, source: str) -> dict[str, Any]:
    """Paired t-test of the claim's mode against its ``versus`` on the seeds both ran."""
    cell = metrics[(metrics["target"] == c["target"]) & _same_size(metrics["size"], c["size"])]
    col = _error_column(metrics)
    runs = {}
    for key in ("mode", "versus"):
        sub = cell[cell["mode"] == c[key]]
        if sub.empty:
            raise ReportError(
                f"claim {c['id']}: {source} has no run of mode {c[key]!r} for target {c['target']} at size {c['size']}"
            )
        runs[key] = sub[["seed", col]].rename(columns={col: key})
    pairs = runs["versus"].merge(runs["mode"], on="seed")
    if pairs.empty:
        raise ReportError(
            f"claim {c['id']}: {source}: modes {c['mode']!r} and {c['versus']!r} share no seed "
            f"for target {c['target']} at size {c['size']}"
        )
    test = paired(pairs["versus"].to_numpy(float), pairs["mode"].to_numpy(float))
    task = (
        str(cell["task"].iloc[0]) if "task" in cell.columns and isinstance(cell["task"].iloc[0], str) else "regression"
    )
    return {
        "ours_mode_error": test["mae_mode"],
        "ours_versus_error": test["mae_baseline"],
        "n_seeds": test["n_pairs"],
        "p": test["p_value"],
        "metric": "1-roc_auc" if task == "classification" else "mae",
        "holm_family": OTHER_FAMILY,
    }


def selected_source(mode: str) -> str | None:
    """The pretraining source of a ``selected:<source>`` mode; None for a mode name."""
    return mode.removeprefix(SELECTED_MODE) if mode.startswith(SELECTED_MODE) else None


def resolve_mode(
    c: Mapping[str, Any], key: str, protocol: pd.DataFrame, metrics: pd.DataFrame, sources: Sequence[str]
) -> tuple[str, bool]:
    """The mode a claim's ``key`` (``mode`` or ``versus``) names, and whether the protocol
    table chose it. ``selected:<source>``: the mode ``protocol`` (stats/protocol.csv) marks
    ``selected`` (lowest validation score; the test set plays no part) for the claim's target,
    size and source; where it has no group for them, the one mode from that source that the
    cell ran (``metrics``). ``sources`` name (tests, metrics, protocol) in errors."""
    value = str(c[key])
    src = selected_source(value)
    if src is None:
        return value, False
    where, cell = f"claim {c['id']}: {key} {value}", f"target {c['target']} at size {c['size']}"
    if not protocol.empty:
        grp = protocol[
            (protocol["target"] == c["target"])
            & _same_size(protocol["size"], c["size"])
            & (protocol["pretrained"] == src)
        ]
        if len(grp):
            chosen = grp.loc[grp["selected"].astype(str) == "True", "mode"].unique()
            if len(chosen) != 1:
                raise ReportError(
                    f"{where}: {sources[2]} selects {len(chosen)} modes from {src} for {cell} "
                    "(expected 1: no validation scores?)"
                )
            return str(chosen[0]), True
    ran = (
        metrics[
            (metrics["target"] == c["target"]) & _same_size(metrics["size"], c["size"]) & (metrics["pretrained"] == src)
        ]
        if "pretrained" in metrics.columns
        else metrics.iloc[:0]
    )
    modes = sorted(ran["mode"].astype(str).unique()) if len(ran) else []
    if len(modes) != 1:
        raise ReportError(
            f"{where}: {sources[2]} has no selection from {src} for {cell}, "
            f"and {sources[1]} has {len(modes)} modes from it {modes} (expected 1)"
        )
    return modes[0], False


def _from_tests(
    c: Mapping[str, Any], tests: pd.DataFrame, source: str, selected_from: str | None = None
) -> dict[str, Any]:
    """The claim's test against the baseline: the ``selected_vs_scratch`` row of its source
    for a mode the protocol table selected (``selected_from``), the mode's own row otherwise."""
    if tests.empty:
        raise ReportError(f"claim {c['id']}: {source} is empty (no paired t-tests)")
    selected = tests.get("holm_family", pd.Series("", index=tests.index)) == SELECTED_FAMILY
    if selected_from is None:
        family = ~selected
    else:
        family = selected & (tests.get("pretrained", pd.Series("", index=tests.index)) == selected_from)
    hit = tests[
        family
        & (tests["target"] == c["target"])
        & _same_size(tests["size"], c["size"])
        & (tests["mode"] == c["mode"])
        & (tests["baseline"] == c["versus"])
    ]
    if len(hit) != 1:
        fam_text = f" in family {SELECTED_FAMILY} from {selected_from}" if selected_from is not None else ""
        raise ReportError(
            f"claim {c['id']}: {source} has {len(hit)} rows{fam_text} "
            f"for target {c['target']}, size {c['size']}, mode {c['mode']} "
            f"vs {c['versus']} (expected 1: is that cell part of the run?)"
        )
    r = hit.iloc[0]
    return {
        "ours_mode_error": float(r["mae_mode"]),
        "ours_versus_error": float(r["mae_baseline"]),
        "n_seeds": int(r["n_pairs"]),
        "p": float(r["p_value"]),
        "p_holm": float(r["p_holm"]),
        "holm_family": str(r["holm_family"]),
        "metric": str(r["metric"]) if "metric" in r.index else "mae",
    }


def property_label(prop: str) -> str:
    """A property's description with its units ("Fermi energy (eV)"); the name if unknown."""
    from tlcgcnn.data.properties import PROPERTIES

    p = PROPERTIES.get(prop)
    return f"{p.description} ({p.unit})" if p is not None else prop


def _multitask_claim(c: Mapping[str, Any], multitask: pd.DataFrame, source: str) -> dict[str, Any]:
    """A ``kind: multitask`` claim from its row of stats/multitask.csv (property, size)."""
    hit = (
        multitask[(multitask["property"] == c["property"]) & _same_size(multitask["size"], c["size"])]
        if not multitask.empty
        else multitask
    )
    if len(hit) != 1:
        raise ReportError(
            f"claim {c['id']}: {source} has {len(hit)} rows for property {c['property']} "
            f"at pretraining size {c['size']} "
            "(expected 1: a multi-task source and a single-task source of that property on one split)"
        )
    r = hit.iloc[0]
    return {
        "id": c["id"],
        "paper": c["paper"],
        "claim": c["claim"],
        "paper_value": c["paper_value"],
        "target": c["property"],
        "target_label": property_label(str(c["property"])),
        "size": c["size"],
        "mode": str(r["mt_source"]),
        "versus": str(r["st_source"]),
        "resolved_mode": str(r["mt_source"]),
        "resolved_versus": str(r["st_source"]),
        "direction": c["direction"],
        "metric": "mae",
        "ours_mode_error": float(r["mae_mt"]),
        "ours_versus_error": float(r["mae_st"]),
        "n_seeds": int(r["n_test"]),
        "p": float(r["p"]),
        "p_holm": float(r["p_holm"]),
        "holm_family": str(r["holm_family"]),
        "kind": "multitask",
    }


def build_claims(
    claims: Sequence[Mapping[str, Any]],
    tests: pd.DataFrame,
    metrics: pd.DataFrame,
    baseline: str,
    labels: Mapping[str, str] | None = None,
    sources: Sequence[str] = ("stats/ttests.csv", "stats/metrics.csv", "stats/protocol.csv"),
    protocol: pd.DataFrame | None = None,
    multitask: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per claim (columns :data:`CLAIM_COLUMNS`). ``claims`` are resolved config
    entries (``versus`` filled; tlcgcnn.config.Config.claims); ``tests``, ``metrics`` and
    ``protocol`` the run's stats tables (``protocol`` resolves ``selected:`` modes,
    :func:`resolve_mode`); ``multitask`` stats/multitask.csv (``kind: multitask`` claims);
    ``sources`` name the tables in error messages (a fourth, the multitask table's)."""
    protocol = pd.DataFrame() if protocol is None else protocol
    multitask = pd.DataFrame() if multitask is None else multitask
    mt_source = sources[3] if len(sources) > 3 else "stats/multitask.csv"
    rows: list[dict[str, Any]] = []
    for c in claims:
        kind = str(c.get("kind") or "compare")
        if kind not in CLAIM_KINDS:
            raise ReportError(f"claim {c.get('id', '?')}: kind {kind!r} is not one of {CLAIM_KINDS}")
        missing = [
            k for k in REQUIRED[kind] if k not in c or c[k] is None or (isinstance(c[k], float) and math.isnan(c[k]))
        ]
        if missing:
            raise ReportError(f"claim {c.get('id', '?')}: missing {missing}")
        if c["paper"] not in PAPERS:
            raise ReportError(f"claim {c['id']}: paper {c['paper']!r} is not one of {PAPERS}")
        if kind == "multitask":
            rows.append(_multitask_claim(c, multitask, mt_source))
            continue
        spec = {k: c.get(k) for k in SPEC_COLUMNS}
        spec["versus"] = spec["versus"] or baseline
        spec["resolved_mode"], chosen = resolve_mode(spec, "mode", protocol, metrics, sources)
        spec["resolved_versus"], _ = resolve_mode(spec, "versus", protocol, metrics, sources)
        used = {**spec, "mode": spec["resolved_mode"], "versus": spec["resolved_versus"]}
        if used["versus"] == baseline:
            got = _from_tests(used, tests, sources[0], selected_source(spec["mode"]) if chosen else None)
        else:
            got = _paired_from_metrics(used, metrics, sources[1])
        rows.append(
            {**spec, "target_label": (labels or {}).get(spec["target"], spec["target"]), **got, "kind": "compare"}
        )
    df = pd.DataFrame(rows, columns=[c for c in CLAIM_COLUMNS if c not in ("change_pct", "held", "verdict")])
    if df.empty:
        return pd.DataFrame(columns=list(CLAIM_COLUMNS))
    other = df["holm_family"] == OTHER_FAMILY
    if other.any():  # Holm within the claims' own comparisons, each distinct comparison once
        keys = ["target", "size", "resolved_mode", "resolved_versus"]
        distinct = df[other].assign(size=df["size"].astype(str)).drop_duplicates(keys)
        adjusted = dict(zip(map(tuple, distinct[keys].to_numpy()), holm(distinct["p"].to_numpy(float)), strict=True))
        df.loc[other, "p_holm"] = [adjusted[(t, str(s), m, v)] for t, s, m, v in df.loc[other, keys].to_numpy()]
    df["change_pct"] = 100.0 * (df["ours_mode_error"] - df["ours_versus_error"]) / df["ours_versus_error"]
    df["verdict"] = [
        verdict(m - v, float(p), d)
        for m, v, p, d in zip(
            df["ours_mode_error"], df["ours_versus_error"], df["p_holm"], df["direction"], strict=True
        )
    ]
    df["held"] = df["verdict"] == "held"
    return df[list(CLAIM_COLUMNS)]


def read_claims(path: str | Path) -> pd.DataFrame:
    """A claims.csv: text columns as written, numbers as floats, ``held`` as booleans."""
    if not Path(path).is_file():
        raise ReportError(f"{path}: no such claims file")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col, value in OPTIONAL_COLUMNS.items():
        if col not in df.columns:
            df[col] = value
    absent = [c for c in CLAIM_COLUMNS if c not in df.columns]
    if absent:
        raise ReportError(f"{path}: columns {absent} are missing (expected {list(CLAIM_COLUMNS)})")
    for c in NUMERIC_COLUMNS:
        df[c] = pd.to_numeric(df[c].replace("", np.nan))
    bad = sorted(set(df["held"]) - {"True", "False"})
    if bad:
        raise ReportError(f"{path}: column held has values {bad} (expected True / False)")
    df["held"] = df["held"] == "True"
    return df


# --------------------------------------------------------------------------- formatting
def fmt_error(x: float) -> str:
    """A test error: 4 significant digits (1.385, 0.0934)."""
    return "–" if not math.isfinite(x) else f"{x:.4g}"


def fmt_change(pct: float) -> str:
    """A change in per cent with its sign (−46 %, +11 %)."""
    if not math.isfinite(pct):
        return "–"
    return f"{pct:+.0f} %".replace("-", "−")


def fmt_p(p: float) -> str:
    """A p-value: 2 significant digits, short exponents (0.0019, 6.9e-5, 1)."""
    if p is None or not math.isfinite(p):
        return "–"
    s = f"{p:.2g}"
    if "e" in s:
        mantissa, exp = s.split("e")
        s = f"{mantissa}e{int(exp)}"
    return s


def held_text(verdict_text: str) -> str:
    return "yes" if verdict_text == "held" else f"no: {verdict_text}"


def _cell(text: Any) -> str:
    """Text for a Markdown table cell (pipes escaped, one line)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def mode_label(written: str, resolved: str) -> str:
    """A claim's mode as tables show it: the name, or for ``selected:<source>`` e.g.
    "ef_head (selected on validation from zoo_ef)"."""
    src = selected_source(str(written))
    return str(resolved) if src is None else f"{resolved} (selected on validation from {src})"


def claim_cells(row: Mapping[str, Any]) -> list[str]:
    """The README / summary table cells of one claims.csv row (columns :data:`README_HEADER`)."""
    if str(row.get("kind") or "compare") == "multitask":
        mode, versus = f"multi-task {row['resolved_mode']}", f"single-task {row['resolved_versus']}"
        cell = f"{row['target_label']}, pretraining n = {row['size']} ({int(row['n_seeds'])} test crystals)"
    else:
        mode, versus = mode_label(row["mode"], row["resolved_mode"]), mode_label(row["versus"], row["resolved_versus"])
        cell = f"{row['target_label']}, n = {row['size']}"
    ours = (
        f"{mode} {fmt_error(float(row['ours_mode_error']))} vs {versus} "
        f"{fmt_error(float(row['ours_versus_error']))} ({fmt_change(float(row['change_pct']))})"
    )
    return [
        _cell(x)
        for x in (
            row["id"],
            row["paper"],
            row["claim"],
            row["paper_value"],
            cell,
            ours,
            fmt_p(float(row["p_holm"])),
            held_text(str(row["verdict"])),
        )
    ]


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def claims_table(claims: pd.DataFrame) -> str:
    """The claims as a Markdown table; a sentence when there are none."""
    if claims.empty:
        return "No claims are configured for this run (`report.claims`)."
    return _table(README_HEADER, (claim_cells(r) for r in claims.to_dict("records")))


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip() for c in cells]


# --------------------------------------------------------------------------- summary
def _thousands(n: Any) -> str:
    return f"{int(n):,}"


def _mode_text(name: str, mode: Mapping[str, Any], baseline: str) -> str:
    if mode.get("estimator"):
        text = f"`{name}`: {mode['estimator']} on composition descriptors"
    elif mode.get("pretrained"):
        text = f"`{name}`: from `{mode['pretrained']}`, {scheme(mode.get('freeze', 0), mode.get('reinit', 'none'))}"
    else:
        text = f"`{name}`: from scratch"
    if mode.get("model"):
        text += f" (model variant `{mode['model']}`)"
    return text + (" (the baseline)" if name == baseline else "")


def _seeds_text(ft: Mapping[str, Any]) -> str:
    seeds = list(ft.get("seeds") or [])
    text = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"
    if ft.get("seeds_large") and ft.get("large_from") is not None:
        text += f"; {len(ft['seeds_large'])} from size {ft['large_from']} on"
    return text


def _what_ran(
    s: Mapping[str, Any],
    ingest: Mapping[str, Any],
    pretrain: Sequence[Mapping[str, Any]],
    metrics: pd.DataFrame,
    wall: Mapping[str, Any],
) -> list[str]:
    cfg = s["config"]
    ft = cfg["finetune"]
    files = ", ".join(f"`{f}`" for f in s.get("configfiles") or []) or "(given on the command line)"
    out = [
        f"* Config: {files}, name `{cfg['name']}` "
        f"(resolved config sha256 `{s['config_sha256'][:12]}…`; all of it in provenance.json)."
    ]
    out.append(
        f"* Data: `{ingest.get('input')}` (sha256 `{str(ingest.get('input_sha256'))[:12]}…`): "
        f"{_thousands(ingest.get('rows_kept', 0))} crystals kept of {_thousands(ingest.get('rows_in', 0))}."
    )
    pre_by_name = {str(p.get("pretrain", p.get("target"))): p for p in pretrain}
    for src in cfg.get("pretrain") or []:
        t = src["target"]
        what = "+".join(t.get("properties") or [t["property"]])
        line = f"* Pretraining source `{src['name']}`: {what}"
        if src.get("checkpoint"):
            line += f", checkpoint file `{src['checkpoint']}`"
        else:
            line += f" ({t.get('subset', 'all')} crystals, size {src['size']}, seed {src['seed']})"
        m = pre_by_name.get(src["name"])
        if m is not None and m.get("mae") is not None:
            line += (
                f": test MAE {fmt_error(float(m['mae']))} on {_thousands(m['n_test'])} test crystals "
                f"after training on {_thousands(m['n_train'])}"
            )
        out.append(line + ".")
    labels = s.get("labels") or {}
    for t in ft["targets"]:
        sizes = t.get("sizes") or ft["sizes"]
        out.append(
            f"* Target `{t['name']}` ({labels.get(t['name'], t['name'])}): {t['property']}"
            f"{', log10' if t.get('transform') == 'log10' else ''}, {t.get('subset', 'all')} crystals, "
            f"{t.get('task', 'regression')}; "
            f"training sizes {', '.join(map(str, sizes))}."
        )
    out.append(
        f"* Seeds: {_seeds_text(ft)}. Modes: "
        + "; ".join(_mode_text(n, m, s["baseline"]) for n, m in ft["modes"].items())
        + "."
    )
    if not metrics.empty:
        cells = metrics.drop_duplicates(["target", "size", "mode"]).shape[0]
        out.append(
            f"* Runs: {_thousands(len(metrics))} fine-tuning runs in {_thousands(cells)} cells, "
            "each scored on its target's fixed test set."
        )
    out.extend(_devices_text(devices(metrics, pretrain)))
    if wall.get("jobs"):
        out.append(
            f"* Job time: {_duration(wall['total_s'])}, "
            f"the wall times of {_thousands(wall['jobs'])} jobs summed (jobs that ran "
            "in parallel overlap, so the run itself took less; per rule in provenance.json)"
            + (f"; CPU time {_duration(wall['total_cpu_s'])}" if wall.get("total_cpu_s") is not None else "")
            + "."
        )
    return out


def _where(rec: Mapping[str, Any]) -> str | None:
    """A run's device in words: "cuda (NVIDIA H200)", "cpu (Intel(R) Xeon(R) Processor)";
    runs recorded before the chip was (``hardware``) give the device type alone."""
    dev = rec.get("device")
    if not isinstance(dev, str) or not dev:
        return None
    hw = rec.get("hardware")
    return f"{dev} ({hw})" if isinstance(hw, str) and hw else dev


def _kind(where: str) -> str:
    """The device type of :func:`_where`'s words ("cuda (NVIDIA H200)" → "cuda")."""
    return where.split(" (", 1)[0].split(":", 1)[0]


def devices(metrics: pd.DataFrame, pretrain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the runs computed: fine-tuning runs counted per device (and chip, where
    recorded) and precision; the cells (target/n<size>/mode) with seeds on another device
    type than most runs (cpu / cuda), with how many of their seeds; and each pretraining
    source's device. A study that moved between machines
    (a borrowed GPU, a new host) says so here rather than in logs."""
    runs: dict[str, dict[str, int]] = {}
    per_cell: dict[str, dict[str, int]] = {}
    cols = [c for c in ("target", "size", "mode") if c in metrics.columns]
    for rec in metrics.to_dict("records") if len(cols) == 3 else []:
        where = _where(rec)
        if where is None:
            continue  # a scikit-learn baseline: no device recorded
        prec = (
            rec.get("precision") if isinstance(rec.get("precision"), str) else "precision not recorded"
        )  # frozen-feature fits
        runs.setdefault(where, {}).setdefault(prec, 0)
        runs[where][prec] += 1
        size = rec["size"]
        cell = f"{rec['target']}/n{int(size) if isinstance(size, float) and size.is_integer() else size}/{rec['mode']}"
        per_cell.setdefault(cell, {}).setdefault(where, 0)
        per_cell[cell][where] += 1
    kinds: dict[str, int] = {}
    for where, by in runs.items():
        kinds[_kind(where)] = kinds.get(_kind(where), 0) + sum(by.values())
    main = max(kinds, key=lambda k: kinds[k]) if kinds else None
    off = {
        cell: {"seeds": dict(sorted(by.items())), "of": sum(by.values())}
        for cell, by in sorted(
            per_cell.items(), key=lambda kv: (kv[0].split("/")[0], _size_key(kv[0].split("/")[1][1:]), kv[0])
        )
        if {_kind(w) for w in by} - {main}
    }
    sources = {str(p.get("pretrain", p.get("target"))): _where(p) for p in pretrain}
    return {"finetune_runs": runs, "main_device": main, "cells_off_main_device": off, "pretrain": sources}


def _devices_text(dev: Mapping[str, Any]) -> list[str]:
    runs = dev["finetune_runs"]
    out = []
    if runs:
        parts = [
            f"{_thousands(sum(by.values()))} on {where} "
            f"({', '.join(f'{p} {_thousands(n)}' for p, n in sorted(by.items()))})"
            for where, by in sorted(runs.items(), key=lambda kv: -sum(kv[1].values()))
        ]
        line = "* Devices: fine-tuning runs " + "; ".join(parts) + "."
        off = dev["cells_off_main_device"]
        if off:
            cells = []
            for cell, v in off.items():
                seeds = "; ".join(
                    f"{n} of {v['of']} on {w}" for w, n in v["seeds"].items() if _kind(w) != dev["main_device"]
                )
                cells.append(f"`{cell}` ({seeds})")
            line += f" Cells with seeds off {dev['main_device']}: " + ", ".join(cells) + "."
        out.append(line)
    by_where: dict[str, list[str]] = {}
    for name, where in dev["pretrain"].items():
        by_where.setdefault(where or "device not recorded", []).append(f"`{name}`")
    if len(by_where) > 1:
        out.append(
            "* Pretraining sources by device: "
            + "; ".join(f"{w}: {', '.join(n)}" for w, n in sorted(by_where.items()))
            + "."
        )
    elif by_where and "device not recorded" not in by_where:
        out.append(f"* Pretraining sources: all on {next(iter(by_where))}.")
    return out


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m} min {sec} s" if h else f"{m} min {sec} s"


def compute_table(wall: Mapping[str, Any]) -> str:
    """Job time per rule (:func:`wall_times`), longest first, with the total: the rule,
    its jobs, the summed wall time of its jobs and, where recorded, their CPU time."""
    per = sorted((wall.get("per_rule") or {}).items(), key=lambda kv: -kv[1]["s"])
    rows = [
        (f"`{rule}`", _thousands(v["jobs"]), _duration(v["s"]), _duration(v["cpu_s"]) if "cpu_s" in v else "–")
        for rule, v in per
    ]
    cpu_total = wall.get("total_cpu_s")
    rows.append(
        (
            "**total**",
            _thousands(wall.get("jobs", 0)),
            _duration(float(wall.get("total_s", 0.0))),
            _duration(cpu_total) if cpu_total is not None else "–",
        )
    )
    return _table(("rule", "jobs", "job time", "CPU time"), rows)


def _family_table(tests: pd.DataFrame, labels: Mapping[str, str]) -> str:
    header = (
        "target",
        "n",
        "mode",
        "compared with",
        "error (compared)",
        "error (mode)",
        "change",
        "p",
        "p (Holm)",
        "pairs",
    )
    rows = []
    ordered = tests.assign(_size=tests["size"].map(_size_key)).sort_values(["target", "_size", "mode"])
    for r in ordered.to_dict("records"):
        change = 100.0 * (r["mae_mode"] - r["mae_baseline"]) / r["mae_baseline"]
        rows.append(
            [
                _cell(x)
                for x in (
                    labels.get(r["target"], r["target"]),
                    r["size"],
                    r["mode"],
                    r["baseline"],
                    fmt_error(r["mae_baseline"]),
                    fmt_error(r["mae_mode"]),
                    fmt_change(change),
                    fmt_p(r["p_value"]),
                    fmt_p(r["p_holm"]),
                    int(r["n_pairs"]),
                )
            ]
        )
    return _table(header, rows)


def correlation_text(c: Mapping[str, Any]) -> str:
    """One sentence on two properties' correlation (stats/ef_eg_correlation.json)."""
    return (
        f"Over the {_thousands(c['n'])} crystals with both, "
        f"{property_label(str(c['x']))} and {property_label(str(c['y']))} "
        f"have Pearson r = {float(c['pearson_r']):.3f} "
        f"(95 % CI {float(c['pearson_ci_low']):.3f} to {float(c['pearson_ci_high']):.3f}, "
        f"p = {fmt_p(float(c['pearson_p']))}) and Spearman ρ = {float(c['spearman_rho']):.3f}."
    )


def _multitask_table(mt: pd.DataFrame) -> str:
    header = (
        "property",
        "pretraining n",
        "multi-task",
        "single-task",
        "test crystals",
        "MAE (multi)",
        "MAE (single)",
        "change",
        "Spearman ρ (multi / single)",
        "p (Holm)",
    )
    rows = []
    ordered = mt.assign(_size=mt["size"].map(_size_key)).sort_values(["property", "_size"])
    for r in ordered.to_dict("records"):
        rows.append(
            [
                _cell(x)
                for x in (
                    property_label(str(r["property"])),
                    r["size"],
                    r["mt_source"],
                    r["st_source"],
                    int(r["n_test"]),
                    fmt_error(float(r["mae_mt"])),
                    fmt_error(float(r["mae_st"])),
                    fmt_change(float(r["change_pct"])),
                    f"{float(r['spearman_mt']):.4f} / {float(r['spearman_st']):.4f}",
                    fmt_p(float(r["p_holm"])),
                )
            ]
        )
    return _table(header, rows)


def _size_key(size: Any) -> float:
    return math.inf if str(size) == "all" else float(size)


def _caption_text(rst: str) -> str:
    """A report caption (reStructuredText) as one Markdown line."""
    return " ".join(rst.replace("``", "`").split())


def summary_markdown(
    settings: Mapping[str, Any],
    claims: pd.DataFrame,
    tests: pd.DataFrame,
    metrics: pd.DataFrame,
    ingest: Mapping[str, Any],
    pretrain: Sequence[Mapping[str, Any]],
    figures: Sequence[tuple[str, str]],
    tables: Sequence[str],
    wall: Mapping[str, Any],
    multitask: pd.DataFrame | None = None,
    correlation: Mapping[str, Any] | None = None,
) -> str:
    """The human summary: ``figures`` are (stem, link relative to the summary), ``tables``
    links to the published tables; ``multitask`` (stats/multitask.csv) and ``correlation``
    (stats/ef_eg_correlation.json) get their own sections."""
    name = settings["config"]["name"]
    labels = settings.get("labels") or {}
    parts = [
        f"# Results: `{name}`",
        f"Published from `{settings['results']}/` by the rule `report` (`tlcgcnn.report.published`); "
        "data and config hashes, "
        "code commit, machine and wall time per rule are in [provenance.json](provenance.json). "
        f"Errors are test errors on each target's fixed test set (MAE in the target's units; 1 − ROC-AUC for "
        f"classification), mean over the paired seeds.",
        "## What ran",
        "\n".join(_what_ran(settings, ingest, pretrain, metrics, wall)),
        "## Claims of the papers",
        f"A claim holds when its mode's test error is lower (or, where claimed, higher) than the compared mode's "
        f"with a Holm-adjusted paired t-test p < {ALPHA}; *not significant*: p ≥ {ALPHA}; *reversed*: significant "
        f"the other way. Comparisons with the baseline are Holm-corrected within their family in "
        f"`tables/ttests.csv`; the claims' other comparisons within their own family (`{OTHER_FAMILY}`). "
        "All numbers: [claims.csv](claims.csv).",
        claims_table(claims),
        "## Paired t-tests against the baseline",
    ]
    if tests.empty:
        parts.append("No paired tests (no mode besides the baseline).")
    for fam, grp in tests.groupby("holm_family", sort=True) if not tests.empty else []:
        parts.append(f"### `{fam}`")
        parts.append(f"{FAMILIES.get(str(fam), str(fam))}; Holm correction over these {len(grp)} tests.")
        parts.append(_family_table(grp, labels))
    if multitask is not None and not multitask.empty:
        parts.append("## Multi-task vs single-task pretraining (MT-CGCNN)")
        parts.append(
            "Each multi-task source against the single-task source of one of its properties, "
            "trained on the same crystals and scored on the same test set; "
            "paired t-test over the test crystals' absolute errors, Holm-corrected over "
            f"these {len(multitask)} tests. Errors in the property's units."
        )
        parts.append(_multitask_table(multitask))
    if correlation:
        parts.append("## ΔEf and Eg (TL-CGCNN's density scatter)")
        parts.append(correlation_text(correlation))
    parts.append("## Figures")
    captions = settings.get("captions") or {}
    if not figures:
        parts.append("The config requests no figures.")
    for stem, link in figures:
        caption = _caption_text(captions.get(stem, stem))
        parts.append(f"**{stem}.** {caption}\n\n![{caption.replace('[', '(').replace(']', ')')}]({link})")
    if wall.get("per_rule"):
        parts.append("## Compute per rule")
        parts.append(
            "The wall time of each rule's jobs summed from Snakemake's benchmark files "
            "(jobs that ran in parallel overlap), "
            "and their CPU time where recorded."
        )
        parts.append(compute_table(wall))
    parts.append("## Tables")
    parts.append("\n".join(f"* [{Path(t).name}]({t})" for t in tables) or "None.")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- provenance
def benchmark_rule(relpath: str, baseline_modes: Iterable[str] = (), frozen_modes: Iterable[str] = ()) -> str | None:
    """The rule that wrote a benchmark file (path below ``results/<name>/benchmarks/``, as
    rules/*.smk name them); None for the report rules' own files. A fine-tuning cell of a
    scikit-learn baseline mode is ``finetune_baseline``, of a frozen-features mode
    ``finetune_frozen``."""
    rel = relpath.replace(os.sep, "/")
    if rel.split("/")[0] == REPORT_BENCHMARKS:
        return None
    m = re.fullmatch(r"finetune/[^/]+/n[^/]+/([^/]+)\.tsv", rel)
    if m:
        mode = m.group(1)
        return (
            "finetune_baseline"
            if mode in set(baseline_modes)
            else "finetune_frozen"
            if mode in set(frozen_modes)
            else "finetune"
        )
    for pattern, rule in _BENCHMARK_RULES:
        hit = re.fullmatch(pattern, rel)
        if hit:
            return hit.expand(rule)
    return rel.removesuffix(".tsv")


def wall_times(
    bench_dir: str | Path, baseline_modes: Iterable[str] = (), frozen_modes: Iterable[str] = ()
) -> dict[str, Any]:
    """Wall time (the ``s`` column of Snakemake's benchmark files) summed per rule, with the
    number of jobs, and the total; the report rules' own files are left out. Where the files
    have Snakemake's ``cpu_time`` column its sum is ``cpu_s`` (CPU seconds: unlike the wall
    time, not inflated when other work shared the machine); ``jobs`` counts the benchmark
    files (one per job)."""
    root = Path(bench_dir)
    per: dict[str, dict[str, Any]] = {}
    jobs = 0
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rule = benchmark_rule(str(path.relative_to(root)), baseline_modes, frozen_modes)
        if rule is None:
            continue
        df = pd.read_csv(path, sep="\t")
        if "s" not in df.columns:
            raise ReportError(f"{path}: a benchmark file without the `s` (seconds) column")
        jobs += 1
        entry = per.setdefault(rule, {"s": 0.0, "jobs": 0})
        entry["s"] += float(df["s"].sum())
        entry["jobs"] += 1
        if "cpu_time" in df.columns:
            entry["cpu_s"] = entry.get("cpu_s", 0.0) + float(
                pd.to_numeric(df["cpu_time"], errors="coerce").fillna(0.0).sum()
            )
    per = {
        k: {"s": round(v["s"], 2), "jobs": v["jobs"], **({"cpu_s": round(v["cpu_s"], 2)} if "cpu_s" in v else {})}
        for k, v in sorted(per.items())
    }
    out = {"per_rule": per, "total_s": round(sum(v["s"] for v in per.values()), 2), "jobs": jobs, "source": str(root)}
    if any("cpu_s" in v for v in per.values()):
        out["total_cpu_s"] = round(sum(v.get("cpu_s", 0.0) for v in per.values()), 2)
    return out


def _run(cmd: list[str], cwd: str | Path | None = None) -> str | None:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def code_state(repo: str | Path, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The repository's commit and whether tracked files differ from it (the paths in
    ``exclude``, e.g. the published folder being rewritten, do not count)."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    dirty = None
    if commit is not None:
        spec = [f":(exclude){e}" for e in exclude]
        out = _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *spec], cwd=repo)
        dirty = None if out is None else bool(out)
    return {"git_commit": commit, "git_dirty": dirty, "dirty_ignores": list(exclude)}


def machine() -> dict[str, Any]:
    """The machine that built the report: CPU, cores, memory, Python, torch version and GPU
    (without importing torch). The training jobs' devices are in the run records."""
    from importlib import metadata

    from tlcgcnn.report.provenance import cpu_model

    cpu = cpu_model()
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = None
    try:
        torch_version: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    gpu = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) if shutil.which("nvidia-smi") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1) if ram else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "gpu": gpu.splitlines() if gpu else None,
        "host": platform.node(),
    }


def _distinct(frames: Iterable[Mapping[str, Any]] | pd.DataFrame, key: str) -> list[str]:
    if isinstance(frames, pd.DataFrame):
        values: Iterable[Any] = frames[key] if key in frames.columns else []
    else:
        values = (f.get(key) for f in frames)
    return sorted({str(v) for v in values if isinstance(v, str) and v})


def provenance(
    settings: Mapping[str, Any],
    metrics: pd.DataFrame,
    pretrain: Sequence[Mapping[str, Any]],
    ingest: Mapping[str, Any],
    wall: Mapping[str, Any],
    code: Mapping[str, Any],
    host: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything a reader needs to trust or repeat the published numbers."""
    records = [*metrics.to_dict("records"), *pretrain]
    recorded = {
        k: _distinct(records, k)
        for k in ("data_sha256", "config_sha256", "git_commit", "torch_version", "device", "hardware", "precision")
    }
    return {
        "name": settings["config"]["name"],
        "generated_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "configfiles": list(settings.get("configfiles") or []),
        "config_sha256": settings["config_sha256"],
        "config_matches_runs": recorded["config_sha256"] == [settings["config_sha256"]],
        "config": settings["config"],
        "report": {"dir": settings.get("report_dir"), "claims": list(settings.get("claims") or [])},
        "data": {
            "input": ingest.get("input"),
            "input_sha256": ingest.get("input_sha256"),
            "rows_in": ingest.get("rows_in"),
            "rows_kept": ingest.get("rows_kept"),
            "data_sha256_of_runs": recorded["data_sha256"],
        },
        "code": {**code, "git_commits_of_runs": recorded["git_commit"]},
        "runs": {
            "n_finetune_runs": len(metrics),
            "n_pretrain_runs": len(pretrain),
            "torch_versions": recorded["torch_version"],
            "devices": recorded["device"],
            "hardware": recorded["hardware"],
            "precisions": recorded["precision"],
            "config_sha256": recorded["config_sha256"],
            "by_device": devices(metrics, pretrain),
        },
        "machine": host,
        "wall_time": dict(wall),
    }


# --------------------------------------------------------------------------- workflow entries
def copy_file(src: str | Path, dst: str | Path) -> None:
    """Workflow entry (rule report_copy): publish one table or figure, written atomically."""
    with io.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    log.info("published %s -> %s", src, dst)


def publish(
    *,
    tests: str | Path,
    metrics: str | Path,
    ingest_summary: str | Path,
    pretrain_metrics: Sequence[str | Path],
    tables: Sequence[str | Path],
    figures: Sequence[str | Path],
    out_claims: str | Path,
    out_summary: str | Path,
    out_provenance: str | Path,
    settings: Mapping[str, Any],
    protocol: str | Path | None = None,
    multitask: str | Path | None = None,
    correlation: str | Path | None = None,
) -> pd.DataFrame:
    """Workflow entry (rule report): claims.csv, summary.md and provenance.json. ``protocol``:
    the run's stats/protocol.csv (resolves ``selected:`` claims; published as tables/protocol.csv);
    ``multitask``: its stats/multitask.csv (``kind: multitask`` claims), where the run has one;
    ``correlation``: its stats/ef_eg_correlation.json (the ΔEf–Eg Pearson r, in the summary).

    ``settings``: ``config`` (resolved, Config.as_dict), ``config_sha256``, ``configfiles``,
    ``baseline``, ``baseline_modes``, ``frozen_modes``, ``claims`` (Config.claims), ``labels`` (target labels),
    ``captions`` (figure stem → caption), ``results`` (the run's results folder), ``repo`` and
    ``report_dir`` (left out of the dirty check)."""
    tests_df, metrics_df = read_table(tests), read_table(metrics)
    protocol_df = read_table(protocol) if protocol is not None else pd.DataFrame()
    multitask_df = read_table(multitask) if multitask is not None else pd.DataFrame()
    claims = build_claims(
        settings.get("claims") or [],
        tests_df,
        metrics_df,
        settings["baseline"],
        settings.get("labels"),
        (str(tests), str(metrics), str(protocol or "stats/protocol.csv"), str(multitask or "stats/multitask.csv")),
        protocol_df,
        multitask_df,
    )
    io.write_csv(claims, out_claims)
    for r in claims.itertuples():
        log.info(
            "claim %s: %s %.4g vs %s %.4g, p_holm=%s: %s",
            r.id,
            mode_label(r.mode, r.resolved_mode),
            r.ours_mode_error,
            mode_label(r.versus, r.resolved_versus),
            r.ours_versus_error,
            fmt_p(r.p_holm),
            r.verdict,
        )
    ingest = io.read_json(ingest_summary)
    pretrain = [io.read_json(p) for p in pretrain_metrics]
    wall = wall_times(
        Path(settings["results"]) / "benchmarks",
        settings.get("baseline_modes") or (),
        settings.get("frozen_modes") or (),
    )
    here = Path(out_summary).parent
    figs = [(Path(f).stem, Path(os.path.relpath(f, here)).as_posix()) for f in figures]
    tabs = [Path(os.path.relpath(t, here)).as_posix() for t in tables]
    corr = io.read_json(correlation) if correlation is not None else None
    io.write_text(
        out_summary,
        summary_markdown(
            settings, claims, tests_df, metrics_df, ingest, pretrain, figs, tabs, wall, multitask_df, corr
        ),
    )
    repo = settings.get("repo") or "."
    exclude = []
    rd = settings.get("report_dir")
    if rd:
        rel = os.path.relpath(Path(rd).resolve(), Path(repo).resolve())
        if not rel.startswith(".."):
            exclude.append(Path(rel).as_posix())
    io.write_json(
        out_provenance, provenance(settings, metrics_df, pretrain, ingest, wall, code_state(repo, exclude), machine())
    )
    return claims


# --------------------------------------------------------------------------- README
def _markers(text: str, readme: Path) -> tuple[int, int]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(f"{readme}: needs one {BEGIN} followed by one {END} (where the results table goes)")
    return text.index(BEGIN) + len(BEGIN), text.index(END)


def readme_block(folders: Sequence[str | Path], readme: str | Path) -> str:
    """The README's results block: per published folder, a line saying where the numbers
    come from and the claims table."""
    if not folders:
        return EMPTY_STATE
    parts = []
    base = Path(readme).resolve().parent
    for folder in folders:
        f = Path(folder)
        prov_path = f / "provenance.json"
        if not prov_path.is_file():
            raise ReportError(f"{prov_path}: not found (is {f} a published results folder?)")
        prov = io.read_json(prov_path)
        rel = Path(os.path.relpath(f.resolve(), base)).as_posix()
        files = ", ".join(f"`{c}`" for c in prov.get("configfiles") or []) or f"name `{prov['name']}`"
        parts.append(
            f"{FOLDER_MARK.format(rel)}\n**`{prov['name']}`** ({files}; [summary]({rel}/summary.md), "
            f"[provenance]({rel}/provenance.json)). Test errors, mean over paired seeds; a claim holds with a "
            f"Holm-adjusted paired t-test p < {ALPHA} in the claimed direction.\n\n"
            f"{claims_table(read_claims(f / 'claims.csv'))}"
        )
    return "\n\n".join(parts)


def rewrite_readme(readme: str | Path, folders: Sequence[str | Path]) -> bool:
    """Replace the text between the README's markers with :func:`readme_block`; True when
    the file changed (running it twice changes nothing the second time)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(text, path)
    new = text[:start] + "\n" + readme_block(folders, path) + "\n" + text[end:]
    if new == text:
        return False
    io.write_text(path, new)
    return True


def readme_folders(readme: str | Path) -> list[Path]:
    """The published folders the README's results block shows (absolute paths)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(text, path)
    return [(path.resolve().parent / m).resolve() for m in _FOLDER_RE.findall(text[start:end])]


def check_readme(readme: str | Path) -> list[str]:
    """Problems with the README's results block: a table row whose cells differ from its
    folder's claims.csv as formatted here, a claim missing from the table, a row naming no
    claim, a folder that is not published. Empty when every number agrees."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    try:
        start, end = _markers(text, path)
    except ReportError as err:
        return [str(err)]
    block = text[start:end]
    pieces = _FOLDER_RE.split(block)  # [before, folder1, text1, folder2, text2, ...]
    problems = [
        f"{path}: results table row outside a folder section: {line.strip()}"
        for line in pieces[0].splitlines()
        if line.strip().startswith("|")
    ]
    for rel, body in zip(pieces[1::2], pieces[2::2], strict=True):
        folder = path.resolve().parent / rel
        try:
            claims = read_claims(folder / "claims.csv")
        except ReportError as err:
            problems.append(f"{path}: section {rel}: {err}")
            continue
        expected = {str(r["id"]): claim_cells(r) for r in claims.to_dict("records")}
        seen: set[str] = set()
        for line in body.splitlines():
            if not line.strip().startswith("|"):
                continue
            cells = _split_row(line)
            if tuple(cells) == README_HEADER or all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            rid = cells[0] if cells else ""
            if rid not in expected:
                problems.append(f"{path}: section {rel}: row {rid!r} is not a claim of {folder / 'claims.csv'}")
                continue
            seen.add(rid)
            for col, got, want in zip(README_HEADER, cells, expected[rid], strict=False):
                if got != want:
                    problems.append(
                        f"{path}: claim {rid} ({rel}): {col} is {got!r}, but {folder / 'claims.csv'} gives {want!r}"
                    )
            if len(cells) != len(README_HEADER):
                problems.append(f"{path}: claim {rid} ({rel}): {len(cells)} cells, expected {len(README_HEADER)}")
        problems += [
            f"{path}: claim {i} of {folder / 'claims.csv'} is missing from the results table"
            for i in sorted(set(expected) - seen)
        ]
    return problems


def _figure_links(summary: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", summary)


def _spec_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The config entry a claims.csv row was built from (what build_claims needs again)."""
    if str(row.get("kind") or "compare") == "multitask":
        return {
            **{k: row[k] for k in ("id", "paper", "claim", "paper_value", "size", "direction")},
            "kind": "multitask",
            "property": row["target"],
        }
    return {k: row[k] for k in SPEC_COLUMNS}


def check_published(folder: str | Path) -> list[str]:
    """Problems with a published folder: a figure summary.md links that is missing, or a
    claims.csv number or resolved mode that its tables (tables/ttests.csv, tables/metrics.csv,
    tables/protocol.csv where published) do not give."""
    f = Path(folder)
    problems = []
    for name in ("summary.md", "claims.csv", "provenance.json"):
        if not (f / name).is_file():
            problems.append(f"{f / name}: missing")
    if problems:
        return problems
    for link in _figure_links((f / "summary.md").read_text(encoding="utf-8")):
        if not (f / link).is_file():
            problems.append(f"{f / 'summary.md'} links {link}, which does not exist")
    claims = read_claims(f / "claims.csv")
    if claims.empty:
        return problems
    prov = io.read_json(f / "provenance.json")
    baseline = prov["config"]["finetune"]["baseline"]
    labels = dict(zip(claims["target"], claims["target_label"], strict=True))
    specs = [_spec_of(r) for r in claims.to_dict("records")]
    tabs = [f / "tables" / f"{t}.csv" for t in ("ttests", "metrics", "protocol", "multitask")]
    try:
        protocol, multitask = (read_table(t) if t.is_file() else pd.DataFrame() for t in tabs[2:])
        again = build_claims(
            specs,
            read_table(tabs[0]),
            read_table(tabs[1]),
            baseline,
            labels,
            [str(t) for t in tabs],
            protocol,
            multitask,
        )
    except (ReportError, FileNotFoundError) as err:
        return [*problems, f"{f / 'claims.csv'}: cannot be recomputed from its tables: {err}"]
    for (_, mine), (_, want) in zip(claims.iterrows(), again.iterrows(), strict=True):
        for col in NUMERIC_COLUMNS:
            a, b = float(mine[col]), float(want[col])
            if not (a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9)):
                problems.append(f"{f / 'claims.csv'}: claim {mine['id']}: {col} = {a!r}, its tables give {b!r}")
        for col in ("resolved_mode", "resolved_versus", "holm_family", "verdict", "held", "metric", "kind"):
            if str(mine[col]) != str(want[col]):
                problems.append(
                    f"{f / 'claims.csv'}: claim {mine['id']}: {col} = {mine[col]!r}, its tables give {want[col]!r}"
                )
    return problems


RESULTS_PAGE = "docs/results.md"  # the page whose claims table `readme` writes and `check` checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlcgcnn.report.published",
        description="The results page's claims table (docs/results.md) from published results folders.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rd = sub.add_parser("readme", help="rewrite the block between the results page's markers")
    rd.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="published folders (docs/results/<name>), then the results page (docs/results.md) last",
    )
    ck = sub.add_parser(
        "check", help="check the results page's claims table and the folders it shows against their CSVs"
    )
    ck.add_argument("readme", nargs="?", default=RESULTS_PAGE)
    args = parser.parse_args(argv)
    try:
        if args.command == "readme":
            *folders, readme = args.paths
            if Path(readme).is_dir():
                parser.error(f"the last path must be the README file, not the folder {readme}")
            changed = rewrite_readme(readme, folders)
            print(f"{readme}: results block {'rewritten' if changed else 'unchanged'} ({len(folders)} folder(s))")
            problems = check_readme(readme)
        else:
            problems = check_readme(args.readme)
            for folder in readme_folders(args.readme):
                problems += check_published(folder)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
