"""Model comparison: attention convolution against CGCNN, both trained from scratch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlcgcnn.report.figures.style import empty, finish, setup


def model_comparison(models: pd.DataFrame, target_labels: dict[str, str], png: str | Path, pdf: str | Path) -> None:
    """CGCNN vs attention convolution trained from scratch: error and parameter count."""
    setup()
    import matplotlib.pyplot as plt

    sub = models[models["model_kind"].isin(["cgcnn", "attention"])] if len(models) else models
    cells = sub.groupby(["target", "size"]).filter(lambda g: g["model_kind"].nunique() > 1) if len(sub) else sub
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.6 * max(1, cells.groupby(["target", "size"]).ngroups if len(cells) else 1)), 4.0)
    )
    if cells.empty:
        empty(ax, "no target trained from scratch with both model kinds")
    else:
        keys = list(dict.fromkeys(zip(cells["target"], cells["size"], strict=True)))
        kinds = ["cgcnn", "attention"]
        for j, kind in enumerate(kinds):
            for i, key in enumerate(keys):
                r = cells[(cells["target"] == key[0]) & (cells["size"] == key[1]) & (cells["model_kind"] == kind)]
                if r.empty:
                    continue
                r = r.iloc[0]
                base = cells[
                    (cells["target"] == key[0]) & (cells["size"] == key[1]) & (cells["model_kind"] == "cgcnn")
                ]["error_mean"].iloc[0]
                ax.bar(
                    i + (j - 0.5) * 0.38,
                    r["error_mean"] / base,
                    0.38,
                    yerr=r["error_sd"] / base,
                    capsize=2,
                    color=("#4C72B0", "#DD8452")[j],
                    label=f"{kind.replace('cgcnn', 'CGCNN')} ({int(r['n_params']):,} parameters)" if i == 0 else None,
                )
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{target_labels.get(k[0], k[0])}\nn={k[1]}" for k in keys], fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel("target, n = training crystals")
        ax.set_ylabel("test error ÷ CGCNN test error, mean ± sd (dimensionless)")
        ax.set_title("Attention convolution vs CGCNN, trained from scratch", fontsize=10)
        ax.legend(fontsize=8)
    finish(fig, png, pdf)
