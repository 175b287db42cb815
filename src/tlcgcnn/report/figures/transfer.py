"""What transfer gains over training from scratch: improvement rate against size, layer
freezing × pretraining source, multi-task against single-task pretraining, and how much the
fine-tuning protocol chosen on validation data matters.

Inputs are the tables of the statistics stage: ``metrics.csv`` (one row per run, with the
mode's family, pretraining source / size / subset, frozen layers and model kind),
``ttests.csv`` (paired tests of every mode against scratch, Holm within families) and
``protocol.csv`` (each source's transfer modes, the one selected on validation data).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.labels import scheme, scheme_key, source_label
from tlcgcnn.report.figures.style import (
    empty,
    finish,
    grid,
    legend_below,
    legend_under,
    mode_palette,
    numeric_size,
    plain_log_axis,
    setup,
    split_even,
)

IMPROVEMENT_FLOOR = -25.0  # %: lower edge of the improvement axis; worse points are drawn on it (▼, value printed)
SMALL_EFFECT = 10.0  # %: the shaded band of small effects


def _improvement_points(metrics: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Per target, training size and pretraining source (largest pretraining set): the mode
    selected on validation among the source's transfer modes, with its test against scratch."""
    from tlcgcnn.report.figures.series import largest_pretraining, select_on_validation

    if not len(tests) or "family" not in metrics:
        return pd.DataFrame(columns=["target", "size", "series", "mode", "n_candidates", "improvement_rate", "p_holm"])
    tl = largest_pretraining(metrics)
    sel = select_on_validation(tl, tl["source"])
    t = tests.assign(size=tests["size"].astype(str))[["target", "size", "mode", "improvement_rate", "p_holm"]]
    return sel.merge(t, on=["target", "size", "mode"])


