"""Composition and structure descriptors for the classical baselines.

For every crystal: statistics over its atoms (so weighted by the composition) of elemental
properties — fraction-weighted mean and standard deviation, minimum and maximum — plus
density, volume per atom, number of sites and number of distinct elements. The elemental
properties come from pymatgen's periodic table; gaps (e.g. no electron affinity) are filled
with the mean over the elements that have the property. Nothing here uses a label.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tlcgcnn.data import table
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

ELEMENT_PROPERTIES = (
    "Z",
    "atomic_mass",
    "X",
    "atomic_radius",
    "row",
    "group",
    "mendeleev_no",
    "melting_point",
    "molar_volume",
    "electron_affinity",
    "ionization_energy",
)
STATS = ("mean", "std", "min", "max")
MAX_Z = 103
AVOGADRO = 6.02214076e23


def element_table(props: tuple[str, ...] = ELEMENT_PROPERTIES) -> np.ndarray:
    """[MAX_Z + 1, len(props)] table of elemental properties (row 0 unused)."""
    from pymatgen.core.periodic_table import Element

    out = np.full((MAX_Z + 1, len(props)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            for j, name in enumerate(props):
                try:
                    val = getattr(el, name)
                    out[z, j] = float(val) if val is not None else np.nan
                except (AttributeError, TypeError, ValueError):
                    out[z, j] = np.nan
    col_mean = np.nanmean(out[1:], axis=0)
    rows, cols = np.nonzero(np.isnan(out[1:]))
    out[rows + 1, cols] = col_mean[cols]
    return out


def descriptor_names(props: tuple[str, ...] = ELEMENT_PROPERTIES) -> list[str]:
    return [f"{s}_{p}" for p in props for s in STATS] + ["density", "volume_per_atom", "nsites", "n_elements"]


def compute(df: pd.DataFrame, elements: np.ndarray | None = None) -> pd.DataFrame:
    """Descriptor matrix (one row per crystal of the canonical table ``df``)."""
    elements = element_table() if elements is None else elements
    lattices, z, _, offsets = table.arrays(df)
    counts = np.diff(offsets)
    n = len(df)
    crystal = np.repeat(np.arange(n), counts)
    vals = elements[z]  # [atoms, props]
    k = vals.shape[1]
    total = np.zeros((n, k))
    np.add.at(total, crystal, vals)
    mean = total / counts[:, None]
    sq = np.zeros((n, k))
    np.add.at(sq, crystal, (vals - mean[crystal]) ** 2)
    std = np.sqrt(sq / counts[:, None])
    vmin = np.full((n, k), np.inf)
    vmax = np.full((n, k), -np.inf)
    np.minimum.at(vmin, crystal, vals)
    np.maximum.at(vmax, crystal, vals)
    feats = np.stack([mean, std, vmin, vmax], axis=2).reshape(n, -1)  # props major, stats minor
    volume = np.abs(np.linalg.det(lattices))
    mass = np.zeros(n)
    np.add.at(mass, crystal, elements[z, ELEMENT_PROPERTIES.index("atomic_mass")])
    density = mass / AVOGADRO / (volume * 1e-24)  # g/cm³
    n_el = pd.Series(z).groupby(crystal).nunique().to_numpy()
    extra = np.column_stack([density, volume / counts, counts, n_el])
    out = pd.DataFrame(np.column_stack([feats, extra]), columns=descriptor_names())
    out.insert(0, "material_id", df["material_id"].astype(str).to_numpy())
    return out


def run(table_path: str | Path, out: str | Path) -> pd.DataFrame:
    """Workflow entry: descriptors of every crystal of the canonical table."""
    df = table.read(table_path, columns=["material_id", "nsites", "lattice", "atomic_numbers", "frac_coords"])
    desc = compute(df)
    io.write_parquet(desc, out)
    log.info("%d descriptors for %d crystals -> %s", desc.shape[1] - 1, len(desc), out)
    return desc
