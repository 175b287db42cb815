"""The data set itself: ΔEf against Eg of every material."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.style import finish, setup


def ef_eg_density(
    table: pd.DataFrame, corr: dict[str, Any], png: str | Path, pdf: str | Path, max_points: int = 40000, seed: int = 0
) -> None:
    """ΔEf vs Eg of every material, coloured by a Gaussian-KDE density estimate."""
    setup()
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
    # the density of (ΔEf in eV/atom, Eg in eV) per unit area of the plane: atom/eV²
    fig.colorbar(sc, ax=ax, label="Gaussian KDE density (atom/eV²)")
    ax.set_xlabel("formation energy ΔEf (eV/atom)")
    ax.set_ylabel("PBE band gap Eg (eV)")
    ax.set_title(
        f"ΔEf vs Eg, n = {corr['n']}: Pearson r = {corr['pearson_r']:.2f} "
        f"[{corr['pearson_ci_low']:.2f}, {corr['pearson_ci_high']:.2f}]",
        fontsize=10,
    )
    finish(fig, png, pdf)