def improvement(
    metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """Improvement rate (MAE_scratch − MAE_TL) / MAE_scratch against training crystals, one
    panel per target: one line per pretraining source (its largest pretraining set), the
    source's transfer mode selected on validation data at each size (:func:`_improvement_points`);
    filled markers: Holm p < 0.05. The axis runs from −25 % (worse points sit on that edge
    as ▼ with their value) so that ±10 % (shaded) stays readable."""
    setup()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    from tlcgcnn.report.figures.series import MOST_PER_PANEL

    pts = _improvement_points(metrics, tests)
    pts["size_n"] = numeric_size(pts["size"])
    pts["value"] = 100 * pts["improvement_rate"].astype(float)
    pts = pts[pts["size_n"].notna() & pts["value"].notna()]
    targets = list(dict.fromkeys(pts["target"]))
    cells = [
        (target, chunk)
        for target in targets
        for chunk in split_even(sorted(pts.loc[pts["target"] == target, "series"].unique()), MOST_PER_PANEL)
    ]
    all_series = sorted(pts["series"].unique(), key=lambda s: (s.startswith("MT"), s))
    palette = mode_palette(all_series)
    shared_legend = len(all_series) <= MOST_PER_PANEL
    low = float(pts["value"].min()) if len(pts) else 0.0
    high = float(pts["value"].max()) if len(pts) else 0.0
    lo = IMPROVEMENT_FLOOR if low < IMPROVEMENT_FLOOR else min(-SMALL_EFFECT - 2, 5 * np.floor((low - 3) / 5))
    hi = min(100.0, max(SMALL_EFFECT + 5, 5 * np.ceil((high + 5) / 5)))
    nrow, ncol = grid(len(cells))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.3 * nrow + 0.4), squeeze=False, layout="constrained")
    if not cells:
        empty(axes[0, 0], "no transfer modes")
    for ax in list(axes.flat)[max(1, len(cells)) :]:
        ax.set_axis_off()
    edge = lo + 0.03 * (hi - lo)
    for ax, (target, chunk) in zip(axes.flat, cells, strict=False):
        sub = pts[(pts["target"] == target) & pts["series"].isin(chunk)]
        ax.axhspan(-SMALL_EFFECT, SMALL_EFFECT, color="0.92", zorder=0, lw=0)
        ax.axhline(0, color="k", lw=0.8)
        for name in [s for s in all_series if s in chunk]:
            g = sub[sub["series"] == name].sort_values("size_n")
            shown = g["value"].where(g["value"] >= lo, edge)  # a point below the axis sits on its edge
            colour = palette[name]
            ax.plot(g["size_n"], shown, color=colour, lw=1.2, label=name)
            sig = (g["p_holm"] < 0.05).to_numpy()
            out = (g["value"] < lo).to_numpy()
            for marker, rows in (("o", ~out), ("v", out)):
                ax.scatter(g["size_n"][rows & sig], shown[rows & sig], color=colour, marker=marker, s=30, zorder=3)
                ax.scatter(
                    g["size_n"][rows & ~sig],
                    shown[rows & ~sig],
                    facecolor="white",
                    edgecolor=colour,
                    marker=marker,
                    s=30,
                    zorder=3,
                )
            for x, v in zip(g["size_n"][out], g["value"][out], strict=True):
                ax.annotate(f"{v:.0f}", (x, edge), textcoords="offset points", xytext=(4, 3), fontsize=6, color=colour)
        ax.set_ylim(lo, hi)
        ax.yaxis.set_major_locator(MultipleLocator(10 if hi - lo <= 130 else 20))
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis, sorted(sub["size_n"].unique()))
        part = [c for c in cells if c[0] == target]
        suffix = f" ({part.index((target, chunk)) + 1}/{len(part)})" if len(part) > 1 else ""
        ax.set_title(target_labels.get(target, target) + suffix, fontsize=9)
        ax.set_xlabel("training crystals")
        ax.set_ylabel("improvement over scratch (%)")
        if not shared_legend:
            legend_under(ax)
    if shared_legend and cells:
        legend_below(fig, axes, order=all_series, title="pretraining source")
    below = f"; ▼ below {lo:.0f} % (value printed)".replace("-", "−") if low < lo else ""
    fig.suptitle(
        "Improvement (MAE_scratch − MAE_TL) / MAE_scratch of each pretraining source's mode selected on validation;\n"
        f"filled: Holm p < 0.05; shaded: ±{SMALL_EFFECT:.0f} %{below}",
        fontsize=9,
    )
    finish(fig, png, pdf)


