"""Figures drawn from the collected metrics (PNG for screens, PDF for papers)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tlcgcnn import io

log = logging.getLogger(__name__)


def _setup() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def save(fig: object, png: str | Path, pdf: str | Path | None = None) -> None:
    for path in (png, pdf):
        if path is None:
            continue
        suffix = Path(path).suffix.lstrip(".")
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=200, bbox_inches="tight")  # type: ignore[attr-defined]


def _plain_log_ticks(ax: object, sizes: list[int]) -> None:
    """Label a log x axis at the training sizes only, as plain numbers."""
    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator(sizes))  # type: ignore[attr-defined]
    ax.xaxis.set_major_formatter(ScalarFormatter())  # type: ignore[attr-defined]
    ax.xaxis.set_minor_locator(NullLocator())  # type: ignore[attr-defined]
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))  # type: ignore[attr-defined]
    ax.yaxis.set_minor_formatter(NullFormatter())  # type: ignore[attr-defined]
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)  # type: ignore[attr-defined]


def learning_curve(metrics: pd.DataFrame, tests: pd.DataFrame | None, png: str | Path, pdf: str | Path | None = None, metric: str = "mae") -> None:
    """Test MAE vs training size on log-log axes, one panel per target, one line per mode
    (mean ± standard deviation over seeds); significant differences (Holm p < 0.05) starred."""
    _setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    targets = list(dict.fromkeys(metrics["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 4.0), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        sub = metrics[metrics["target"] == target]
        sns.lineplot(data=sub, x="size", y=metric, hue="mode", style="mode", markers=True, dashes=False, errorbar="sd", err_style="bars", ax=ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax, sorted(sub["size"].unique()))
        prop = sub["property"].iloc[0]
        unit = "log10 " + prop if sub["transform"].iloc[0] == "log10" else prop
        ax.set_title(f"{target}")
        ax.set_xlabel("training set size")
        ax.set_ylabel(f"test MAE ({unit})")
        if tests is not None and len(tests):
            for r in tests[(tests["target"] == target) & (tests["p_holm"] < 0.05)].itertuples():
                ax.annotate("*", (r.size, min(r.mae_mode, r.mae_baseline)), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=14)
        ax.legend(title="mode", fontsize=8)
    n_seeds = metrics.groupby(["target", "size", "mode"])["seed"].nunique().max()
    fig.suptitle(f"Scratch vs transfer learning (mean ± sd over {n_seeds} seeds; * Holm p < 0.05)", fontsize=11)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)
    log.info("learning curve -> %s", png)
