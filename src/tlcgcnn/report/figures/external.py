"""Outside labelled sets: predicted against true values (parity) per external set and target."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.series import MOST_PER_PANEL
from tlcgcnn.report.figures.style import empty, finish, grid, setup, size_key, split_even, unit_text

log = logging.getLogger(__name__)


def external_parity(
    table: pd.DataFrame, preds: pd.DataFrame, labels: dict[str, str], png: str | Path, pdf: str | Path | None = None
) -> None:
    """One panel per (external set, target) at the target's largest training size: each
    mode's prediction (mean over seeds) against the true value; materials seen in training
    (same id or same structure as a training / validation material of a seed) are drawn as
    crosses. The legend gives each mode's external MAE (mean over seeds) with and without
    them, and its internal test MAE."""
    setup()
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(zip(table["external"], table["target"], strict=True))) if len(table) else []
    if not pairs:
        fig, ax = plt.subplots(figsize=(4.8, 4.6))
        empty(ax, "no external-set predictions")
        finish(fig, png, pdf)
        return
    # (external set, target, training size, modes): a legend holds at most 8 modes
    cells = []
    for ext, target in pairs:
        rows = table[(table["external"] == ext) & (table["target"] == target)]
        size = max(rows["size"].astype(str).unique(), key=size_key)
        p = preds[(preds["external"] == ext) & (preds["target"] == target) & (preds["size"].astype(str) == size)]
        modes = sorted(p["mode"].astype(str).unique())
        cells += [(ext, target, size, chunk) for chunk in split_even(modes, MOST_PER_PANEL)]
    nrow, ncol = grid(len(cells))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 4.6 * nrow), squeeze=False)
    for ax in list(axes.flat)[len(cells) :]:
        ax.set_axis_off()
    for ax, (ext, target, size, chunk) in zip(axes.flat, cells, strict=False):
        rows = table[(table["external"] == ext) & (table["target"] == target)]
        rows = rows[rows["size"].astype(str) == size]
        p = preds[(preds["external"] == ext) & (preds["target"] == target) & (preds["size"].astype(str) == size)]
        p = p[p["mode"].astype(str).isin(chunk)]
        lo, hi = (
            float(np.nanmin(p[["y_true", "y_pred"]].to_numpy())),
            float(np.nanmax(p[["y_true", "y_pred"]].to_numpy())),
        )
        for i, (mode, grp) in enumerate(p.groupby("mode", sort=True)):
            m = grp.groupby("material_id").agg(
                y_true=("y_true", "first"), y_pred=("y_pred", "mean"), seen=("in_training", "max")
            )
            r = rows[rows["mode"] == mode]
            label = (
                f"{mode}: MAE {r['mae_external'].mean():.3g} "
                f"({r['mae_external_no_overlap'].mean():.3g} unseen; test {r['mae_test'].mean():.3g})"
            )
            colour = f"C{i}"
            ax.scatter(
                m.loc[~m["seen"], "y_true"], m.loc[~m["seen"], "y_pred"], s=10, alpha=0.7, color=colour, label=label
            )
            if m["seen"].any():
                ax.scatter(m.loc[m["seen"], "y_true"], m.loc[m["seen"], "y_pred"], s=22, marker="x", color=colour)
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
        unit = unit_text(rows["property"].iloc[0], rows["transform"].iloc[0])
        n_seen = int(rows["n_in_training"].max())
        ax.set_title(
            f"{labels.get(target, target)} on {ext} (n = {int(rows['n_external'].iloc[0])}, training size {size})",
            fontsize=9,
        )
        ax.set_xlabel(f"true value ({unit})")
        ax.set_ylabel(f"predicted value, mean over seeds ({unit})")
        ax.legend(fontsize=7, title=f"× = seen in training (up to {n_seen})", title_fontsize=7)
    finish(fig, png, pdf)
    log.info("external parity -> %s", png)
