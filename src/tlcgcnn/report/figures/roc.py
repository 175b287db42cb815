"""ROC curves of the classification targets (MT-CGCNN's Figure M4), from ``stats/roc.csv``
(:mod:`tlcgcnn.analysis.roc`): one panel per (target, training size)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.labels import mode_labels
from tlcgcnn.report.figures.series import MOST_PER_PANEL
from tlcgcnn.report.figures.style import (
    empty,
    finish,
    grid,
    legend_under,
    mode_palette,
    numeric_size,
    setup,
    size_key,
)

log = logging.getLogger(__name__)


def _auc_text(r: pd.Series) -> str:
    """A legend entry's AUC: "AUC 0.958 ± 0.004" (mean ± sd over the seeds), or "AUC 0.958, 1 seed"."""
    if int(r["n_seeds"]) > 1 and np.isfinite(r["auc_sd"]):
        return f"AUC {r['auc_mean']:.3f} ± {r['auc_sd']:.3f}"
    return f"AUC {r['auc_mean']:.3f}, {int(r['n_seeds'])} seed"


def drawn_modes(aucs: pd.Series, reference: str | None, most: int = MOST_PER_PANEL) -> tuple[list[str], list[str]]:
    """The modes one panel draws and those it leaves out (``aucs``: mode → mean AUC): all of
    them while they are at most ``most``, else the ``reference`` (the baseline, CGCNN from
    scratch) and the ``most`` − 1 others of highest mean AUC. The reference comes first, the
    others by mean AUC, highest first."""
    order = [str(m) for m in aucs.sort_values(ascending=False, kind="stable").index]
    others = [m for m in order if m != reference]
    ref = [reference] if reference in order else []
    keep = others[: most - len(ref)]
    return ref + keep, others[len(keep) :]


def roc_curves(
    roc: pd.DataFrame,
    metrics: pd.DataFrame | None,
    reference: str | None,
    target_labels: Mapping[str, str],
    png: str | Path,
    pdf: str | Path,
) -> None:
    """Seed-averaged ROC curves (true against false positive rate, both dimensionless), one
    panel per (classification target, training size), titled with the target's label: each
    mode's mean curve with a ±1 sd band over the seeds, the chance diagonal dotted, legend
    entries "mode (AUC mean ± sd)". At most 8 modes a panel: the ``reference`` mode (the
    baseline) and the 7 others of highest mean AUC (the rest are in stats/roc.csv; the title
    says how many). Mode names as in the other figures (:func:`.labels.mode_labels` of the
    ``metrics`` records; the mode key where they lack the mode fields)."""
    setup()
    import matplotlib.pyplot as plt

    cells = [] if roc.empty else list(roc[["target", "size"]].astype(str).drop_duplicates().itertuples(index=False))
    targets = list(dict.fromkeys(t for t, _ in cells))
    cells = sorted(cells, key=lambda c: (targets.index(c[0]), size_key(c[1])))
    nrow, ncol = grid(len(cells))
    height = min(4.8 * nrow, 14.0)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, height + 0.4), squeeze=False, layout="constrained")
    for ax in list(axes.flat)[len(cells) :]:
        ax.set_axis_off()
    if not cells:
        empty(axes[0, 0], "no classification target in stats/roc.csv")
    modes = list(dict.fromkeys(roc["mode"].astype(str))) if not roc.empty else []
    palette = mode_palette(modes)
    for ax, (target, size) in zip(axes.flat, cells, strict=False):
        sub = roc[(roc["target"].astype(str) == target) & (roc["size"].astype(str) == size)]
        first = sub.drop_duplicates("mode").assign(mode=lambda d: d["mode"].astype(str)).set_index("mode")
        rec = metrics[metrics["target"].astype(str) == target] if metrics is not None and len(metrics) else None
        names = mode_labels(rec) if rec is not None and "family" in rec and len(rec) else {}
        drawn, left_out = drawn_modes(first["auc_mean"], reference)
        if left_out:
            log.info("%s n=%s: %d modes left out of the figure: %s", target, size, len(left_out), left_out)
        ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1.0)  # chance (unlabelled: the caption says so)
        for mode in drawn:
            g = sub[sub["mode"].astype(str) == mode].sort_values("fpr")
            r = first.loc[mode]
            is_ref = mode == reference
            color = "k" if is_ref else palette[mode]
            lo = (g["tpr"] - g["tpr_sd"].fillna(0.0)).clip(0.0, 1.0)
            hi = (g["tpr"] + g["tpr_sd"].fillna(0.0)).clip(0.0, 1.0)
            ax.fill_between(g["fpr"], lo, hi, color=color, alpha=0.12, lw=0)
            ax.plot(
                np.r_[0.0, g["fpr"]],  # the curve starts at (0, 0) and rises at fpr = 0
                np.r_[0.0, g["tpr"]],
                color=color,
                lw=1.8 if is_ref else 1.3,
                ls="--" if is_ref else "-",
                label=f"{names.get(mode, mode)} ({_auc_text(r)})",
            )
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate (dimensionless)")
        ax.set_ylabel("true positive rate (dimensionless)")
        n = numeric_size(pd.Series([size])).iloc[0]
        seeds = int(first["n_seeds"].max()) if len(first) else 0
        title = (
            f"{target_labels.get(target, target)}, n = {int(n) if pd.notna(n) else size}\n"
            f"test-set ROC, mean ± sd over {seeds} seeds; dotted: chance"
        )
        if left_out:
            title += f"\n(+{len(left_out)} modes of lower AUC in stats/roc.csv)"
        ax.set_title(title, fontsize=9)
        legend_under(ax, wrap=56)
    finish(fig, png, pdf)
    log.info("ROC curves -> %s", png)
