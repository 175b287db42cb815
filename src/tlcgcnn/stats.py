"""Collect run metrics and test whether transfer beats training from scratch.

For every (target, training size) and every mode other than the baseline, the test MAEs of
the same seeds are paired and compared with a paired t-test (scipy.stats.ttest_rel). The
table reports the mean MAE of both, the mean difference (mode − baseline; negative means the
mode is better) with its 95 % confidence interval, the improvement rate
(MAE_baseline − MAE_mode) / MAE_baseline, the p-value and its Holm-corrected value across
the whole family of tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sstats

from tlcgcnn import io

log = logging.getLogger(__name__)
KEYS = ("target", "size")


# Columns that must stay text: a hex hash such as "94e25257..." otherwise parses as a float
# with an enormous exponent (and crashes pandas 2.3's CSV parser).
TEXT_COLUMNS = (
    "target", "property", "transform", "subset", "mode", "stage", "pretrained", "baseline",
    "checkpoint", "config_sha256", "data_sha256", "git_commit", "package_version",
    "torch_version", "device", "model", "source",
)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a metrics / tests CSV written by this module, keeping text columns as text."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS if c in header})


def collect(paths: Iterable[str | Path]) -> pd.DataFrame:
    rows = [io.read_json(p) for p in paths]
    if not rows:
        raise ValueError("no metrics files to collect")
    df = pd.DataFrame(rows)
    return df.sort_values([c for c in ("target", "size", "mode", "seed") if c in df.columns]).reset_index(drop=True)


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


def paired_tests(df: pd.DataFrame, baseline: str = "scratch", metric: str = "mae", keys: tuple[str, ...] = KEYS) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    base = df[df["mode"] == baseline]
    for mode in sorted(set(df["mode"]) - {baseline}):
        other = df[df["mode"] == mode]
        merged = base.merge(other, on=[*keys, "seed"], suffixes=("_base", "_mode"))
        for key, grp in merged.groupby(list(keys), sort=True):
            a = grp[f"{metric}_base"].to_numpy(float)
            b = grp[f"{metric}_mode"].to_numpy(float)
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)), "mode": mode, "baseline": baseline, **_paired(a, b)})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out["p_value"].to_numpy())
    return out


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
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


def run(metric_files: list[str], out_metrics: str | Path, out_tests: str | Path, baseline: str = "scratch") -> pd.DataFrame:
    df = collect(metric_files)
    io.write_csv(df, out_metrics)
    tests = paired_tests(df, baseline=baseline)
    io.write_csv(tests, out_tests)
    for r in tests.itertuples():
        log.info("%s n=%s %s vs %s: MAE %.4f vs %.4f, p=%.3g", r.target, r.size, r.mode, r.baseline, r.mae_mode, r.mae_baseline, r.p_value)
    return tests
