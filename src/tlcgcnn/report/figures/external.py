"""Outside labelled sets: predicted against true values (parity) per external set and target."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.style import empty, finish, setup

log = logging.getLogger(__name__)


def _size_key(size: object) -> float:
    return float("inf") if str(size) == "all" else float(str(size))


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
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.8 * len(pairs), 4.6), squeeze=False)
    for ax, (ext, target) in zip(axes[0], pairs, strict=True):
        rows = table[(table["external"] == ext) & (table["target"] == target)]
        size = max(rows["size"].astype(str).unique(), key=_size_key)
        rows = rows[rows["size"].astype(str) == size]
        p = preds[(preds["external"] == ext) & (preds["target"] == target) & (preds["size"].astype(str) == size)]
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
        unit = f"log10 {rows['property'].iloc[0]}" if rows["transform"].iloc[0] == "log10" else rows["property"].iloc[0]
        n_seen = int(rows["n_in_training"].max())
        ax.set_title(
            f"{labels.get(target, target)} on {ext} (n = {int(rows['n_external'].iloc[0])}, training size {size})",
            fontsize=9,
        )
        ax.set_xlabel(f"true ({unit})")
        ax.set_ylabel(f"predicted ({unit}; mean over seeds)")
        ax.legend(fontsize=7, title=f"× = seen in training (up to {n_seen})", title_fontsize=7)
    finish(fig, png, pdf)
    log.info("external parity -> %s", png)
