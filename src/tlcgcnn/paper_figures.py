"""The papers' figures, each drawn from the collected runs (PNG and PDF, seaborn).

Inputs are the tables written by the statistics stage: ``metrics.csv`` (one row per run,
with the mode's family, pretraining source / size / subset, frozen layers and model kind),
``ttests.csv`` (paired tests of every mode against scratch) and ``pretrain.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.figures import _setup, save

log = logging.getLogger(__name__)
SCHEMES = ("fine-tune all", "freeze 1", "freeze 2", "freeze 3", "head only")
SHORT = {"formation_energy_per_atom": "ΔEf", "band_gap": "Eg", "efermi": "E_F"}


def scheme(freeze: Any, reinit: Any) -> str:
    """Transfer scheme of a mode: which pretrained layers are kept / frozen."""
    f = 0 if pd.isna(freeze) else int(freeze)
    if reinit == "head" and f == 0:
        return "head only"
    if f > 0:
        return f"freeze {f}"
    return "fine-tune all"


def source_label(prop: Any, subset: Any = None) -> str:
    if not isinstance(prop, str):
        return "none"
    name = " + ".join(SHORT.get(p, p) for p in prop.split("+"))
    if "+" in prop:
        name = f"MT ({name})"
    if isinstance(subset, str) and subset != "all":
        name += f", {subset}s"
    return name


def mode_label(row: pd.Series) -> str:
    fam = row.get("family")
    if fam == "baseline":
        return str(row["model_kind"]).upper()
    if fam == "scratch":
        return f"{row.get('model_kind', 'cgcnn')} scratch".replace("cgcnn", "CGCNN")
    size = row.get("pretrain_size")
    size_s = f", n={int(size)}" if pd.notna(size) else ""
    return f"TL {source_label(row.get('pretrain_property'), row.get('pretrain_subset'))}{size_s}: {scheme(row.get('freeze'), row.get('reinit'))}"


def _labels(metrics: pd.DataFrame) -> dict[str, str]:
    first = metrics.drop_duplicates("mode").set_index("mode")
    return {m: mode_label(r) for m, r in first.iterrows()}


def _ylabel(sub: pd.DataFrame) -> str:
    if (sub.get("task") == "classification").any():
        return "1 − ROC-AUC"
    prop = sub["property"].iloc[0]
    return f"test MAE ({'log10 ' if sub['transform'].iloc[0] == 'log10' else ''}{prop})"


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def _numeric_size(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def ef_eg_density(table: pd.DataFrame, corr: dict[str, Any], png: str | Path, pdf: str | Path, max_points: int = 40000, seed: int = 0) -> None:
    """ΔEf vs Eg of every material, coloured by a Gaussian-KDE density estimate."""
    _setup()
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    both = table[["formation_energy_per_atom", "band_gap"]].dropna().astype(float)
    rng = np.random.default_rng(seed)
    if len(both) > max_points:
        both = both.iloc[rng.choice(len(both), max_points, replace=False)]
    xy = both.to_numpy().T
    fit = xy[:, rng.choice(xy.shape[1], min(5000, xy.shape[1]), replace=False)]
    dens = gaussian_kde(fit)(xy)
    order = np.argsort(dens)
    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    sc = ax.scatter(xy[0, order], xy[1, order], c=dens[order], s=4, cmap="viridis", linewidths=0, rasterized=True)
    fig.colorbar(sc, ax=ax, label="Gaussian KDE density")
    ax.set_xlabel("formation energy ΔEf (eV/atom)")
    ax.set_ylabel("PBE band gap Eg (eV)")
    ax.set_title(f"ΔEf vs Eg, n = {corr['n']}: Pearson r = {corr['pearson_r']:.2f} "
                 f"[{corr['pearson_ci_low']:.2f}, {corr['pearson_ci_high']:.2f}]", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def subset_scaling(pretrain: pd.DataFrame, png: str | Path, pdf: str | Path, prop: str = "formation_energy_per_atom") -> None:
    """Test MAE vs training-set size (log-log) of CGCNN on all materials, metals and
    non-metals (the pretraining runs of one property)."""
    _setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    sub = pretrain[(pretrain["property"] == prop) & (pretrain.get("task", "regression") != "multitask")]
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    if sub.empty:
        _empty(ax, f"no pretraining runs of {prop}")
    else:
        sns.lineplot(data=sub, x="n_train", y="mae", hue="subset", style="subset", markers=True, dashes=False, ax=ax, markersize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axis(ax.xaxis, sorted(sub["n_train"].unique()))
        _plain_log_axis(ax.yaxis)
        ax.set_xlabel("training set size")
        ax.set_ylabel(f"test MAE of {SHORT.get(prop, prop)} (eV/atom)")
        ax.set_title(f"CGCNN learning curves of {SHORT.get(prop, prop)} by subset", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def _plain_log_axis(axis: Any, ticks: list[float] | None = None) -> None:
    """Log axis with plain numbers (50, 100, 0.5) instead of 5 × 10¹."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    if ticks is not None:
        axis.set_ticks(ticks)
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_minor_formatter(fmt)


