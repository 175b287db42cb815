"""How many scratch training crystals a pretraining source is worth ("effective data").

For one target, the scratch learning curve is the mean test error over seeds at each measured
training size, made monotone (a later size never counts as worse than an earlier one) and
interpolated linearly in log(size)-log(error) between the measured sizes. A source's cell at
size n with mean test error m is worth ``n_effective`` scratch crystals: the size at which that
curve reaches m; ``multiplier`` = n_effective / n. Beyond the measured sizes it is a bound: a
source better than scratch at its largest size is worth *at least* that size (``≥``), one worse
than scratch at its smallest *at most* that size (``≤``); for the first, ``n_effective_extrapolated``
adds where a power law fitted to the scratch curve's three largest sizes would reach it (a
model-based guess, labelled as such wherever it is shown). The 95 % interval comes from a
bootstrap that resamples the seeds within every scratch size and within the source's cell.

:func:`by_source` does it for every (target, pretraining source) of a study's records, the
source's mode at each size chosen on validation (as ``selected:<source>`` is).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SCRATCH = "scratch"


def size_order(size: str) -> float:
    """A training size as a number ("all" and other words sort last)."""
    try:
        return float(size)
    except ValueError:
        return math.inf


def crossing(sizes: np.ndarray, curve: np.ndarray, value: float) -> tuple[float, str]:
    """The size at which the monotone ``curve`` (errors at ``sizes``, falling) reaches
    ``value``, interpolated log-log; with "≥" / "≤" when it lies beyond the measured sizes."""
    mono = np.minimum.accumulate(curve)
    if value >= mono[0]:
        return float(sizes[0]), "≤"
    if value < mono[-1]:
        return float(sizes[-1]), "≥"
    i = int(np.flatnonzero(mono > value)[-1])  # mono[i] > value >= mono[i + 1]
    x0, x1 = math.log(sizes[i]), math.log(sizes[i + 1])
    y0, y1 = math.log(mono[i]), math.log(mono[i + 1])
    x = x1 if y1 == y0 else x0 + (math.log(value) - y0) * (x1 - x0) / (y1 - y0)
    return float(math.exp(x)), ""


def effective_data(reference: pd.DataFrame, source: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """How many ``reference`` (scratch) training crystals each cell of ``source`` is worth.

    ``reference``: the scratch records of one target (size, seed, error); ``source``: one
    source's records of that target at one mode per size. Per size of ``source``: its mean test
    error, ``n_effective`` (where the scratch curve reaches it), ``multiplier`` =
    n_effective / n, their 95 % bootstrap interval (seeds resampled within every size of both),
    and ``bound`` ("≥": better than scratch at the largest measured size, so at least that;
    "≤": worse than scratch at the smallest)."""
    ref = reference.assign(n=reference["size"].map(size_order))
    ref = ref[np.isfinite(ref["n"])]
    sizes = np.array(sorted(ref["n"].unique()), dtype=float)
    per_size = [ref[ref["n"].eq(s)]["error"].to_numpy(float) for s in sizes]
    rng = np.random.default_rng(seed)
    rows = []
    for size, cell in source.groupby("size", sort=False):
        n = size_order(str(size))
        errs = cell["error"].to_numpy(float)
        curve = np.array([e.mean() for e in per_size])
        n_eff, bound = crossing(sizes, curve, float(errs.mean()))
        boots = np.empty(n_boot)
        for b in range(n_boot):
            boot_curve = np.array([rng.choice(e, e.size).mean() for e in per_size])
            boots[b] = crossing(sizes, boot_curve, float(rng.choice(errs, errs.size).mean()))[0]
        lo, hi = np.percentile(boots, [2.5, 97.5])
        rows.append(
            {
                "size": str(size),
                "mode": str(cell["mode"].iloc[0]),
                "n_seeds": int(errs.size),
                "mae": float(errs.mean()),
                "n_effective": n_eff,
                "n_effective_low": float(lo),
                "n_effective_high": float(hi),
                "multiplier": n_eff / n,
                "multiplier_low": float(lo) / n,
                "multiplier_high": float(hi) / n,
                "bound": bound,
                "n_effective_extrapolated": extrapolated(sizes, curve, float(errs.mean())) if bound == "≥" else n_eff,
                "scratch_sizes": "/".join(str(int(s)) for s in sizes),
            }
        )
    return pd.DataFrame(rows)


def extrapolated(sizes: np.ndarray, curve: np.ndarray, value: float, last: int = 3) -> float:
    """Where a power law fitted (log-log least squares) to the scratch curve's ``last`` largest
    sizes reaches ``value``: a model-based guess beyond the measured sizes, for a cell whose
    ``n_effective`` is only a bound. NaN when the fitted curve does not fall."""
    x, y = np.log(sizes[-last:]), np.log(np.minimum.accumulate(curve)[-last:])
    if x.size < 2:
        return math.nan
    slope, intercept = np.polyfit(x, y, 1)
    if slope >= 0:
        return math.nan
    return float(math.exp((math.log(value) - intercept) / slope))


def by_source(metrics: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """:func:`effective_data` of every pretraining source of every target with a scratch
    curve of at least two sizes. Per (target, source, size) the source's mode is the one with
    the lowest mean validation score among that source's modes in the cell
    (:func:`tlcgcnn.report.figures.series.validation_scores`). Columns: target, source, size,
    mode, n_seeds, mae (the target's error: test MAE, or 1 − ROC-AUC for a classifier),
    n_effective with its interval, multiplier with its interval, bound, scratch_sizes."""
    from tlcgcnn.report.figures.series import validation_scores

    df = metrics.copy()
    df["size"] = df["size"].astype(str)
    if "error" not in df:
        df["error"] = df["mae"]
    parts = []
    for target, rows in df.groupby("target", sort=True):
        ref = rows[rows["mode"].eq(SCRATCH)]
        if ref["size"].map(size_order).pipe(lambda s: s[np.isfinite(s)]).nunique() < 2:
            continue
        tl = rows[rows["family"].eq("transfer") & rows["pretrained"].notna()]
        for src, rec in tl.groupby("pretrained", sort=True):
            scores = validation_scores(rec)
            scores = scores[np.isfinite(scores["score"].astype(float))]
            pick = scores.sort_values(["size", "score", "mode"]).groupby("size").head(1)[["target", "size", "mode"]]
            sel = rec.merge(pick, on=["target", "size", "mode"])
            if len(sel):
                parts.append(effective_data(ref, sel, n_boot=n_boot).assign(target=target, source=src))
    cols = ["target", "source", "size"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out = out[cols + [c for c in out.columns if c not in cols]]
    return out.sort_values(["target", "source", "size"], key=lambda s: s.map(size_order) if s.name == "size" else s)
