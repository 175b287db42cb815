"""Error against training-set size: pooled and per-target learning curves, CGCNN
learning curves of the pretraining subsets, and target error against pretraining-set size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.labels import SHORT, mode_labels, scheme, source_label
from tlcgcnn.report.figures.style import (
    empty,
    error_label,
    finish,
    legend_below,
    mode_palette,
    numeric_size,
    plain_log_axis,
    plain_log_ticks,
    setup,
)

log = logging.getLogger(__name__)


def learning_curve(
    metrics: pd.DataFrame,
    tests: pd.DataFrame | None,
    png: str | Path,
    pdf: str | Path | None = None,
    metric: str = "mae",
    labels: Mapping[str, str] | None = None,
) -> None:
    """Test MAE vs training size on log-log axes, one panel per target (titled with its
    config ``label``), one line per mode (mean ± standard deviation over seeds); significant
    differences (Holm p < 0.05) starred."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    targets = list(dict.fromkeys(metrics["target"]))
    named = metrics.copy()
    if "family" in named:  # say what each mode does (source and scheme), not its config key
        named["mode"] = named["mode"].map(mode_labels(named))
    modes = list(dict.fromkeys(named["mode"]))
    # one colour and marker per mode in every panel; past a few modes one legend under the panels
    palette = mode_palette(modes)
    shared_legend = len(modes) > 8
    ncol = min(3, len(targets))
    nrow = -(-len(targets) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 4.0 * nrow), squeeze=False)
    for ax in list(axes.flat)[len(targets) :]:
        ax.set_axis_off()
    for ax, target in zip(axes.flat, targets, strict=False):
        sub = named[named["target"] == target].copy()
        # size "all" (the whole training pool) sits at its runs' mean training-set size
        n_all = float(sub.loc[numeric_size(sub["size"]).isna(), "n_train"].mean()) if "n_train" in sub else float("nan")
        sub["size"] = numeric_size(sub["size"]).fillna(n_all)
        order = [m for m in modes if m in set(sub["mode"])]
        # a classifier's runs have no MAE: its error is 1 − ROC-AUC
        y = "error" if "error" in sub and sub[metric].isna().all() else metric
        sns.lineplot(
            data=sub,
            x="size",
            y=y,
            hue="mode",
            style="mode",
            hue_order=order,
            style_order=order,
            palette=palette,
            markers=True,
            dashes=False,
            errorbar="sd",
            err_style="bars",
            ax=ax,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax, sorted(sub["size"].unique()))
        ax.set_title((labels or {}).get(target, target))
        ax.set_xlabel("training set size")
        ax.set_ylabel(error_label(sub))
        if tests is not None and len(tests):
            for r in tests[(tests["target"] == target) & (tests["p_holm"] < 0.05)].itertuples():
                x = n_all if str(r.size) == "all" else float(r.size)
                ax.annotate(
                    "*",
                    (x, min(r.mae_mode, r.mae_baseline)),
                    textcoords="offset points",
                    xytext=(0, -14),
                    ha="center",
                    fontsize=14,
                )
        if shared_legend:
            ax.get_legend().remove()
        else:
            ax.legend(title=None, fontsize=8)
    if shared_legend:
        legend_below(fig, axes)
    n_seeds = metrics.groupby(["target", "size", "mode"])["seed"].nunique().max()
    fig.suptitle(f"Scratch vs transfer learning (mean ± sd over {n_seeds} seeds; * Holm p < 0.05)", fontsize=11)
    finish(fig, png, pdf)
    log.info("learning curve -> %s", png)


