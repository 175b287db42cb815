"""Helpers every figure shares: the plotting theme, atomic PNG/PDF output that passes the
figure-quality guard (:mod:`.quality`), log axes with plain numbers, the "nothing to draw"
panel, the axis labels with their units and the split of many series over panels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.report.figures import quality
from tlcgcnn.utils import fileio as io


def setup() -> None:
    """Non-interactive backend and the seaborn theme of every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def save(fig: Any, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write the figure as PNG (and PDF), each file atomically, once it passes the
    figure-quality guard (:mod:`.quality`: axis labels with units, legends of at most 8
    entries, at most 3,000 px on a side); a figure that fails raises
    :class:`~.quality.FigureQualityError` and leaves no file behind."""
    name = Path(png).stem
    quality.check(fig, name)
    for path in (png, pdf):
        if path is None:
            continue
        suffix = Path(path).suffix.lstrip(".")
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=quality.DPI, bbox_inches="tight")
            if suffix == "png":
                quality.check_png(tmp, name)


def finish(fig: Any, png: str | Path, pdf: str | Path | None) -> None:
    """Lay out (tight layout, unless the figure has its own layout engine), save and close a figure."""
    import matplotlib.pyplot as plt

    try:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        save(fig, png, pdf)
    finally:
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


def legend_below(fig: Any, axes: Any, order: list[str] | None = None, title: str | None = None) -> None:
    """One legend for all panels, each label once (in ``order`` where given, else as first
    drawn), hung from the panels' bottom edge in two columns (``save``'s tight bounding box
    keeps it in the file without a gap)."""
    handles, names = [], []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if not handles:
        return
    if order is not None:
        rank = {n: i for i, n in enumerate(order)}
        ranked = sorted(zip(handles, names, strict=True), key=lambda hn: rank.get(hn[1], len(rank)))
        handles, names = [h for h, _ in ranked], [n for _, n in ranked]
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    style = {"fontsize": 7, "ncol": 2, "frameon": False, "title": title, "title_fontsize": 7}
    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        fig.legend(handles, names, loc="outside lower center", **style)
    else:
        fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), **style)


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


def size_key(size: object) -> float:
    """Sort key of a training size: numbers in increasing order, ``all`` (the whole pool) last."""
    return float("inf") if str(size) == "all" else float(str(size))


def numeric_size(s: pd.Series) -> pd.Series:
    """Training sizes as numbers ("all" becomes NaN)."""
    return pd.to_numeric(s, errors="coerce")


# symbols of the properties in a log10 unit ("log10(K_VRH / GPa)"); others use their short name or key
SYMBOLS = {
    "formation_energy_per_atom": "ΔEf",
    "band_gap": "Eg",
    "efermi": "E_F",
    "k_vrh": "K_VRH",
    "g_vrh": "G_VRH",
    "band_gap_hse": "Eg(HSE)",
    "band_gap_gllbsc": "Eg(GLLB-SC)",
    "band_gap_scan": "Eg(SCAN)",
}


def unit_text(prop: Any, transform: Any = None) -> str:
    """The unit of a target's values (and of their MAE) as an axis label writes it: the
    property's unit ("eV/atom"), "dimensionless" for a dimensionless property,
    "log10(K_VRH / GPa)" for a log10-transformed one ("dex" when the property has no unit).
    A property this process does not know gives a text the figure-quality guard rejects
    (its unit cannot be named)."""
    from tlcgcnn.data.properties import PROPERTIES

    known = PROPERTIES.get(str(prop))
    if known is None:
        return f"unit of {prop} not declared"
    if transform == "log10":
        return f"log10({SYMBOLS.get(known.name, known.name)} / {known.unit})" if known.unit else "dex"
    return known.unit or "dimensionless"


def is_classification(sub: pd.DataFrame) -> bool:
    return "task" in sub and bool((sub["task"] == "classification").any())


def error_label(sub: pd.DataFrame, prefix: str = "test") -> str:
    """Axis label of a target's error with its unit: "test 1 − ROC-AUC (dimensionless)" for
    a classifier, else "test MAE (<unit>)" (:func:`unit_text`) of the rows' property."""
    if is_classification(sub):
        return f"{prefix} 1 − ROC-AUC (dimensionless)"
    transform = sub["transform"].iloc[0] if "transform" in sub else None
    return f"{prefix} MAE ({unit_text(sub['property'].iloc[0], transform)})"


def split_even(items: list[Any], most: int) -> list[list[Any]]:
    """``items`` in consecutive chunks of at most ``most``, as even as possible (8 → 4 + 4, not 7 + 1)."""
    if not items:
        return []
    n = -(-len(items) // most)
    size = -(-len(items) // n)
    return [items[i : i + size] for i in range(0, len(items), size)]


def grid(n: int, ncol: int = 3) -> tuple[int, int]:
    """Rows and columns of ``n`` panels wrapped into rows of ``ncol``."""
    cols = max(1, min(ncol, n))
    return max(1, -(-n // cols)), cols


def legend_under(ax: Any, fontsize: float = 6.5, wrap: int = 62) -> None:
    """The panel's legend under its x axis, one entry a line, long labels wrapped (a figure
    with a layout engine keeps it clear of the next row)."""
    import textwrap

    handles, names = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            [textwrap.fill(n, wrap, break_on_hyphens=False) for n in names],
            fontsize=fontsize,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
            frameon=False,
            ncol=1,
        )
