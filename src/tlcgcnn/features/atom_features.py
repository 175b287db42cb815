"""92-dimensional CGCNN-style atom features computed from pymatgen's element data.

Each element Z = 1..100 is described by binned one-hot encodings (after Xie & Grossman,
PRL 120, 145301, Table S2), computed here rather than copied from cgcnn's ``atom_init.json``:

================================  =====  =========================================
category                          dims   encoding
================================  =====  =========================================
group                             18     one-hot 1..18 (lanthanides/actinides: 3)
period                            7      one-hot 1..7
Pauling electronegativity         10     linear bins over 0.5-4.0 (none: all zero)
covalent radius                   10     linear bins over 0.25-2.5 Å
valence electrons                 12     one-hot 1..12 (s: group, d: group,
                                         p: group-10, f: 3)
first ionisation energy           10     bins of ln(eV) over ln 3.5 - ln 25
electron affinity                 11     10 linear bins over -3..3.7 eV, +1 "unknown"
block                             4      one-hot s, p, d, f
atomic (molar) volume             10     bins of ln(cm³/mol) over 1.5-4.3 (none: zero)
================================  =====  =========================================

Values outside a range fall into the end bins. The table ships inside the package as
``tlcgcnn/features/atom_features.csv`` (read through :mod:`importlib.resources`, so it is found in
an installed wheel too); :func:`build_table` regenerates it and a test checks that the shipped
file equals a fresh computation. A user table (config ``featurize.atom_features``) replaces it.
"""

from __future__ import annotations

import math
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

N_ELEMENTS = 100
PACKAGED_TABLE = "atom_features.csv"  # in tlcgcnn/data/
CATEGORIES: tuple[tuple[str, int], ...] = (
    ("group", 18),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("ionization_energy", 10),
    ("electron_affinity", 11),
    ("block", 4),
    ("atomic_volume", 10),
)
N_FEATURES = sum(n for _, n in CATEGORIES)
BLOCKS = ("s", "p", "d", "f")


def _bin(value: float | None, lo: float, hi: float, nbins: int) -> np.ndarray:
    out = np.zeros(nbins, dtype=np.float32)
    if value is None or not math.isfinite(value):
        return out
    k = int(math.floor((value - lo) / (hi - lo) * nbins))
    out[min(max(k, 0), nbins - 1)] = 1.0
    return out


def _onehot(index: int | None, n: int, first: int = 1) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    if index is not None and first <= index < first + n:
        out[index - first] = 1.0
    return out


def _valence(group: int, block: str) -> int:
    if block == "f":
        return 3
    if block == "p" and group > 12:
        return group - 10
    return group


def element_features(z: int) -> np.ndarray:
    """The 92-dim feature vector of element ``z``."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core import Element

    el = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = int(el.group)
        block = str(el.block)
        x = float(el.X)
        ie = el.ionization_energies[0] if el.ionization_energies else None
        try:
            ea: float | None = float(el.electron_affinity)
        except (ValueError, TypeError, AttributeError):
            ea = None
        mv = el.molar_volume
        volume = float(mv) if mv is not None else None
    radius = CovalentRadius.radius.get(el.symbol)
    ea_vec = np.concatenate(
        [_bin(ea, -3.0, 3.7, 10), np.array([0.0 if ea is not None and math.isfinite(ea) else 1.0], dtype=np.float32)]
    )
    parts = [
        _onehot(group, 18),
        _onehot(int(el.row), 7),
        _bin(x, 0.5, 4.0, 10),
        _bin(radius, 0.25, 2.5, 10),
        _onehot(min(max(_valence(group, block), 1), 12), 12),
        _bin(math.log(ie) if ie else None, math.log(3.5), math.log(25.0), 10),
        ea_vec,
        _onehot(BLOCKS.index(block) + 1 if block in BLOCKS else None, 4),
        _bin(math.log(volume) if volume else None, 1.5, 4.3, 10),
    ]
    vec = np.concatenate(parts)
    assert vec.shape == (N_FEATURES,), vec.shape
    return vec


def feature_names() -> list[str]:
    return [f"{name}_{i}" for name, n in CATEGORIES for i in range(n)]


def build_table() -> pd.DataFrame:
    """The full table: one row per element Z = 1..100, columns ``z``, ``symbol`` and features."""
    from pymatgen.core import Element

    data = np.stack([element_features(z) for z in range(1, N_ELEMENTS + 1)])
    df = pd.DataFrame(data.astype(np.int8), columns=feature_names())
    df.insert(0, "symbol", [Element.from_Z(z).symbol for z in range(1, N_ELEMENTS + 1)])
    df.insert(0, "z", np.arange(1, N_ELEMENTS + 1))
    return df


def load_matrix(path: str | Path | None = None) -> np.ndarray:
    """Feature matrix indexed by Z: row 0 is all zeros (padding), rows 1..100 the elements.

    ``path`` None reads the table shipped with the package (:func:`default_path`)."""
    if path is None:
        path = default_path()
    df = pd.read_csv(path)
    names = feature_names()
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: atom feature table lacks columns {missing[:5]}...")
    mat = np.zeros((int(df["z"].max()) + 1, len(names)), dtype=np.float32)
    mat[df["z"].to_numpy()] = df[names].to_numpy(dtype=np.float32)
    return mat


def default_path() -> Path:
    """The atom feature table shipped inside the package (``tlcgcnn/features/atom_features.csv``)."""
    ref = resources.files("tlcgcnn").joinpath("features", PACKAGED_TABLE)
    path = Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(
            f"the packaged atom feature table {ref} is missing: reinstall tlcgcnn "
            "(pyproject.toml ships tlcgcnn/features/*.csv as package data)"
        )
    return path