def target_curve(
    metrics: pd.DataFrame, tests: pd.DataFrame, target: str, label: str, png: str | Path, pdf: str | Path
) -> None:
    """One target: error vs training size for scratch, every transfer mode and the baselines
    (mean ± sd over seeds; ★ = Holm p < 0.05 against scratch). With a single training size
    the modes are compared side by side instead."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    sub = metrics[metrics["target"] == target].copy()
    sub["size_n"] = numeric_size(sub["size"]).fillna(sub["n_train"])
    labels = mode_labels(sub)
    sub["model"] = sub["mode"].map(labels)
    order = sorted(
        sub["model"].unique(),
        key=lambda m: (not m.endswith("scratch"), m.startswith(("PLS", "SVR", "LASSO", "RF", "RIDGE")), m),
    )
    palette = dict(zip(order, sns.color_palette("tab20", len(order)), strict=True))
    sig_modes: set[tuple[str, float]] = set()
    if len(tests):
        sig = tests[(tests["target"] == target) & (tests["p_holm"] < 0.05)]
        sig_modes = {(labels.get(r.mode, r.mode), float(r.size)) for r in sig.itertuples() if str(r.size) != "all"}
    sizes = sorted(sub["size_n"].unique())
    n_seeds = sub.groupby(["size", "mode"])["seed"].nunique()
    seeds_txt = f"{n_seeds.min()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}–{n_seeds.max()}"
    if len(sizes) == 1:
        fig, ax = plt.subplots(figsize=(7.0, 0.42 * len(order) + 1.4))
        g = sub.groupby("model")["error"].agg(["mean", "std"]).reindex(order)
        fam = sub.drop_duplicates("model").set_index("model")["family"].reindex(order)
        for i, model in enumerate(order):
            ax.errorbar(
                g.loc[model, "mean"],
                i,
                xerr=np.nan_to_num(g.loc[model, "std"]),
                fmt="s" if fam[model] == "baseline" else "o",
                color=palette[model],
                capsize=3,
                ms=6,
            )
            if (model, float(sizes[0])) in sig_modes:
                ax.annotate("★", (g.loc[model, "mean"], i), textcoords="offset points", xytext=(0, 6), ha="center")
        scratch = [m for m in order if m.endswith("scratch") and m.startswith("CGCNN")]
        if scratch:
            ax.axvline(g.loc[scratch[0], "mean"], color="k", ls="--", lw=0.8)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(error_label(sub))
        ax.set_title(
            f"{label}, n = {int(sizes[0])}: mean ± sd over {seeds_txt} seeds (★ Holm p < 0.05 vs scratch)", fontsize=9
        )
    else:
        fig, ax = plt.subplots(figsize=(7.8, 4.8))
        for k, model in enumerate(order):
            m = sub[sub["model"] == model]
            g = m.groupby("size_n")["error"].agg(["mean", "std"]).reset_index()
            fam = m["family"].iloc[0]
            x = g["size_n"] * (1 + 0.04 * (k - len(order) / 2) / len(order))  # small dodge
            ax.errorbar(
                x,
                g["mean"],
                yerr=g["std"].fillna(0),
                label=model,
                color=palette[model],
                ls="--" if fam == "baseline" else "-",
                marker="s" if fam == "baseline" else "o",
                ms=5,
                lw=2.2 if fam == "scratch" else 1.2,
                capsize=2,
            )
            for xs, ys, s in zip(x, g["mean"], g["size_n"], strict=True):
                if (model, float(s)) in sig_modes:
                    ax.annotate("★", (xs, ys), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis, sizes)
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("training set size")
        ax.set_ylabel(error_label(sub))
        ax.set_title(
            f"{label}: scratch vs transfer vs baselines (mean ± sd over {seeds_txt} seeds; ★ Holm p < 0.05 vs scratch)",
            fontsize=9,
        )
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False)
    finish(fig, png, pdf)


def subset_scaling(
    pretrain: pd.DataFrame, png: str | Path, pdf: str | Path, prop: str = "formation_energy_per_atom"
) -> None:
    """Test MAE vs training-set size (log-log) of CGCNN on all materials, metals and
    non-metals (the pretraining runs of one property)."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    sub = pretrain[(pretrain["property"] == prop) & (pretrain.get("task", "regression") != "multitask")]
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    if sub.empty:
        empty(ax, f"no pretraining runs of {prop}")
    else:
        sns.lineplot(
            data=sub,
            x="n_train",
            y="mae",
            hue="subset",
            style="subset",
            markers=True,
            dashes=False,
            ax=ax,
            markersize=8,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis, sorted(sub["n_train"].unique()))
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("training set size")
        ax.set_ylabel(f"test MAE of {SHORT.get(prop, prop)} (eV/atom)")
        ax.set_title(f"CGCNN learning curves of {SHORT.get(prop, prop)} by subset", fontsize=10)
    finish(fig, png, pdf)


