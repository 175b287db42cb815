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

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.labels import mode_labels, protocol_labels, scheme, scheme_key, source_label
from tlcgcnn.report.figures.style import empty, finish, legend_below, mode_palette, numeric_size, plain_log_axis, setup


def improvement(
    metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """Improvement rate of every transfer mode over scratch vs training size, per target."""
    setup()
    import matplotlib.pyplot as plt

    labels = mode_labels(metrics)
    fam = metrics.drop_duplicates("mode").set_index("mode")["family"]
    t = tests[tests["mode"].map(fam) == "transfer"].copy() if len(tests) else pd.DataFrame()
    targets = list(dict.fromkeys(t["target"])) if len(t) else []
    ncol = min(3, max(1, len(targets)))
    nrow = max(1, -(-len(targets) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow), squeeze=False)
    if not targets:
        empty(axes[0, 0], "no transfer modes")
    modes = sorted(t["mode"].unique()) if len(t) else []
    # one colour per mode; neighbours in the legend also differ in line style
    palette = mode_palette(modes)
    dashes = {mode: ("-", "--", "-.", ":")[i % 4] for i, mode in enumerate(modes)}
    for ax, target in zip(axes.flat, targets, strict=False):
        sub = t[t["target"] == target].copy()
        sub["size_n"] = numeric_size(sub["size"])
        for mode, g in sub.sort_values("size_n").groupby("mode"):
            ax.plot(
                g["size_n"],
                100 * g["improvement_rate"],
                dashes[mode],
                color=palette[mode],
                lw=1.2,
                label=labels.get(mode, mode),
            )
            sig = g["p_holm"] < 0.05
            ax.scatter(g["size_n"][sig], 100 * g["improvement_rate"][sig], color=palette[mode], s=30, zorder=3)
            ax.scatter(
                g["size_n"][~sig],
                100 * g["improvement_rate"][~sig],
                facecolor="white",
                edgecolor=palette[mode],
                s=30,
                zorder=3,
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis, sorted(sub["size_n"].dropna().unique()))
        ax.set_title(target_labels.get(target, target), fontsize=9)
        ax.set_xlabel("training set size")
        ax.set_ylabel("improvement over scratch (%)")
    for ax in list(axes.flat)[len(targets) :]:
        ax.set_axis_off()
    legend_below(fig, axes)
    fig.suptitle("Improvement rate (MAE_scratch − MAE_TL) / MAE_scratch; filled: Holm p < 0.05", fontsize=10)
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


def freeze_heatmap(
    metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """Layers frozen × pretraining source: improvement rate over scratch at each target's
    smallest training size (Berkeley report, Tables 2/3). ★: Holm p < 0.05."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = _transfer_tests(metrics, tests) if len(tests) else pd.DataFrame()
    if len(t):  # the largest pretraining set of each source (the size sweep is its own figure)
        t = t[t["pretrain_size"] == t.groupby("source")["pretrain_size"].transform("max")]
        t = t[t["size_n"] == t.groupby("target")["size_n"].transform("min")]
    targets = [x for x in dict.fromkeys(t["target"]) if (t[t["target"] == x]["scheme"].nunique() > 1)] if len(t) else []
    n_src = max([t[t["target"] == x]["source"].nunique() for x in targets] or [1])
    n_schemes = max([t[t["target"] == x]["scheme"].nunique() for x in targets] or [1])
    width = 3.4 + 1.2 * n_src  # the wrapped scheme labels take ~1.8 in
    height = 1.9 + 0.5 * n_schemes
    ncol = min(3, max(1, len(targets)))  # panels wrap into rows of 3: one row of 9 was 70 in wide
    nrow = max(1, -(-len(targets) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(width * ncol, height * nrow), squeeze=False)
    if not targets:
        empty(axes[0, 0], "no target with more than one transfer scheme")
    for ax in list(axes.flat)[max(1, len(targets)) :]:
        ax.set_axis_off()
    for ax, target in zip(axes.flat, targets, strict=False):
        sub = t[t["target"] == target]
        val = sub.pivot_table(index="scheme", columns="source", values="improvement_rate", aggfunc="mean") * 100
        order = sub.drop_duplicates("scheme").sort_values("scheme_key")["scheme"]
        val = val.reindex([s for s in order if s in val.index])
        pv = sub.pivot_table(index="scheme", columns="source", values="p_holm", aggfunc="min").reindex(val.index)
        annot = val.map(lambda v: f"{v:+.0f}%" if pd.notna(v) else "") + pv.map(
            lambda p: "★" if pd.notna(p) and p < 0.05 else ""
        )
        lim = max(5.0, float(np.nanmax(np.abs(val.to_numpy()))))
        sns.heatmap(
            val,
            annot=annot,
            fmt="",
            cmap="RdBu",
            vmin=-lim,
            vmax=lim,
            ax=ax,
            cbar_kws={"label": "improvement over scratch (%)"},
            linewidths=0.5,
            linecolor="white",
        )
        ax.grid(False)
        ax.set_title(f"{target_labels.get(target, target)}, n = {int(sub['size_n'].iloc[0])}", fontsize=9)
        ax.set_xlabel("pretraining source")
        ax.set_ylabel("transfer scheme")
        ax.set_xticklabels(ax.get_xticklabels(), rotation=25, ha="right")
        ax.set_yticklabels(
            [textwrap.fill(str(s), 24, break_on_hyphens=False) for s in val.index], rotation=0, fontsize=8
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
        ax.set_ylabel("improvement over scratch (%) ± 95 % CI")
        ax.set_title("Multi-task vs single-task pretraining (black edge: Holm p < 0.05)", fontsize=10)
        ax.legend(title="pretraining source", fontsize=8)
    finish(fig, png, pdf)


def error_axis(row: pd.Series, label: str) -> str:
    """Axis label of a target's test error with its units: 1 − ROC-AUC for a classifier,
    else the MAE in the property's units (dex for a log10 target)."""
    from tlcgcnn.data.properties import units_of

    if row.get("task") == "classification":
        return f"test 1 − ROC-AUC, {label}"
    unit = "dex" if row.get("transform") == "log10" else units_of(str(row.get("property")))
    return f"test MAE, {label}" + (f" ({unit})" if unit else "")


def protocol_sensitivity(
    protocol: pd.DataFrame, metrics: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path
) -> None:
    """Per target and pretraining source (rows) and training size (columns): the test error
    (mean ± sd over seeds) of every transfer mode of that source, the one selected on
    validation data highlighted (★), the baseline (scratch) as a dashed line with its ± sd band."""
    setup()
    import matplotlib.pyplot as plt

    p = protocol.copy() if len(protocol) else pd.DataFrame()
    groups = list(dict.fromkeys(zip(p["target"], p["pretrained"], strict=True))) if len(p) else []
    if len(p):
        p["size_n"] = numeric_size(p["size"])
    sizes = (
        sorted(
            p["size"].unique(),
            key=lambda x: (pd.isna(pd.to_numeric(x, errors="coerce")), pd.to_numeric(x, errors="coerce")),
        )
        if len(p)
        else []
    )
    n_modes = int(p.groupby(["target", "pretrained", "size"])["mode"].count().max()) if len(p) else 1
    fig, axes = plt.subplots(
        max(1, len(groups)),
        max(1, len(sizes)),
        figsize=(5.2 * max(1, len(sizes)), (0.42 * n_modes + 1.5) * max(1, len(groups))),
        squeeze=False,
    )
    if not groups:
        empty(axes[0, 0], "no target fine-tuned in several ways from one pretraining source")
    labels = protocol_labels(metrics) if len(metrics) else {}
    src_names = mode_labels(metrics) if len(metrics) else {}
    for i, (target, source) in enumerate(groups):
        for j, size in enumerate(sizes):
            ax = axes[i, j]
            sub = p[(p["target"] == target) & (p["pretrained"] == source) & (p["size"] == size)]
            if sub.empty:
                ax.set_axis_off()
                continue
            y = np.arange(len(sub))
            sel = sub["selected"].astype(str).str.lower().eq("true").to_numpy()
            base, base_sd = float(sub["baseline_test_mean"].iloc[0]), sub["baseline_test_sd"].iloc[0]
            if np.isfinite(base):
                ax.axvline(base, color="k", ls="--", lw=1.0, label=f"{sub['baseline'].iloc[0]} (mean ± sd)")
                if pd.notna(base_sd):
                    ax.axvspan(base - base_sd, base + base_sd, color="0.85", zorder=0)
            ax.errorbar(
                sub["test_mean"][~sel],
                y[~sel],
                xerr=sub["test_sd"][~sel].fillna(0),
                fmt="o",
                color="0.45",
                capsize=3,
                ms=6,
                label="other protocols",
            )
            ax.errorbar(
                sub["test_mean"][sel],
                y[sel],
                xerr=sub["test_sd"][sel].fillna(0),
                fmt="*",
                color="C3",
                capsize=3,
                ms=13,
                label="selected on validation data",
            )
            ax.set_yticks(y)
            ax.set_yticklabels(
                [textwrap.fill(labels.get(m, m), 38, break_on_hyphens=False) for m in sub["mode"]], fontsize=7
            )
            for tick, chosen in zip(ax.get_yticklabels(), sel, strict=True):
                if chosen:
                    tick.set_fontweight("bold")
                    tick.set_color("C3")
            ax.invert_yaxis()
            ax.set_xlabel(error_axis(sub.iloc[0], target_labels.get(target, target)))
            first = str(sub["mode"].iloc[0])
            src = src_names.get(first, source).split(":")[0].removeprefix("TL ")
            r = sub.iloc[0]
            ax.set_title(
                f"{target_labels.get(target, target)}, n = {size}, from {src}\n"
                f"selected on validation {str(r['val_metric']).upper()}: {r['choice_vs_best_pct']:+.1f} % vs the best, "
                f"spread {r['spread_pct']:.1f} %",
                fontsize=8,
            )
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="best")
    for ax in axes.flat:
        ax.grid(axis="y", visible=False)
    fig.suptitle(
        "Fine-tuning protocol: test error of each transfer mode of one source (★ chosen on validation data only)",
        fontsize=10,
    )
    finish(fig, png, pdf)
