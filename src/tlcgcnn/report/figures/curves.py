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

from tlcgcnn.report.figures.labels import SHORT, mode_label, mode_labels, scheme, source_label
from tlcgcnn.report.figures.style import (
    empty,
    error_label,
    finish,
    grid,
    legend_below,
    legend_under,
    mode_palette,
    numeric_size,
    plain_log_axis,
    plain_log_ticks,
    setup,
    split_even,
    unit_text,
)

log = logging.getLogger(__name__)


# modes of one source family share a line in the pooled curve: the one selected on validation data
POOLED_SERIES = {
    "transfer": "fine-tuned from a pretrained model (best on validation)",
    "frozen": "frozen pretrained features + estimator (best on validation)",
    "baseline": "composition-descriptor baseline (best on validation)",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")


def _reference_mode(metrics: pd.DataFrame, tests: pd.DataFrame | None) -> str | None:
    """The baseline mode the tests compare against (CGCNN from scratch), where the records have it."""
    names = set(metrics["mode"].astype(str))
    if tests is not None and len(tests) and "baseline" in tests:
        base = str(tests["baseline"].dropna().iloc[0]) if tests["baseline"].notna().any() else None
        if base in names:
            return base
    return "scratch" if "scratch" in names else None


def pooled_series(metrics: pd.DataFrame) -> pd.DataFrame:
    """The records the pooled learning curve draws, with their ``series``: every mode trained
    from scratch on its own; of the fine-tuned, frozen-features and descriptor-baseline
    modes, per target and training size the one with the lowest mean validation score
    (:func:`.series.select_on_validation`). Records without the mode fields (per-seed
    configs) draw every mode as it is."""
    from tlcgcnn.report.figures.series import kind, select_on_validation

    if "family" not in metrics:
        return metrics.assign(series=metrics["mode"].astype(str))
    first = metrics.drop_duplicates("mode").set_index("mode")
    kinds = {m: kind(r) for m, r in first.iterrows()}
    scratch = {m: mode_label(r) for m, r in first.iterrows() if kinds[m] == "scratch"}
    clash = {n for n in scratch.values() if list(scratch.values()).count(n) > 1}
    names = {m: (f"{n} [{m}]" if n in clash and m != "scratch" else n) for m, n in scratch.items()}
    names.update({m: POOLED_SERIES[k] for m, k in kinds.items() if k != "scratch"})
    series = metrics["mode"].map(names)
    sel = select_on_validation(metrics, series)
    keep = metrics.assign(series=series, _size=metrics["size"].astype(str)).merge(
        sel[["target", "size", "series", "mode"]].rename(columns={"size": "_size"}),
        on=["target", "_size", "series", "mode"],
    )
    ranked = [*sorted(set(names.values()) - set(POOLED_SERIES.values())), *POOLED_SERIES.values()]
    order = {n: i for i, n in enumerate(ranked)}
    return keep.drop(columns="_size").sort_values("series", key=lambda s: s.map(order), kind="stable")


def learning_curve(
    metrics: pd.DataFrame,
    tests: pd.DataFrame | None,
    png: str | Path,
    pdf: str | Path | None = None,
    metric: str = "mae",
    labels: Mapping[str, str] | None = None,
) -> None:
    """Test error vs training crystals on log-log axes, one panel per target (titled with its
    config ``label``), mean ± sd over seeds: every mode trained from scratch, and per source
    family (fine-tuned, frozen features, descriptor baselines) the mode selected on
    validation data at each size (:func:`pooled_series`); a star marks a drawn mode whose
    paired test against the baseline has Holm p < 0.05. One legend under the panels when
    the series are few enough for one, else one per panel."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    from tlcgcnn.report.figures.series import MOST_PER_PANEL

    targets = list(dict.fromkeys(metrics["target"]))
    named = pooled_series(metrics)
    series = list(dict.fromkeys(named["series"]))
    palette = mode_palette(series)
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(series)}
    shared_legend = len(series) <= MOST_PER_PANEL
    nrow, ncol = grid(len(targets))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.5 * nrow + 0.4), squeeze=False, layout="constrained")
    for ax in list(axes.flat)[len(targets) :]:
        ax.set_axis_off()
    for ax, target in zip(axes.flat, targets, strict=False):
        sub = named[named["target"] == target].copy()
        # size "all" (the whole training pool) sits at its runs' mean training-set size
        n_all = float(sub.loc[numeric_size(sub["size"]).isna(), "n_train"].mean()) if "n_train" in sub else float("nan")
        sub["size_x"] = numeric_size(sub["size"]).fillna(n_all)
        order = [s for s in series if s in set(sub["series"])]
        # a classifier's runs have no MAE (a run of classification targets only: no column at
        # all): its error is 1 − ROC-AUC
        y = "error" if "error" in sub and (metric not in sub or sub[metric].isna().all()) else metric
        sns.lineplot(
            data=sub,
            x="size_x",
            y=y,
            hue="series",
            style="series",
            hue_order=order,
            style_order=order,
            palette={s: palette[s] for s in order},
            markers={s: markers[s] for s in order},
            dashes=False,
            errorbar="sd",
            err_style="bars",
            ax=ax,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax, sorted(sub["size_x"].unique()))
        ax.set_title((labels or {}).get(target, target), fontsize=9)
        ax.set_xlabel("training crystals")
        ax.set_ylabel(error_label(sub))
        if tests is not None and len(tests):
            drawn = set(zip(sub["size"].astype(str), sub["mode"].astype(str), strict=True))
            for r in tests[(tests["target"] == target) & (tests["p_holm"] < 0.05)].itertuples():
                mode = getattr(r, "mode", None)  # tests without modes star every drawn line at that size
                if mode is not None and (str(r.size), str(mode)) not in drawn:
                    continue
                x = n_all if str(r.size) == "all" else float(r.size)
                ax.annotate("*", (x, r.mae_mode), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=12)
        if shared_legend:
            ax.get_legend().remove()
        else:
            legend_under(ax)
    if shared_legend:
        legend_below(fig, axes, order=series)
    n_seeds = metrics.groupby(["target", "size", "mode"])["seed"].nunique().max()
    fig.suptitle(f"Test error vs training crystals (mean ± sd over {n_seeds} seeds; * Holm p < 0.05)", fontsize=10)
    finish(fig, png, pdf)
    log.info("learning curve -> %s", png)


def target_curve(
    metrics: pd.DataFrame, tests: pd.DataFrame, target: str, label: str, png: str | Path, pdf: str | Path
) -> None:
    """One target: test error vs training crystals (log-log, mean ± sd over seeds), one panel
    per source family (:func:`.series.panels`: trained from scratch; fine-tuned from each
    pretraining source; frozen features; descriptor baselines; a family of more than 7
    modes over several panels), CGCNN from scratch drawn in every panel as the reference
    (dashed, ± sd band); ★ = Holm p < 0.05 against scratch. With a single training size
    every mode is compared side by side instead."""
    setup()
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures.series import panels

    sub = metrics[metrics["target"] == target].copy()
    sub["size_n"] = numeric_size(sub["size"]).fillna(sub["n_train"])
    labels = mode_labels(sub)
    sig_modes: set[tuple[str, float]] = set()
    if len(tests):
        sig = tests[(tests["target"] == target) & (tests["p_holm"] < 0.05)]
        sig_modes = {(str(r.mode), float(r.size)) for r in sig.itertuples() if str(r.size) != "all"}
    sizes = sorted(sub["size_n"].unique())
    n_seeds = sub.groupby(["size", "mode"])["seed"].nunique()
    seeds_txt = f"{n_seeds.min()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}–{n_seeds.max()}"
    ref = _reference_mode(sub, tests)
    if len(sizes) == 1:
        baselines = set(sub.loc[sub["family"] == "baseline", "mode"].astype(str))
        order = sorted(
            sub["mode"].astype(str).unique(),
            key=lambda m: (not labels[m].endswith("scratch"), m in baselines, labels[m]),
        )
        fig, ax = plt.subplots(figsize=(7.0, 0.36 * len(order) + 1.4))
        g = sub.groupby("mode")["error"].agg(["mean", "std"]).reindex(order)
        fam = sub.drop_duplicates("mode").set_index("mode")["family"].reindex(order)
        for i, mode in enumerate(order):
            ax.errorbar(
                g.loc[mode, "mean"],
                i,
                xerr=np.nan_to_num(g.loc[mode, "std"]),
                fmt="s" if fam[mode] == "baseline" else "o",
                color="C3" if mode == ref else "0.3",
                capsize=3,
                ms=6,
            )
            if (mode, float(sizes[0])) in sig_modes:
                ax.annotate("★", (g.loc[mode, "mean"], i), textcoords="offset points", xytext=(0, 6), ha="center")
        if ref in g.index:
            ax.axvline(g.loc[ref, "mean"], color="k", ls="--", lw=0.8)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([labels[m] for m in order], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(error_label(sub))
        ax.set_ylabel("model or transfer mode")
        ax.set_title(
            f"{label}, n = {int(sizes[0])}: mean ± sd over {seeds_txt} seeds (★ Holm p < 0.05 vs scratch)", fontsize=9
        )
        finish(fig, png, pdf)
        return
    groups = panels(sub, ref)
    nrow, ncol = grid(len(groups))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.4 * ncol, 4.2 * nrow + 0.4), squeeze=False, sharey=True, layout="constrained"
    )
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_axis_off()
    agg = sub.groupby(["mode", "size_n"])["error"].agg(["mean", "std"]).reset_index()
    for ax, panel in zip(axes.flat, groups, strict=False):
        if ref is not None and ref not in panel.modes:
            r = agg[agg["mode"] == ref]
            ax.plot(r["size_n"], r["mean"], color="k", ls="--", lw=1.2, label=f"{labels[ref]} (reference, ± sd)")
            ax.fill_between(r["size_n"], r["mean"] - r["std"].fillna(0), r["mean"] + r["std"].fillna(0), color="0.88")
        for k, mode in enumerate(panel.modes):
            g = agg[agg["mode"] == mode]
            x = g["size_n"] * (1 + 0.04 * (k - len(panel.modes) / 2) / len(panel.modes))  # small dodge
            ax.errorbar(
                x,
                g["mean"],
                yerr=g["std"].fillna(0),
                label=panel.labels[mode],
                color="k" if mode == ref else f"C{k}",
                marker=MARKERS[k % len(MARKERS)],
                ms=4.5,
                lw=2.0 if mode == ref else 1.2,
                capsize=2,
            )
            for xs, ys, s in zip(x, g["mean"], g["size_n"], strict=True):
                if (mode, float(s)) in sig_modes:
                    ax.annotate("★", (xs, ys), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis, sizes)
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("training crystals")
        ax.set_ylabel(error_label(sub))
        ax.set_title(panel.title, fontsize=9)
        legend_under(ax)
    fig.suptitle(
        f"{label}: test error vs training crystals (mean ± sd over {seeds_txt} seeds; ★ Holm p < 0.05 vs scratch)",
        fontsize=10,
    )
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
        ax.set_xlabel("training crystals")
        ax.set_ylabel(f"test MAE of {SHORT.get(prop, prop)} ({unit_text(prop)})")
        ax.set_title(f"CGCNN learning curves of {SHORT.get(prop, prop)} by subset", fontsize=10)
    finish(fig, png, pdf)


def pretrain_size(metrics: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """Target error vs pretraining crystals (log axis): for each source property and
    transfer scheme (e.g. all layers fine-tuned, or head re-initialised) pretrained on two
    or more set sizes, one line per training size (mean ± sd over seeds), with the scratch
    error at that training size as a dashed line of the same colour; one panel per target
    and source (training sizes over several panels where a legend would pass 8 entries)."""
    setup()
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures.series import MOST_PER_PANEL

    m = metrics[(metrics["family"] == "transfer") & metrics["pretrain_size"].notna()].copy()
    feats = m["features"] if "features" in m else pd.Series(None, index=m.index)
    ests = m["estimator"] if "estimator" in m else pd.Series(None, index=m.index)
    m["source"] = [source_label(p, s) for p, s in zip(m["pretrain_property"], m["pretrain_subset"], strict=True)]
    m["scheme"] = [scheme(f, r, x, e) for f, r, x, e in zip(m["freeze"], m["reinit"], feats, ests, strict=True)]
    m["pretrain_size"] = m["pretrain_size"].astype(float)
    swept = m.groupby(["target", "source", "scheme"])["pretrain_size"].transform("nunique")
    m = m[swept > 1]
    cells = []  # (target, source, training sizes of the panel)
    for (target, src), g in m.groupby(["target", "source"], sort=False):
        sizes = sorted(g["size"].unique(), key=lambda s: (pd.isna(pd.to_numeric(s, errors="coerce")), str(s)))
        per_size = g["scheme"].nunique() + 1  # a line per scheme and the scratch line
        cells += [(target, src, chunk) for chunk in split_even(sizes, max(1, MOST_PER_PANEL // per_size))]
    nrow, ncol = grid(len(cells))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.0 * ncol, 4.0 * nrow), squeeze=False)
    if not cells:
        empty(axes[0, 0], "no pretraining-size sweep in the config")
    for ax in list(axes.flat)[max(1, len(cells)) :]:
        ax.set_axis_off()
    for ax, (target, src, chunk) in zip(axes.flat, cells, strict=False):
        sub = m[(m["target"] == target) & (m["source"] == src) & m["size"].isin(chunk)]
        scratch_drawn: dict[str, Any] = {}
        for (sch, size), g in sub.groupby(["scheme", "size"], sort=True):
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
        ax.set_xlabel("pretraining crystals")
        ax.set_ylabel(error_label(sub))
        ax.set_title(f"{target_labels.get(target, target)}, pretrained on {src}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Pretraining set size vs target error (mean ± sd over seeds; n = training crystals)", fontsize=10)
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

    from tlcgcnn.data.properties import PROPERTIES

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
        ax.set_xlabel("pretraining crystals")
        ax.set_ylabel(f"test MAE of {SHORT.get(prop, prop)} ({unit_text(prop)})")
        ax.set_title(PROPERTIES[prop].description if prop in PROPERTIES else prop, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Multi-task vs single-task pretraining on the same crystals (Holm-corrected paired t-test p)", fontsize=10
    )
    finish(fig, png, pdf)
    log.info("multi-task vs single-task sources -> %s", png)
