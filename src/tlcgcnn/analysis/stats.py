"""Collect run metrics and test whether transfer beats training from scratch.

For every (target, training size) and every mode other than the baseline, the test MAEs of
the same seeds are paired and compared with a paired t-test (scipy.stats.ttest_rel). The
table reports the mean MAE of both, the mean difference (mode − baseline; negative means the
mode is better) with its 95 % confidence interval, the improvement rate
(MAE_baseline − MAE_mode) / MAE_baseline, the p-value and its Holm-corrected value.

The Holm correction runs within declared hypothesis families (column ``holm_family``, see
:data:`FAMILIES`), not over every test: whether transfer beats scratch is one question, whether
a descriptor baseline does is another, and adding baselines to a study must not weaken the
correction of its transfer tests. A test that two targets repeat (targets sharing their runs)
counts once in its family. These families serve the study's exploration; the papers' claims are
one family of their own (tlcgcnn.report.paper_claims).

The fine-tuning protocol is chosen on validation data (:func:`protocol_table`): where one
pretraining source is fine-tuned in several ways (transfer modes: layers kept / frozen /
re-initialised, learning rates, schedules), the mode with the lowest mean best validation
score is selected, and the table reports how much its test error differs from the best and
the worst of the alternatives. The selected mode's test against the baseline forms its own
Holm family, ``selected_vs_scratch`` (:func:`selected_tests`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sstats

from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)
KEYS = ("target", "size")


# Columns that must stay text: a hex hash such as "94e25257..." otherwise parses as a float
# with an enormous exponent (and crashes pandas 2.3's CSV parser).
TEXT_COLUMNS = (
    "target",
    "property",
    "transform",
    "subset",
    "mode",
    "stage",
    "pretrained",
    "baseline",
    "checkpoint",
    "config_sha256",
    "data_sha256",
    "git_commit",
    "package_version",
    "torch_version",
    "device",
    "hardware",
    "model",
    "source",
    "holm_family",
    "external",
    "mt_source",
    "st_source",
)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a metrics / tests CSV written by this module, keeping text columns as text
    (an empty table, written as an empty file, reads as an empty frame)."""
    if Path(path).stat().st_size <= 1:
        return pd.DataFrame()
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS if c in header})