def target_curve(metrics: pd.DataFrame, tests: pd.DataFrame, target: str, label: str, png: str | Path, pdf: str | Path) -> None:
    """One target: error vs training size for scratch, every transfer mode and the baselines
    (mean ± sd over seeds; ★ = Holm p < 0.05 against scratch). With a single training size
    the modes are compared side by side instead."""
    _setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    sub = metrics[metrics["target"] == target].copy()
    sub["size_n"] = _numeric_size(sub["size"]).fillna(sub["n_train"])
    labels = _labels(sub)
    sub["model"] = sub["mode"].map(labels)
    order = sorted(sub["model"].unique(), key=lambda m: (not m.endswith("scratch"), m.startswith(("PLS", "SVR", "LASSO", "RF")), m))
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
            ax.errorbar(g.loc[model, "mean"], i, xerr=np.nan_to_num(g.loc[model, "std"]), fmt="s" if fam[model] == "baseline" else "o", color=palette[model], capsize=3, ms=6)
            if (model, float(sizes[0])) in sig_modes:
                ax.annotate("★", (g.loc[model, "mean"], i), textcoords="offset points", xytext=(0, 6), ha="center")
        scratch = [m for m in order if m.endswith("scratch") and m.startswith("CGCNN")]
        if scratch:
            ax.axvline(g.loc[scratch[0], "mean"], color="k", ls="--", lw=0.8)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(_ylabel(sub))
        ax.set_title(f"{label}, n = {int(sizes[0])}: mean ± sd over {seeds_txt} seeds (★ Holm p < 0.05 vs scratch)", fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(7.8, 4.8))
        for k, model in enumerate(order):
            m = sub[sub["model"] == model]
            g = m.groupby("size_n")["error"].agg(["mean", "std"]).reset_index()
            fam = m["family"].iloc[0]
            x = g["size_n"] * (1 + 0.04 * (k - len(order) / 2) / len(order))  # small dodge
            ax.errorbar(x, g["mean"], yerr=g["std"].fillna(0), label=model, color=palette[model], ls="--" if fam == "baseline" else "-",
                        marker="s" if fam == "baseline" else "o", ms=5, lw=2.2 if fam == "scratch" else 1.2, capsize=2)
            for xs, ys, s in zip(x, g["mean"], g["size_n"], strict=True):
                if (model, float(s)) in sig_modes:
                    ax.annotate("★", (xs, ys), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axis(ax.xaxis, sizes)
        _plain_log_axis(ax.yaxis)
        ax.set_xlabel("training set size")
        ax.set_ylabel(_ylabel(sub))
        ax.set_title(f"{label}: scratch vs transfer vs baselines (mean ± sd over {seeds_txt} seeds; ★ Holm p < 0.05 vs scratch)", fontsize=9)
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def improvement(metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """Improvement rate of every transfer mode over scratch vs training size, per target."""
    _setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    labels = _labels(metrics)
    fam = metrics.drop_duplicates("mode").set_index("mode")["family"]
    t = tests[tests["mode"].map(fam) == "transfer"].copy() if len(tests) else pd.DataFrame()
    targets = list(dict.fromkeys(t["target"])) if len(t) else []
    ncol = min(3, max(1, len(targets)))
    nrow = max(1, -(-len(targets) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow), squeeze=False)
    if not targets:
        _empty(axes[0, 0], "no transfer modes")
    modes = sorted(t["mode"].unique()) if len(t) else []
    palette = dict(zip(modes, sns.color_palette("tab20", len(modes)), strict=True))
    for ax, target in zip(axes.flat, targets, strict=False):
        sub = t[t["target"] == target].copy()
        sub["size_n"] = _numeric_size(sub["size"])
        for mode, g in sub.sort_values("size_n").groupby("mode"):
            ax.plot(g["size_n"], 100 * g["improvement_rate"], "-", color=palette[mode], lw=1.2, label=labels.get(mode, mode))
            sig = g["p_holm"] < 0.05
            ax.scatter(g["size_n"][sig], 100 * g["improvement_rate"][sig], color=palette[mode], s=30, zorder=3)
            ax.scatter(g["size_n"][~sig], 100 * g["improvement_rate"][~sig], facecolor="white", edgecolor=palette[mode], s=30, zorder=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis, sorted(sub["size_n"].dropna().unique()))
        ax.set_title(target_labels.get(target, target), fontsize=9)
        ax.set_xlabel("training set size")
        ax.set_ylabel("improvement over scratch (%)")
    for ax in list(axes.flat)[len(targets):]:
        ax.set_axis_off()
    handles, names = [], []
    for ax in axes.flat:
        h, n = ax.get_legend_handles_labels()
        for hh, nn in zip(h, n, strict=True):
            if nn not in names:
                handles.append(hh)
                names.append(nn)
    if handles:
        fig.legend(handles, names, fontsize=7, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.025 * len(names) / 2))
    fig.suptitle("Improvement rate (MAE_scratch − MAE_TL) / MAE_scratch; filled: Holm p < 0.05", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def _transfer_tests(metrics: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    info = metrics.drop_duplicates("mode").set_index("mode")
    t = tests[tests["mode"].map(info["family"]) == "transfer"].copy()
    for col in ("freeze", "reinit", "pretrained", "pretrain_property", "pretrain_subset", "pretrain_size"):
        t[col] = t["mode"].map(info[col])
    t["scheme"] = [scheme(f, r) for f, r in zip(t["freeze"], t["reinit"], strict=True)]
    t["source"] = [source_label(p, s) for p, s in zip(t["pretrain_property"], t["pretrain_subset"], strict=True)]
    t["size_n"] = _numeric_size(t["size"])
    return t


def freeze_heatmap(metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """Layers frozen × pretraining source: improvement rate over scratch at each target's
    smallest training size (Berkeley report, Tables 2/3). ★: Holm p < 0.05."""
    _setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = _transfer_tests(metrics, tests) if len(tests) else pd.DataFrame()
    if len(t):  # the largest pretraining set of each source (the size sweep is its own figure)
        t = t[t["pretrain_size"] == t.groupby("source")["pretrain_size"].transform("max")]
        t = t[t["size_n"] == t.groupby("target")["size_n"].transform("min")]
    targets = [x for x in dict.fromkeys(t["target"]) if (t[t["target"] == x]["scheme"].nunique() > 1)] if len(t) else []
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(4.2 * max(1, len(targets)), 3.8), squeeze=False)
    if not targets:
        _empty(axes[0, 0], "no target with more than one transfer scheme")
    for ax, target in zip(axes[0], targets, strict=False):
        sub = t[t["target"] == target]
        val = sub.pivot_table(index="scheme", columns="source", values="improvement_rate", aggfunc="mean") * 100
        val = val.reindex([s for s in SCHEMES if s in val.index])
        pv = sub.pivot_table(index="scheme", columns="source", values="p_holm", aggfunc="min").reindex(val.index)
        annot = val.map(lambda v: f"{v:+.0f}%" if pd.notna(v) else "") + pv.map(lambda p: "★" if pd.notna(p) and p < 0.05 else "")
        lim = max(5.0, float(np.nanmax(np.abs(val.to_numpy()))))
        sns.heatmap(val, annot=annot, fmt="", cmap="RdBu", vmin=-lim, vmax=lim, ax=ax, cbar_kws={"label": "improvement over scratch (%)"}, linewidths=0.5, linecolor="white")
        ax.grid(False)
        ax.set_title(f"{target_labels.get(target, target)}, n = {int(sub['size_n'].iloc[0])}", fontsize=9)
        ax.set_xlabel("pretraining source")
        ax.set_ylabel("pretrained layers kept")
        ax.set_xticklabels(ax.get_xticklabels(), rotation=25, ha="right")
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def multitask_bars(metrics: pd.DataFrame, tests: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """Multi-task (ΔEf + Eg + E_F) vs single-task pretraining: improvement over scratch of
    the fine-tune-all modes, with the 95 % CI of the paired difference, per target and size."""
    _setup()
    import matplotlib.pyplot as plt

    t = _transfer_tests(metrics, tests) if len(tests) else pd.DataFrame()
    if len(t):
        t = t[(t["scheme"] == "fine-tune all") & (t["pretrain_subset"] == "all")]
        t = t[t["pretrain_size"] == t.groupby("source")["pretrain_size"].transform("max")]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.4 * (t.groupby(["target", "size"]).ngroups if len(t) else 1)), 4.2))
    if t.empty or t["source"].nunique() < 2:
        _empty(ax, "needs fine-tune-all modes from at least two pretraining sources")
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
                ax.bar(i + (j - (len(sources) - 1) / 2) * width, val, width, yerr=err, color=colors[src], label=src if i == 0 or src not in ax.get_legend_handles_labels()[1] else None, capsize=2, edgecolor="k" if r["p_holm"] < 0.05 else "none")
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"{target_labels.get(c[0], c[0])}\nn={int(c[1])}" for c in cells], fontsize=7)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("improvement over scratch (%) ± 95 % CI")
        ax.set_title("Multi-task vs single-task pretraining (black edge: Holm p < 0.05)", fontsize=10)
        ax.legend(title="pretraining source", fontsize=8)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def pretrain_size(metrics: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """Target error vs pretraining-set size (fine-tune-all modes of one source), with the
    scratch error as a dashed line; one panel per target, one line per training size."""
    _setup()
    import matplotlib.pyplot as plt

    m = metrics[metrics["family"] == "transfer"].copy()
    m = m[[scheme(f, r) == "fine-tune all" for f, r in zip(m["freeze"], m["reinit"], strict=True)]]
    m["source"] = [source_label(p, s) for p, s in zip(m["pretrain_property"], m["pretrain_subset"], strict=True)]
    swept = m.groupby("source")["pretrain_size"].nunique()
    swept = swept[swept > 1]
    m = m[m["source"].isin(swept.index)]
    per_target = m.groupby("target")["pretrain_size"].nunique()
    targets = [t for t in dict.fromkeys(m["target"]) if per_target[t] > 1]
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(4.4 * max(1, len(targets)), 3.8), squeeze=False)
    if not targets:
        _empty(axes[0, 0], "no pretraining-size sweep in the config")
    for ax, target in zip(axes[0], targets, strict=False):
        sub = m[m["target"] == target]
        for k, ((src, size), g) in enumerate(sub.groupby(["source", "size"])):
            agg = g.groupby("pretrain_size")["error"].agg(["mean", "std"]).reset_index()
            line = ax.errorbar(agg["pretrain_size"], agg["mean"], yerr=agg["std"].fillna(0), marker="o", capsize=2, label=f"TL {src}, n={size}")
            scr = metrics[(metrics["target"] == target) & (metrics["size"].astype(str) == str(size)) & (metrics["mode"] == "scratch")]
            if len(scr):
                ax.axhline(scr["error"].mean(), ls="--", color=line[0].get_color(), lw=1, label=f"scratch, n={size}")
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis, sorted(sub["pretrain_size"].dropna().unique()))
        ax.set_xlabel("pretraining set size")
        ax.set_ylabel(_ylabel(sub))
        ax.set_title(target_labels.get(target, target), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Pretraining set size vs target error (mean ± sd over seeds)", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)


def model_comparison(models: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """CGCNN vs attention convolution trained from scratch: error and parameter count."""
    _setup()
    import matplotlib.pyplot as plt

    sub = models[models["model_kind"].isin(["cgcnn", "attention"])] if len(models) else models
    cells = sub.groupby(["target", "size"]).filter(lambda g: g["model_kind"].nunique() > 1) if len(sub) else sub
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * max(1, cells.groupby(["target", "size"]).ngroups if len(cells) else 1)), 4.0))
    if cells.empty:
        _empty(ax, "no target trained from scratch with both model kinds")
    else:
        keys = list(dict.fromkeys(zip(cells["target"], cells["size"], strict=True)))
        kinds = ["cgcnn", "attention"]
        for j, kind in enumerate(kinds):
            for i, key in enumerate(keys):
                r = cells[(cells["target"] == key[0]) & (cells["size"] == key[1]) & (cells["model_kind"] == kind)]
                if r.empty:
                    continue
                r = r.iloc[0]
                base = cells[(cells["target"] == key[0]) & (cells["size"] == key[1]) & (cells["model_kind"] == "cgcnn")]["error_mean"].iloc[0]
                ax.bar(i + (j - 0.5) * 0.38, r["error_mean"] / base, 0.38, yerr=r["error_sd"] / base, capsize=2,
                       color=("#4C72B0", "#DD8452")[j], label=f"{kind.replace('cgcnn', 'CGCNN')} ({int(r['n_params']):,} parameters)" if i == 0 else None)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{target_labels.get(k[0], k[0])}\nn={k[1]}" for k in keys], fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel("test error / CGCNN test error (mean ± sd)")
        ax.set_title("Attention convolution vs CGCNN, trained from scratch", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, png, pdf)
    plt.close(fig)