def _transfer_tests(metrics: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    info = metrics.drop_duplicates("mode").set_index("mode")
    t = tests[tests["mode"].map(info["family"]) == "transfer"].copy()
    for col in (
        "freeze",
        "reinit",
        "pretrained",
        "pretrain_property",
        "pretrain_subset",
        "pretrain_size",
        "model_kind",
        "features",
    ):
        t[col] = t["mode"].map(info[col]) if col in info else None  # features: only frozen-features runs have it
    described = list(zip(t["freeze"], t["reinit"], t["features"], t["model_kind"], strict=True))
    t["scheme"] = [scheme(*d) for d in described]
    t["scheme_key"] = [scheme_key(*d) for d in described]
    t["source"] = [source_label(p, s) for p, s in zip(t["pretrain_property"], t["pretrain_subset"], strict=True)]
    t["size_n"] = numeric_size(t["size"])
    return t


HEATMAP_LIMIT = 50.0  # %: the colour scale's ends (values beyond keep their printed number)


def freeze_heatmap(
    metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """Transfer scheme × pretraining source: improvement over scratch at each target's
    smallest training size (Berkeley report, Tables 2/3), from each source's largest
    pretraining set. One mode per cell: of the modes with that scheme and source (e.g. the
    same scheme at several learning rates), the one with the lowest mean validation score;
    "1 of k" says it was chosen among k. ★: that mode's paired t-test against scratch has a
    Holm-adjusted p < 0.05 within its family (every transfer mode and size of the run)."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from tlcgcnn.report.figures.series import select_on_validation

    t = _transfer_tests(metrics, tests) if len(tests) else pd.DataFrame()
    if len(t):  # the largest pretraining set of each source (the size sweep is its own figure)
        t = t[t["pretrain_size"] == t.groupby("source")["pretrain_size"].transform("max")]
        t = t[t["size_n"] == t.groupby("target")["size_n"].transform("min")]
        t = t.assign(size=t["size"].astype(str), cell=t["scheme"] + " | " + t["source"])
        runs = metrics.assign(size=metrics["size"].astype(str)).merge(
            t[["target", "size", "mode", "cell"]], on=["target", "size", "mode"]
        )
        sel = select_on_validation(runs, runs["cell"]).rename(columns={"series": "cell"})
        t = t.merge(sel, on=["target", "size", "mode", "cell"])
    targets = [x for x in dict.fromkeys(t["target"]) if (t[t["target"] == x]["scheme"].nunique() > 1)] if len(t) else []
    n_src = max([t[t["target"] == x]["source"].nunique() for x in targets] or [1])
    n_schemes = max([t[t["target"] == x]["scheme"].nunique() for x in targets] or [1])
    nrow, ncol = grid(len(targets))
    width, height = 1.7 + 0.65 * n_src, 1.2 + 0.42 * n_schemes  # the wrapped scheme labels take ~1.4 in
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(width * ncol + 0.8, height * nrow + 0.5), squeeze=False, layout="constrained"
    )
    if not targets:
        empty(axes[0, 0], "no target with more than one transfer scheme")
    for ax in list(axes.flat)[max(1, len(targets)) :]:
        ax.set_axis_off()
    for ax, target in zip(axes.flat, targets, strict=False):
        sub = t[t["target"] == target]
        order = sub.drop_duplicates("scheme").sort_values("scheme_key")["scheme"]
        sources = sorted(sub["source"].unique(), key=lambda s: (s.startswith("MT"), s))
        val = (sub.pivot(index="scheme", columns="source", values="improvement_rate") * 100).reindex(
            index=list(order), columns=sources
        )
        pv = sub.pivot(index="scheme", columns="source", values="p_holm").reindex_like(val)
        tried = sub.pivot(index="scheme", columns="source", values="n_candidates").reindex_like(val)
        annot = val.copy().astype(object)
        for i in val.index:
            for j in val.columns:
                v, p, k = val.loc[i, j], pv.loc[i, j], tried.loc[i, j]
                star = "★" if pd.notna(p) and p < 0.05 else ""
                of = f"\n1 of {int(k)}" if k > 1 else ""
                annot.loc[i, j] = "" if pd.isna(v) else f"{v:+.0f} %{star}{of}"
        sns.heatmap(
            val.astype(float),
            annot=annot.to_numpy(),
            fmt="",
            cmap="RdBu",
            vmin=-HEATMAP_LIMIT,
            vmax=HEATMAP_LIMIT,
            cbar=False,
            ax=ax,
            linewidths=0.5,
            linecolor="white",
            annot_kws={"fontsize": 7},
        )
        ax.grid(False)
        ax.set_title(f"{target_labels.get(target, target)}, n = {int(sub['size_n'].iloc[0])}", fontsize=9)
        ax.set_xlabel("pretraining source")
        ax.set_ylabel("transfer scheme")
        ax.set_xticklabels(ax.get_xticklabels(), rotation=25, ha="right", fontsize=7)
        ax.set_yticklabels(
            [textwrap.fill(str(s), 22, break_on_hyphens=False) for s in val.index], rotation=0, fontsize=7
        )
    if targets:
        fig.colorbar(
            ScalarMappable(Normalize(-HEATMAP_LIMIT, HEATMAP_LIMIT), "RdBu"),
            ax=axes,
            label="improvement over scratch (%)",
            extend="both",
            shrink=0.5,
        )
        fig.suptitle(
            "Improvement over scratch at the smallest training size: one mode per cell, chosen on validation;\n"
            "★ Holm-adjusted p < 0.05 within the family of the test (transfer-vs-scratch or classification)",
            fontsize=9,
        )
    finish(fig, png, pdf)


def multitask_bars(
    metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """Multi-task (ΔEf + Eg + E_F) vs single-task pretraining: improvement over scratch of
    the all-layers-fine-tuned modes, with the 95 % CI of the paired difference, per target and size."""
    setup()
    import matplotlib.pyplot as plt

    t = _transfer_tests(metrics, tests) if len(tests) else pd.DataFrame()
    if len(t):
        t = t[(t["scheme_key"] == (0, 0)) & (t["pretrain_subset"] == "all")]
        t = t[t["pretrain_size"] == t.groupby("source")["pretrain_size"].transform("max")]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.4 * (t.groupby(["target", "size"]).ngroups if len(t) else 1)), 4.2))
    if t.empty or t["source"].nunique() < 2:
        empty(ax, "needs all-layers-fine-tuned modes from at least two pretraining sources")
    else:
        t = t.sort_values(["target", "size_n"])
        cells = list(dict.fromkeys(zip(t["target"], t["size_n"], strict=True)))
        sources = sorted(t["source"].unique(), key=lambda s: (s.startswith("MT"), s))
        width = 0.8 / len(sources)
        colors = dict(zip(sources, plt.get_cmap("Set2").colors, strict=False))
        for j, src in enumerate(sources):
            for i, cell in enumerate(cells):
                r = t[(t["target"] == cell[0]) & (t["size_n"] == cell[1]) & (t["source"] == src)]
                if r.empty:
                    continue
                r = r.iloc[0]
                val = 100 * r["improvement_rate"]
                err = 100 * (r["ci_high"] - r["ci_low"]) / 2 / r["mae_baseline"] if pd.notna(r["ci_low"]) else 0.0
                ax.bar(
                    i + (j - (len(sources) - 1) / 2) * width,
                    val,
                    width,
                    yerr=err,
                    color=colors[src],
                    label=src if i == 0 or src not in ax.get_legend_handles_labels()[1] else None,
                    capsize=2,
                    edgecolor="k" if r["p_holm"] < 0.05 else "none",
                )
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"{target_labels.get(c[0], c[0])}\nn={int(c[1])}" for c in cells], fontsize=7)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("target, n = training crystals")
        ax.set_ylabel("improvement over scratch ± 95 % CI (%)")
        ax.set_title("Multi-task vs single-task pretraining (black edge: Holm p < 0.05)", fontsize=10)
        ax.legend(title="pretraining source", fontsize=8)
    finish(fig, png, pdf)


def protocol_sensitivity(
    protocol: pd.DataFrame, metrics: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """How much the fine-tuning protocol matters (stats/protocol.csv), one panel per target:
    against training crystals, each transfer mode's test error above the best mode of its
    pretraining source (%, symmetric-log axis: linear up to 10 %): the mode selected on
    validation data (★, solid line, one colour per source), the worst mode (○, dotted; the
    spread of the choice) and every other mode (grey dots). At most 5 sources a panel."""
    setup()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    from tlcgcnn.report.figures.series import MOST_PER_PANEL, source_names

    p = protocol.copy() if len(protocol) else pd.DataFrame(columns=["target", "pretrained", "size"])
    shown = (
        metrics[metrics["pretrained"].astype(str).isin(set(p["pretrained"].astype(str)))] if len(metrics) else metrics
    )
    names = source_names(shown) if len(shown) else {}
    p["source"] = [names.get(str(s), str(s)) for s in p["pretrained"]]
    numeric = numeric_size(p["size"])
    top = float(numeric.max()) if numeric.notna().any() else 1.0
    p["x"] = numeric.fillna(2.0 * top)  # size "all" (the whole pool) right of the largest size
    best = p["test_best"].astype(float) if len(p) else pd.Series(dtype=float)
    p["above"] = 100 * (p["test_mean"].astype(float) - best) / best if len(p) else pd.Series(dtype=float)
    p["chosen"] = p["selected"].astype(str).str.lower().eq("true") if len(p) else pd.Series(dtype=bool)
    keys = ("selected on validation data (★)", "worst protocol (○)", "other protocols")
    most_sources = MOST_PER_PANEL - len(keys)
    cells = [
        (target, chunk)
        for target in dict.fromkeys(p["target"])
        for chunk in split_even(
            sorted(p.loc[p["target"] == target, "source"].unique(), key=lambda s: (s.startswith("MT"), s)),
            most_sources,
        )
    ]
    all_sources = sorted(p["source"].unique(), key=lambda s: (s.startswith("MT"), s))
    palette = mode_palette(all_sources)
    shared_legend = len(all_sources) <= most_sources
    nrow, ncol = grid(len(cells))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.3 * nrow + 0.5), squeeze=False, layout="constrained")
    if not cells:
        empty(axes[0, 0], "no target fine-tuned in several ways from one pretraining source")
    for ax in list(axes.flat)[max(1, len(cells)) :]:
        ax.set_axis_off()
    peak = float(p["above"].max()) if len(p) else 10.0
    ticks = [t for t in (0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if t <= max(10.0, peak) * 1.05]
    for ax, (target, chunk) in zip(axes.flat, cells, strict=False):
        sub = p[(p["target"] == target) & p["source"].isin(chunk)]
        for j, src in enumerate(chunk):
            g = sub[sub["source"] == src]
            dodge = 1 + 0.05 * (j - (len(chunk) - 1) / 2)
            colour = palette[src]
            rest = g[~g["chosen"]]
            ax.scatter(rest["x"] * dodge, rest["above"], s=9, color="0.6", zorder=2, lw=0)
            chosen = g[g["chosen"]].sort_values("x")
            ax.plot(chosen["x"] * dodge, chosen["above"], "-*", color=colour, ms=10, lw=1.2, zorder=4, label=src)
            worst = g.groupby("x")["above"].max().sort_index()
            ax.plot(worst.index * dodge, worst.to_numpy(), ":o", color=colour, mfc="white", ms=5, lw=1, zorder=3)
        ax.set_xscale("log")
        xs = sorted(sub["x"].unique())
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda v, _: "all" if numeric.notna().any() and v > top * 1.5 else f"{v:g}")
        )
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("symlog", linthresh=10, linscale=1.2)
        ax.set_ylim(-0.5, max(12.0, peak * 1.3))
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.margins(x=0.1)
        part = [c for c in cells if c[0] == target]
        suffix = f" ({part.index((target, chunk)) + 1}/{len(part)})" if len(part) > 1 else ""
        ax.set_title(target_labels.get(target, target) + suffix, fontsize=9)
        ax.set_xlabel("training crystals")
        ax.set_ylabel("test error above best mode (%)")
        if not shared_legend:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles + _protocol_keys(Line2D, keys), labels + list(keys), fontsize=6, loc="upper left")
    if shared_legend and cells:
        handles = [Line2D([], [], color=palette[s], lw=1.5) for s in all_sources] + _protocol_keys(Line2D, keys)
        fig.legend(
            handles,
            [f"pretrained on {s}" for s in all_sources] + list(keys),
            fontsize=7,
            loc="outside lower center",
            ncol=3,
            frameon=False,
        )
    fig.suptitle(
        "Fine-tuning protocol: test error of each transfer mode above the best mode of its pretraining source\n"
        "(★ the mode chosen on validation data only; ○ the worst; linear axis up to 10 %, logarithmic above)",
        fontsize=9,
    )
    finish(fig, png, pdf)


def _protocol_keys(line: Any, keys: tuple[str, ...]) -> list[Any]:
    """Legend keys of :func:`protocol_sensitivity`'s markers (selected, worst, other modes)."""
    return [
        line([], [], color="0.2", marker="*", ms=10, ls="-", lw=1.2),
        line([], [], color="0.2", marker="o", mfc="white", ms=5, ls=":", lw=1),
        line([], [], color="0.6", marker="o", ms=3.5, ls=""),
    ][: len(keys)]
