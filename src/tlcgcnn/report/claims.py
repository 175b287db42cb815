"""Claim statistics: the papers' claims tested on a run's statistics tables (``claims.csv``).

One row per claim of the papers (config ``report.claims``): the mode's and the compared
mode's test error (mean over the paired seeds), the change in per cent, the paired t-test's
p and Holm-adjusted p, and whether the claim held (:func:`verdict`); :func:`build_claims`
makes the rows, :func:`read_claims` reads a written claims.csv back.

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

Also owns :class:`ReportError`, which every module of the published results raises.
Torch-free: pandas, numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis.stats import SELECTED_FAMILY, holm, paired
from tlcgcnn.config import SELECTED_MODE

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


class ReportError(ValueError):
    """Published results that cannot be built or do not agree with their sources."""


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
