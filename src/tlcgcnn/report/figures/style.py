"""Helpers every figure shares: the plotting theme, atomic PNG/PDF output, log axes with
plain numbers, the "nothing to draw" panel and the error axis label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.utils import fileio as io


def setup() -> None:
    """Non-interactive backend and the seaborn theme of every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def save(fig: Any, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write the figure as PNG (and PDF), each file atomically."""
    for path in (png, pdf):
        if path is None:
            continue
        suffix = Path(path).suffix.lstrip(".")
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=200, bbox_inches="tight")


def finish(fig: Any, png: str | Path, pdf: str | Path | None) -> None:
    """Lay out, save and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def mode_palette(keys: list[str]) -> dict[str, Any]:
    """One colour per key: tab10 / tab20 while they suffice, else evenly spaced hues handed out
    with a golden-ratio stride, so that keys next to each other (one panel's modes) differ."""
    import math

    import seaborn as sns

    n = len(keys)
    if n <= 20:
        return dict(zip(keys, sns.color_palette("tab10" if n <= 10 else "tab20", n), strict=True))
    colors = sns.color_palette("husl", n)
    stride = max(1, round(n * 0.382))
    while math.gcd(stride, n) != 1:
        stride += 1
    return {key: colors[(i * stride) % n] for i, key in enumerate(keys)}


def legend_below(fig: Any, axes: Any) -> None:
    """One legend for all panels, each label once, hung from the panels' bottom edge in two
    columns (``save``'s tight bounding box keeps it in the file without a gap)."""
    handles, names = [], []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        fig.legend(handles, names, fontsize=7, loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0.0))


def plain_log_ticks(ax: Any, sizes: list[int]) -> None:
    """Label a log x axis at the training sizes only, as plain numbers (log y axis too)."""
    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)


def plain_log_axis(axis: Any, ticks: list[float] | None = None) -> None:
    """Log axis with plain numbers (50, 100, 0.5) instead of 5 × 10¹."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    if ticks is not None:
        axis.set_ticks(ticks)
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_minor_formatter(fmt)


def empty(ax: Any, text: str) -> None:
    """A panel that says why there is nothing to draw (only reached when a figure is asked
    for explicitly although the config lacks what it needs; see figures.requested)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def numeric_size(s: pd.Series) -> pd.Series:
    """Training sizes as numbers ("all" becomes NaN)."""
    return pd.to_numeric(s, errors="coerce")


def error_label(sub: pd.DataFrame) -> str:
    """Axis label of a target's error: 1 − ROC-AUC for a classifier, else the test MAE."""
    if "task" in sub and (sub["task"] == "classification").any():
        return "1 − ROC-AUC"
    prop = sub["property"].iloc[0]
    return f"test MAE ({'log10 ' if sub['transform'].iloc[0] == 'log10' else ''}{prop})"