def pretrain_size(metrics: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """Target error vs pretraining-set size (crystals, log axis): for each source property
    and transfer scheme (e.g. all layers fine-tuned, or head re-initialised) pretrained on two
    or more set sizes, one line per training size (mean ± sd over seeds), with the scratch
    error at that training size as a dashed line; one panel per target."""
    setup()
    import matplotlib.pyplot as plt

    m = metrics[(metrics["family"] == "transfer") & metrics["pretrain_size"].notna()].copy()
    feats = m["features"] if "features" in m else pd.Series(None, index=m.index)
    ests = m["estimator"] if "estimator" in m else pd.Series(None, index=m.index)
    m["source"] = [source_label(p, s) for p, s in zip(m["pretrain_property"], m["pretrain_subset"], strict=True)]
    m["scheme"] = [scheme(f, r, x, e) for f, r, x, e in zip(m["freeze"], m["reinit"], feats, ests, strict=True)]
    m["pretrain_size"] = m["pretrain_size"].astype(float)
    swept = m.groupby(["target", "source", "scheme"])["pretrain_size"].transform("nunique")
    m = m[swept > 1]
    targets = list(dict.fromkeys(m["target"]))
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(5.0 * max(1, len(targets)), 4.0), squeeze=False)
    if not targets:
        empty(axes[0, 0], "no pretraining-size sweep in the config")
    for ax, target in zip(axes[0], targets, strict=False):
        sub = m[m["target"] == target]
        scratch_drawn: dict[str, Any] = {}
        for (src, sch, size), g in sub.groupby(["source", "scheme", "size"], sort=True):
            agg = g.groupby("pretrain_size")["error"].agg(["mean", "std"]).reset_index()
            line = ax.errorbar(
                agg["pretrain_size"],
                agg["mean"],
                yerr=agg["std"].fillna(0),
                marker="o",
                capsize=2,
                label=f"{src}, {sch}, n={size}",
            )
            if str(size) in scratch_drawn:
                continue
            scr = metrics[
                (metrics["target"] == target)
                & (metrics["size"].astype(str) == str(size))
                & (metrics["mode"] == "scratch")
            ]
            if len(scr):
                scratch_drawn[str(size)] = ax.axhline(
                    scr["error"].mean(), ls="--", color=line[0].get_color(), lw=1, label=f"scratch, n={size}"
                )
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis, sorted(sub["pretrain_size"].dropna().unique()))
        ax.set_xlabel("pretraining set size (crystals)")
        ax.set_ylabel(error_label(sub))
        ax.set_title(target_labels.get(target, target), fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Pretraining set size vs target error (mean ± sd over seeds)", fontsize=10)
    finish(fig, png, pdf)


def _stars(p: float) -> str:
    """Significance marks of a Holm-corrected p-value (n.s. at 0.05 or above, or NaN)."""
    if not np.isfinite(p) or p >= 0.05:
        return "n.s."
    return "***" if p < 0.001 else "**" if p < 0.01 else "*"


def multitask_sources(table: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """MT-CGCNN's comparison (stats/multitask.csv, tlcgcnn.analysis.multitask): test MAE of the
    pretraining sources against their training-set size (crystals) on log-log axes, one
    panel per property, in its units: the multi-task sources (circles, solid) and the
    single-task sources of that property trained on the same crystals (squares, dashed). At
    each size the Holm-corrected p of the paired t-test on the per-crystal absolute errors
    (stars: * < 0.05, ** < 0.01, *** < 0.001). Size ``all`` (the whole training pool) is
    drawn right of the largest size; several pairs at one size (e.g. two multi-task
    sources) give one pair of lines each."""
    setup()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, NullLocator

    from tlcgcnn.data.properties import PROPERTIES, units_of

    props = list(dict.fromkeys(table["property"])) if len(table) else []
    fig, axes = plt.subplots(1, max(1, len(props)), figsize=(4.6 * max(1, len(props)), 4.2), squeeze=False)
    if not props:
        empty(axes[0, 0], "no multi-task / single-task pretraining sources on one split in the config")
    for ax, prop in zip(axes[0], props, strict=False):
        sub = table[table["property"] == prop].copy()
        numeric = numeric_size(sub["size"])
        top = numeric.max()
        sub["x"] = numeric.fillna(2.0 * top if np.isfinite(top) else 1.0)
        sub = sub.sort_values(["x", "mt_source", "st_source"])
        sub["series"] = sub.groupby("x").cumcount()
        for k, g in sub.groupby("series"):
            ax.plot(
                g["x"],
                g["mae_mt"],
                marker="o",
                ms=6,
                ls="-",
                color=f"C{2 * k}",
                label=f"multi-task ({', '.join(g['mt_source'])})",
            )
            ax.plot(
                g["x"],
                g["mae_st"],
                marker="s",
                ms=6,
                ls="--",
                color=f"C{2 * k + 1}",
                label=f"single-task ({', '.join(g['st_source'])})",
            )
        for r in sub.itertuples():
            ax.annotate(
                f"{_stars(float(r.p_holm))}\np={float(r.p_holm):.2g}",
                (r.x, max(r.mae_mt, r.mae_st)),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs = sorted(sub["x"].unique())
        names = dict(zip(sub["x"], sub["size"].astype(str), strict=False))
        ax.set_xticks(xs, [names[x] for x in xs])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        plain_log_axis(ax.yaxis)
        ax.margins(x=0.15, y=0.25)
        unit = units_of(prop)
        ax.set_xlabel("pretraining set size (crystals)")
        ax.set_ylabel(f"test MAE of {SHORT.get(prop, prop)}" + (f" ({unit})" if unit else ""))
        ax.set_title(PROPERTIES[prop].description if prop in PROPERTIES else prop, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Multi-task vs single-task pretraining on the same crystals (Holm-corrected paired t-test p)", fontsize=10
    )
    finish(fig, png, pdf)
    log.info("multi-task vs single-task sources -> %s", png)
