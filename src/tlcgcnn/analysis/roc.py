"""ROC curves of the classification targets (MT-CGCNN's Figure M4) from the fine-tuning cells'
test predictions.

A classification cell's ``predictions.parquet`` holds, for every seed, each test crystal's
label ``y_true`` (0 / 1) and its score ``y_pred``: the predicted probability of class 1. The
graph models write the sigmoid of their logit (:func:`tlcgcnn.analysis.evaluate.evaluate`);
the descriptor baselines and frozen-features modes ``predict_proba``, or for SVC and PLS-DA,
which have none, a logistic map of the decision score
(:func:`tlcgcnn.train.baselines.fit_predict`), monotone and so the same ROC curve. A curve
depends only on the order of the scores, so any of them is used as written.

Each seed's curve comes from :func:`sklearn.metrics.roc_curve`. The seeds are averaged
vertically (Fawcett 2006): each curve's true positive rate is read at the false positive
rates of a fixed grid and the seeds' values are averaged (mean and sample sd). At a false
positive rate where the curve rises vertically (ties, and always at 0) the highest true
positive rate is taken: the classifier reaches it at that rate, so a perfect classifier has
``tpr(0) = 1``, and ``tpr(1) = 1`` always. Between the curve's points it is interpolated
linearly. Rates are dimensionless (fractions of the test set's negatives / positives); the
AUC of each seed is :func:`sklearn.metrics.roc_auc_score` of the scores as written (the
per-seed ``roc_auc`` of ``stats/metrics.csv`` scores the probabilities clipped to
[1e-7, 1 − 1e-7], which can tie saturated scores and differ in the last digits).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

GRID_POINTS = 101  # false positive rates 0, 0.01, ..., 1
COLUMNS = ("target", "size", "mode", "fpr", "tpr", "tpr_sd", "auc_mean", "auc_sd", "n_seeds")


class OneClassError(ValueError):
    """A seed's test set holds a single class: it has no ROC curve (the message names the file)."""


def fpr_grid(points: int = GRID_POINTS) -> np.ndarray:
    """The false positive rates (dimensionless) the seeds' curves are averaged at: ``points``
    evenly spaced rates from 0 to 1."""
    return np.linspace(0.0, 1.0, points)


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """True positive rate of a ROC curve (points ``fpr``, ``tpr``, both non-decreasing, from
    (0, 0) to (1, 1)) at each false positive rate of ``grid``: at a rate the curve has points
    at, the highest of their true positive rates (the top of a vertical step); between two
    points, linear interpolation."""
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    last = len(fpr) - 1
    left = np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, last)  # last point at or left of x
    right = np.minimum(left + 1, last)  # first point right of x (the foot of its step)
    width = fpr[right] - fpr[left]
    inside = width > 0
    frac = np.divide(grid - fpr[left], width, out=np.zeros_like(grid, dtype=float), where=inside)
    return np.where(inside, tpr[left] + frac * (tpr[right] - tpr[left]), tpr[left])


def seed_curve(
    y_true: np.ndarray, score: np.ndarray, grid: np.ndarray, where: str = "predictions"
) -> tuple[np.ndarray, float]:
    """One seed's true positive rate at the false positive rates of ``grid`` and its ROC-AUC.
    Raises :class:`OneClassError` naming ``where`` when the labels hold one class only."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true, dtype=float)
    classes = np.unique(y)
    if len(classes) != 2:
        raise OneClassError(
            f"{where}: the test labels hold {len(classes)} class(es) ({', '.join(f'{c:g}' for c in classes)}); "
            "a ROC curve needs both classes (0 and 1) in the test set"
        )
    s = np.asarray(score, dtype=float)
    if not np.isfinite(s).all():
        raise ValueError(f"{where}: {int((~np.isfinite(s)).sum())} scores (y_pred) are not finite")
    fpr, tpr, _ = roc_curve(y, s)
    return tpr_at(fpr, tpr, grid), float(roc_auc_score(y, s))


def cell_curve(predictions: pd.DataFrame, where: str = "predictions", points: int = GRID_POINTS) -> pd.DataFrame:
    """The seed-averaged ROC curve of one cell (``predictions``: columns y_true, y_pred and,
    for several seeds, seed): one row per grid point with ``fpr``, ``tpr`` (mean over seeds),
    ``tpr_sd`` (sample sd; NaN for one seed), ``auc_mean``, ``auc_sd`` (of the seeds' AUCs)
    and ``n_seeds``. ``where`` names the data in errors (the file)."""
    missing = [c for c in ("y_true", "y_pred") if c not in predictions.columns]
    if missing:
        raise ValueError(f"{where}: no column {missing} (has {list(predictions.columns)})")
    grid = fpr_grid(points)
    groups = predictions.groupby("seed", sort=True) if "seed" in predictions else [(None, predictions)]
    curves, aucs = [], []
    for seed, g in groups:
        if set(np.unique(g["y_pred"].to_numpy(dtype=float))) <= {0.0, 1.0}:
            log.warning("%s seed %s: y_pred holds only 0 and 1 (hard labels?): one operating point", where, seed)
        tpr, auc = seed_curve(g["y_true"].to_numpy(), g["y_pred"].to_numpy(), grid, f"{where} (seed {seed})")
        curves.append(tpr)
        aucs.append(auc)
    tprs = np.vstack(curves)
    n = len(aucs)
    return pd.DataFrame(
        {
            "fpr": grid,
            "tpr": tprs.mean(axis=0),
            "tpr_sd": tprs.std(axis=0, ddof=1) if n > 1 else np.full(len(grid), np.nan),
            "auc_mean": float(np.mean(aucs)),
            "auc_sd": float(np.std(aucs, ddof=1)) if n > 1 else float("nan"),
            "n_seeds": n,
        }
    )


def roc_table(
    cells: Sequence[Mapping[str, Any]], paths: Sequence[str | Path], points: int = GRID_POINTS
) -> pd.DataFrame:
    """The long table of every classification cell's seed-averaged ROC curve: ``cells`` gives
    each cell's target, size and mode, ``paths`` its ``predictions.parquet`` in the same order.
    Columns :data:`COLUMNS`, one row per (cell, grid point). A cell with a seed whose test set
    holds one class has no curve: it is left out and listed in the log with the reason (a small
    data set of a user's must not stop the run after its training; its ROC-AUC in
    ``stats/metrics.csv`` is NaN)."""
    if len(cells) != len(paths):
        raise ValueError(f"{len(cells)} cells but {len(paths)} prediction files")
    parts = []
    for cell, path in zip(cells, paths, strict=True):
        try:
            curve = cell_curve(pd.read_parquet(path), str(path), points)
        except OneClassError as err:
            log.warning("left out of the ROC curves: %s n=%s %s: %s", cell["target"], cell["size"], cell["mode"], err)
            continue
        parts.append(curve.assign(target=cell["target"], size=str(cell["size"]), mode=cell["mode"]))
    if not parts:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def write_table(cells: Sequence[Mapping[str, Any]], paths: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """Workflow entry (rule roc): :func:`roc_table` of the cells, written to ``out`` (CSV,
    atomically)."""
    from tlcgcnn.utils import fileio as io

    table = roc_table(cells, paths)
    io.write_csv(table, out)
    for (target, size, mode), g in table.groupby(["target", "size", "mode"], sort=False):
        r = g.iloc[0]
        log.info("%s n=%s %s: ROC-AUC %.4f ± %.4f over %d seeds", target, size, mode, r.auc_mean, r.auc_sd, r.n_seeds)
    return table