def collect(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run; a file holds one record or a list of them (a cell of seeds)."""
    rows: list[dict[str, Any]] = []
    for p in paths:
        data = io.read_json(p)
        rows.extend(data if isinstance(data, list) else [data])
    if not rows:
        raise ValueError("no metrics files to collect")
    df = pd.DataFrame(rows)
    return df.sort_values([c for c in ("target", "size", "mode", "seed") if c in df.columns]).reset_index(drop=True)


FAMILIES: dict[str, str] = {
    "transfer_vs_scratch": "regression targets: each pretrained (transfer) mode against the baseline mode",
    "baseline_vs_scratch": (
        "regression targets: each scikit-learn baseline on composition descriptors against the baseline mode"
    ),
    "model_vs_scratch": (
        "regression targets: each other model trained from scratch (e.g. attention convolution vs CGCNN) "
        "against the baseline mode"
    ),
    "classification": "classification targets: every mode against the baseline mode (error 1 − ROC-AUC)",
    "selected_vs_scratch": (
        "each (target, size, pretraining source) with several transfer modes: the mode selected on validation data "
        "against the baseline mode"
    ),
}
SELECTED_FAMILY = "selected_vs_scratch"
_FAMILY_OF_RUN = {"transfer": "transfer_vs_scratch", "baseline": "baseline_vs_scratch", "scratch": "model_vs_scratch"}


def run_families(df: pd.DataFrame) -> dict[str, str]:
    """Mode → kind of run (``scratch``, ``transfer`` or ``baseline``): the records' ``family``
    column, or, in records without it, ``transfer`` where the mode has a pretrained source."""
    if "family" in df.columns:
        fam = df.drop_duplicates("mode").set_index("mode")["family"]
        return {str(m): str(f) for m, f in fam.items()}
    if "pretrained" in df.columns:
        pre = df.drop_duplicates("mode").set_index("mode")["pretrained"]
        return {str(m): "transfer" if isinstance(p, str) and p else "scratch" for m, p in pre.items()}
    return {str(m): "transfer" for m in df["mode"].unique()}


def hypothesis_family(task: str, run_family: str) -> str:
    """The Holm family of a test of a mode against the baseline (a key of :data:`FAMILIES`)."""
    if task == "classification":
        return "classification"
    try:
        return _FAMILY_OF_RUN[run_family]
    except KeyError:
        raise ValueError(f"unknown run family {run_family!r} (expected one of {sorted(_FAMILY_OF_RUN)})") from None


# what makes two rows of a family one test: the same comparison on the same numbers (two targets
# that share their runs, e.g. log_kvrh_sources repeating log_kvrh's cells, repeat a test)
SAME_TEST = ("size", "mode", "baseline", "n_pairs", "mae_baseline", "mae_mode", "p_value")


def holm_within_families(tests: pd.DataFrame, family: str = "holm_family") -> pd.Series:
    """Holm-adjusted p-values, each computed within its row's family only; a test repeated in a
    family (:data:`SAME_TEST`) counts once, and each copy gets its adjusted p."""
    out = pd.Series(np.nan, index=tests.index, dtype=float)
    keys = [k for k in SAME_TEST if k in tests.columns]
    for _, idx in tests.groupby(family, sort=False).groups.items():
        sub = tests.loc[idx]
        test = (
            sub.groupby(keys, dropna=False, sort=False).ngroup()
            if keys
            else pd.Series(np.arange(len(sub)), index=sub.index)
        )
        first = ~test.duplicated()
        adjusted = dict(zip(test[first], holm(sub.loc[first, "p_value"].to_numpy(float)), strict=True))
        out.loc[idx] = [adjusted[t] for t in test]
    return out


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries are left out of the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok])]
    m = order.size
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * p[idx])
        out[idx] = min(1.0, running)
    return out


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up false discovery rate; NaN entries are left out)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok])[::-1]]  # largest p first
    m = order.size
    running = 1.0
    for i, idx in enumerate(order):
        running = min(running, p[idx] * m / (m - i))
        out[idx] = running
    return out


def paired_tests(
    df: pd.DataFrame, baseline: str = "scratch", metric: str = "mae", keys: tuple[str, ...] = KEYS
) -> pd.DataFrame:
    """Paired t-test of every mode against ``baseline`` per (target, size), on the runs of
    the same seeds; ``holm_family`` names each test's family and ``p_holm`` is corrected
    within it."""
    rows: list[dict[str, Any]] = []
    base = df[df["mode"] == baseline]
    for mode in sorted(set(df["mode"]) - {baseline}):
        other = df[df["mode"] == mode]
        merged = base.merge(other, on=[*keys, "seed"], suffixes=("_base", "_mode"))
        for key, grp in merged.groupby(list(keys), sort=True):
            a = grp[f"{metric}_base"].to_numpy(float)
            b = grp[f"{metric}_mode"].to_numpy(float)
            rows.append(
                {
                    **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                    "mode": mode,
                    "baseline": baseline,
                    **paired(a, b),
                }
            )
    out = pd.DataFrame(rows)
    if len(out):
        fam = run_families(df)
        task = (
            df.drop_duplicates("target").set_index("target")["task"].fillna("regression")
            if "task" in df.columns
            else pd.Series(dtype=str)
        )
        out["holm_family"] = [
            hypothesis_family(str(task.get(t, "regression")), fam[m])
            for t, m in zip(out["target"], out["mode"], strict=True)
        ]
        out["p_holm"] = holm_within_families(out)
    return out


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired t-test of errors ``b`` (the mode) against ``a`` (what it is compared with),
    seed by seed: means, spreads, improvement rate, t, p and 95 % CI (NaN with fewer than two
    pairs or no spread in the differences)."""
    n = len(a)
    d = b - a
    res: dict[str, Any] = {
        "n_pairs": n,
        "mae_baseline": float(a.mean()),
        "mae_mode": float(b.mean()),
        "sd_baseline": float(a.std(ddof=1)) if n > 1 else float("nan"),
        "sd_mode": float(b.std(ddof=1)) if n > 1 else float("nan"),
        "mean_diff": float(d.mean()),
        "improvement_rate": float((a.mean() - b.mean()) / a.mean()) if a.mean() != 0 else float("nan"),
    }
    if n >= 2 and np.std(d) > 0:
        t = sstats.ttest_rel(b, a)
        ci = t.confidence_interval(0.95)
        res.update(t_stat=float(t.statistic), p_value=float(t.pvalue), ci_low=float(ci.low), ci_high=float(ci.high))
    else:
        res.update(t_stat=float("nan"), p_value=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    return res


def error_tests(df: pd.DataFrame, baseline: str = "scratch") -> pd.DataFrame:
    """Paired tests on each run's ``error`` (test MAE for regression targets, 1 − ROC-AUC
    for classification targets); Holm correction within each hypothesis family
    (``holm_family``). The ``metric`` column says which error; the mae_* columns hold it."""
    if "error" not in df.columns:
        return paired_tests(df, baseline=baseline)
    parts = []
    task = df["task"].fillna("regression") if "task" in df.columns else pd.Series("regression", index=df.index)
    for kind, name in (("regression", "mae"), ("classification", "1-roc_auc")):
        sub = df[(task == "classification") == (kind == "classification")]
        if len(sub):
            t = paired_tests(sub, baseline=baseline, metric="error")
            if len(t):
                parts.append(t.drop(columns="p_holm").assign(metric=name))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    out["p_holm"] = holm_within_families(out)
    return out


def mode_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """The tests of each mode against the baseline, without the repeated tests of the
    validation-selected modes (family ``selected_vs_scratch``): one row per (target, size,
    mode), as the summary tables and figures expect."""
    if tests.empty or "holm_family" not in tests.columns:
        return tests
    return tests[tests["holm_family"] != SELECTED_FAMILY].reset_index(drop=True)


PROTOCOL_COLUMNS = (
    "target",
    "size",
    "pretrained",
    "mode",
    "property",
    "transform",
    "task",
    "n_seeds",
    "n_val",
    "val_metric",
    "val_mean",
    "val_sd",
    "metric",
    "test_mean",
    "test_sd",
    "selected",
    "selected_mode",
    "baseline",
    "baseline_test_mean",
    "baseline_test_sd",
    "test_best",
    "test_worst",
    "choice_vs_best_pct",
    "choice_vs_worst_pct",
    "spread_pct",
    "selected_is_test_best",
)


def protocol_table(df: pd.DataFrame, baseline: str = "scratch", mode_order: list[str] | None = None) -> pd.DataFrame:
    """The fine-tuning protocol chosen on validation data, and how much the choice mattered.

    For every (target, size, pretraining source) with at least two transfer modes: one row
    per mode with its seeds, the mean and sd of the best validation score (``best_val_mae``
    of the records: validation MAE in target units, or the validation binary cross-entropy
    of a classifier: ``val_metric``) and of the test error (``error``: MAE, or 1 − ROC-AUC).
    ``selected`` marks the mode with the lowest mean validation score (ties: the first in
    ``mode_order``, the config's order of ``finetune.modes``; modes it does not list follow
    by name). Only the validation scores choose. Per group: the selected mode's test error
    relative to the best and to the worst test error among the group's modes
    (``choice_vs_best_pct`` ≥ 0, ``choice_vs_worst_pct`` ≤ 0), the spread between them
    (``spread_pct``) and the baseline mode's test error (reference)."""
    need = {"family", "pretrained", "best_val_mae"}
    if df.empty or not need <= set(df.columns):
        return pd.DataFrame(columns=list(PROTOCOL_COLUMNS))
    err = "error" if "error" in df.columns else "mae"
    order = {m: i for i, m in enumerate(mode_order or [])}
    tl = df[df["family"] == "transfer"]
    rows: list[dict[str, Any]] = []
    for (target, size, source), grp in tl.groupby(["target", "size", "pretrained"], sort=False):
        modes = sorted(grp["mode"].unique(), key=lambda m: (order.get(m, len(order)), str(m)))
        if len(modes) < 2:
            continue
        first = grp.iloc[0]
        task = str(first.get("task", "regression")) if pd.notna(first.get("task", "regression")) else "regression"
        base = df[(df["target"] == target) & (df["size"] == size) & (df["mode"] == baseline)][err].astype(float)
        group: list[dict[str, Any]] = []
        for mode in modes:
            r = grp[grp["mode"] == mode]
            val, test = r["best_val_mae"].astype(float), r[err].astype(float)
            group.append(
                {
                    "target": target,
                    "size": size,
                    "pretrained": source,
                    "mode": mode,
                    "property": first.get("property"),
                    "transform": first.get("transform"),
                    "task": task,
                    "n_seeds": int(r["seed"].nunique()),
                    "n_val": int(r["n_val"].min()) if "n_val" in r.columns and r["n_val"].notna().any() else None,
                    "val_metric": "bce" if task == "classification" else "mae",
                    "val_mean": float(val.mean()),
                    "val_sd": float(val.std(ddof=1)),
                    "metric": "1-roc_auc" if task == "classification" else "mae",
                    "test_mean": float(test.mean()),
                    "test_sd": float(test.std(ddof=1)),
                    "baseline": baseline,
                    "baseline_test_mean": float(base.mean()) if len(base) else float("nan"),
                    "baseline_test_sd": float(base.std(ddof=1)) if len(base) > 1 else float("nan"),
                }
            )
        scored = [i for i, g in enumerate(group) if np.isfinite(g["val_mean"])]
        if not scored:
            log.warning("%s n=%s from %s: no mode has a validation score: no protocol selected", target, size, source)
        sel = min(scored, key=lambda i: (group[i]["val_mean"], i)) if scored else None
        tests = np.array([g["test_mean"] for g in group])
        best, worst = float(np.nanmin(tests)), float(np.nanmax(tests))
        chosen = group[sel]["test_mean"] if sel is not None else float("nan")
        summary = {
            "selected_mode": group[sel]["mode"] if sel is not None else None,
            "test_best": best,
            "test_worst": worst,
            "choice_vs_best_pct": 100 * (chosen - best) / best if best else float("nan"),
            "choice_vs_worst_pct": 100 * (chosen - worst) / worst if worst else float("nan"),
            "spread_pct": 100 * (worst - best) / best if best else float("nan"),
            "selected_is_test_best": bool(sel is not None and chosen == best),
        }
        for i, g in enumerate(group):
            rows.append({**g, "selected": i == sel, **summary})
        n_val = min((g["n_val"] for g in group if g["n_val"] is not None), default=None)
        log.info(
            "%s n=%s from %s: %s selected on validation data among %s; its test error %.4g is %+.1f %% vs the best, "
            "%+.1f %% vs the worst",
            target,
            size,
            source,
            summary["selected_mode"],
            modes,
            chosen,
            summary["choice_vs_best_pct"],
            summary["choice_vs_worst_pct"],
        )
        if n_val is not None and n_val < 50:
            log.warning(
                "%s n=%s: protocol chosen on validation sets of %d crystals (noisy below 50)", target, size, n_val
            )
    return pd.DataFrame(rows, columns=list(PROTOCOL_COLUMNS))


def selected_tests(df: pd.DataFrame, protocol: pd.DataFrame, baseline: str = "scratch") -> pd.DataFrame:
    """Paired t-test, on the test error of the same seeds, of each group's validation-selected
    mode (:func:`protocol_table`) against ``baseline``; Holm within these tests only (family
    ``selected_vs_scratch``). ``pretrained`` names the group's source."""
    if protocol.empty or not protocol["selected"].any():
        return pd.DataFrame()
    err = "error" if "error" in df.columns else "mae"
    rows = []
    for r in protocol[protocol["selected"].astype(bool)].itertuples():
        at = (df["target"] == r.target) & (df["size"] == r.size)
        merged = df[at & (df["mode"] == baseline)].merge(
            df[at & (df["mode"] == r.mode)], on="seed", suffixes=("_base", "_mode")
        )
        if merged.empty:
            continue
        res = paired(merged[f"{err}_base"].to_numpy(float), merged[f"{err}_mode"].to_numpy(float))
        rows.append(
            {
                "target": r.target,
                "size": r.size,
                "mode": r.mode,
                "baseline": baseline,
                **res,
                "holm_family": SELECTED_FAMILY,
                "metric": r.metric,
                "pretrained": r.pretrained,
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm_within_families(out)
    return out


def improvement_vs_size(tests: pd.DataFrame) -> pd.DataFrame:
    """Improvement rate (MAE_scratch − MAE_mode) / MAE_scratch per mode and training size:
    per target, and the mean over targets with the share of significant (Holm p < 0.05
    within the test's family) improvements. A mean row's ``holm_family`` lists the families
    its targets' tests belong to."""
    if tests.empty:
        return pd.DataFrame(columns=["mode", "size", "target", "improvement_rate", "significant"])
    t = tests.copy()
    t["significant_better"] = (t["p_holm"] < 0.05) & (t["mean_diff"] < 0)
    if "holm_family" not in t.columns:
        t["holm_family"] = "all"
    per_target = t[["mode", "size", "target", "improvement_rate", "holm_family", "p_holm", "significant_better"]]
    overall = (
        t.groupby(["mode", "size"], sort=True)
        .agg(
            improvement_rate=("improvement_rate", "mean"),
            significant_better=("significant_better", "mean"),
            n_targets=("target", "nunique"),
            holm_family=("holm_family", lambda f: "+".join(sorted(set(f)))),
        )
        .reset_index()
        .assign(target="(mean over targets)")
    )
    return pd.concat([per_target, overall], ignore_index=True)


def rank_summary(metrics: pd.DataFrame, prop: str = "formation_energy_per_atom") -> pd.DataFrame:
    """Spearman ρ of predicted vs true values (mean ± sd over seeds) per target, size and
    mode, for targets of property ``prop`` (ΔEf: does the model rank stability right?)."""
    sub = metrics[(metrics["property"] == prop) & metrics.get("spearman_rho", pd.Series(dtype=float)).notna()]
    if sub.empty:
        return pd.DataFrame(columns=["target", "size", "mode", "spearman_mean", "spearman_sd", "n"])
    return (
        sub.groupby(["target", "size", "mode"], sort=True)["spearman_rho"]
        .agg(spearman_mean="mean", spearman_sd="std", n="count")
        .reset_index()
    )


def classification_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """ROC-AUC and accuracy (mean ± sd over seeds) of classification targets."""
    if "task" not in metrics.columns or "roc_auc" not in metrics.columns:
        return pd.DataFrame(columns=["target", "size", "mode", "roc_auc_mean", "roc_auc_sd", "accuracy_mean", "n"])
    sub = metrics[metrics["task"] == "classification"]
    return (
        sub.groupby(["target", "size", "mode"], sort=True)
        .agg(
            roc_auc_mean=("roc_auc", "mean"),
            roc_auc_sd=("roc_auc", "std"),
            accuracy_mean=("accuracy", "mean"),
            n=("seed", "count"),
        )
        .reset_index()
    )


def property_correlation(df: pd.DataFrame, x: str = "formation_energy_per_atom", y: str = "band_gap") -> dict[str, Any]:
    """Pearson r (with its p-value and 95 % CI) and Spearman ρ between two properties over
    every material that has both."""
    both = df[[x, y]].dropna().astype(float)
    if len(both) < 3:
        raise ValueError(f"only {len(both)} materials have both {x} and {y}")
    pr = sstats.pearsonr(both[x], both[y])
    ci = pr.confidence_interval(0.95)
    return {
        "x": x,
        "y": y,
        "n": int(len(both)),
        "pearson_r": float(pr.statistic),
        "pearson_p": float(pr.pvalue),
        "pearson_ci_low": float(ci.low),
        "pearson_ci_high": float(ci.high),
        "spearman_rho": float(sstats.spearmanr(both[x], both[y]).statistic),
    }


def best_transfer(tests: pd.DataFrame, modes_family: dict[str, str]) -> pd.DataFrame:
    """Per (target, size): scratch error, the best transfer mode (lowest mean error), its
    error, mean difference with 95 % CI, raw and Holm p-value (with the Holm family); and the
    best baseline (its Holm p-value is corrected within the baseline family)."""
    rows = []
    if tests.empty:
        return pd.DataFrame()
    for (target, size), grp in tests.groupby(["target", "size"], sort=True):
        tl = grp[grp["mode"].map(modes_family).eq("transfer")]
        bl = grp[grp["mode"].map(modes_family).eq("baseline")]
        row: dict[str, Any] = {
            "target": target,
            "size": size,
            "metric": grp["metric"].iloc[0] if "metric" in grp else "mae",
            "n_seeds": int(grp["n_pairs"].max()),
            "scratch": float(grp["mae_baseline"].iloc[0]),
        }
        if len(tl):
            b = tl.loc[tl["mae_mode"].idxmin()]
            row.update(
                best_tl_mode=b["mode"],
                best_tl=float(b["mae_mode"]),
                diff=float(b["mean_diff"]),
                ci_low=float(b["ci_low"]),
                ci_high=float(b["ci_high"]),
                p=float(b["p_value"]),
                p_holm=float(b["p_holm"]),
                holm_family=b.get("holm_family"),
                improvement_rate=float(b["improvement_rate"]),
            )
        if len(bl):
            b = bl.loc[bl["mae_mode"].idxmin()]
            row.update(
                best_baseline=b["mode"],
                best_baseline_error=float(b["mae_mode"]),
                baseline_p_holm=float(b["p_holm"]),
                baseline_holm_family=b.get("holm_family"),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def model_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Parameter count and error (mean ± sd over seeds) of each model trained from scratch
    (CGCNN vs attention convolution), per target and size."""
    if "family" not in metrics.columns:
        return pd.DataFrame()
    sub = metrics[metrics["family"] == "scratch"]
    return (
        sub.groupby(["target", "size", "mode", "model_kind"], sort=True)
        .agg(n_params=("n_params", "max"), error_mean=("error", "mean"), error_sd=("error", "std"), n=("seed", "count"))
        .reset_index()
    )


def run(
    metric_files: list[str],
    out_metrics: str | Path,
    out_tests: str | Path,
    baseline: str = "scratch",
    out_protocol: str | Path | None = None,
    mode_order: list[str] | None = None,
) -> pd.DataFrame:
    """Workflow entry: the metrics table, the paired tests and (``out_protocol``) the
    protocol chosen on validation data, whose selected modes' tests are appended to the
    tests in their own family."""
    df = collect(metric_files)
    io.write_csv(df, out_metrics)
    tests = error_tests(df, baseline=baseline)
    protocol = protocol_table(df, baseline=baseline, mode_order=mode_order)
    if out_protocol is not None:
        io.write_csv(protocol, out_protocol)
    selected = selected_tests(df, protocol, baseline=baseline)
    if len(selected):
        tests = pd.concat([tests, selected], ignore_index=True)
    io.write_csv(tests, out_tests)
    for r in tests.itertuples():
        log.info(
            "%s n=%s %s vs %s (%s): MAE %.4f vs %.4f, p=%.3g",
            r.target,
            r.size,
            r.mode,
            r.baseline,
            getattr(r, "holm_family", ""),
            r.mae_mode,
            r.mae_baseline,
            r.p_value,
        )
    return tests


def summarize(metrics_csv: str | Path, tests_csv: str | Path, out: dict[str, str]) -> None:
    """Workflow entry: the summary tables (best transfer per cell, improvement vs size,
    Spearman ρ of ΔEf, classification ROC-AUC, model comparison)."""
    metrics = read_table(metrics_csv)
    tests = mode_tests(read_table(tests_csv))
    family = dict(zip(metrics["mode"], metrics.get("family", pd.Series("transfer", index=metrics.index)), strict=True))
    io.write_csv(best_transfer(tests, family), out["best"])
    io.write_csv(improvement_vs_size(tests), out["improvement"])
    io.write_csv(rank_summary(metrics), out["spearman"])
    io.write_csv(classification_summary(metrics), out["classification"])
    io.write_csv(model_summary(metrics), out["models"])


def correlation(
    table_path: str | Path, out: str | Path, x: str = "formation_energy_per_atom", y: str = "band_gap"
) -> dict[str, Any]:
    """Workflow entry: ΔEf–Eg Pearson r over the whole ingested set."""
    df = pd.read_parquet(table_path, columns=[x, y])
    res = property_correlation(df, x, y)
    io.write_json(out, res)
    log.info(
        "%s vs %s over %d materials: Pearson r = %.3f (p = %.2g)", x, y, res["n"], res["pearson_r"], res["pearson_p"]
    )
    return res


def collect_pretrain(paths: list[str], out: str | Path) -> pd.DataFrame:
    """Workflow entry: one table of the pretraining runs' test metrics (an empty table when
    every source is a checkpoint file: those are not evaluated, their test set belongs to
    another data set; ``tlcgcnn info`` describes them)."""
    if not paths:
        io.write_csv(pd.DataFrame(), out)
        return pd.DataFrame()
    df = collect(paths)
    io.write_csv(df, out)
    return df
