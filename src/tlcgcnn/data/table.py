"""The canonical structure table (``structures.parquet``).

One row per material. Structures are stored as plain arrays so that nothing downstream ever
parses a CIF again:

==================  ===================  ============================================
column              type                 meaning
==================  ===================  ============================================
material_id         string               unique id (e.g. ``mp-1234``)
source              string               where the row came from (file name, database)
formula             string               reduced formula
nsites              int32                number of sites in the cell
lattice             list<float64>[9]     lattice vectors as rows, Å, row-major
atomic_numbers      list<int16>          Z of each site
frac_coords         list<float64>        fractional coordinates, nsites x 3, row-major
<property>          float64 / boolean    canonical properties (see ``properties.py``)
==================  ===================  ============================================
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.data.properties import PROPERTIES
from tlcgcnn.utils import fileio as io

STRUCTURE_COLUMNS = ("material_id", "source", "formula", "nsites", "lattice", "atomic_numbers", "frac_coords")


def structure_arrays(structure: Any) -> dict[str, Any]:
    """Arrays of a pymatgen ``Structure`` in the canonical layout."""
    return {
        "formula": structure.composition.reduced_formula,
        "nsites": len(structure),
        "lattice": np.asarray(structure.lattice.matrix, dtype=np.float64).reshape(9),
        "atomic_numbers": np.asarray([site.specie.Z for site in structure], dtype=np.int16),
        "frac_coords": np.asarray(structure.frac_coords, dtype=np.float64).reshape(-1),
    }


def to_structure(row: Any) -> Any:
    """Rebuild a pymatgen ``Structure`` from a canonical row (a Series or a mapping)."""
    from pymatgen.core import Lattice, Structure

    lattice = Lattice(np.asarray(row["lattice"], dtype=np.float64).reshape(3, 3))
    numbers = np.asarray(row["atomic_numbers"], dtype=int)
    coords = np.asarray(row["frac_coords"], dtype=np.float64).reshape(-1, 3)
    return Structure(lattice, numbers.tolist(), coords)


def arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack the structure columns: (lattices [n,3,3], Z [atoms], frac [atoms,3], offsets [n+1])."""
    nsites = df["nsites"].to_numpy(dtype=np.int64)
    offsets = np.zeros(len(df) + 1, dtype=np.int64)
    np.cumsum(nsites, out=offsets[1:])
    lattices = np.stack(df["lattice"].to_numpy()).reshape(-1, 3, 3) if len(df) else np.zeros((0, 3, 3))
    z = np.concatenate(df["atomic_numbers"].to_numpy()).astype(np.int64) if len(df) else np.zeros(0, np.int64)
    frac = np.concatenate(df["frac_coords"].to_numpy()).reshape(-1, 3) if len(df) else np.zeros((0, 3))
    return lattices, z, frac, offsets


def property_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c in PROPERTIES]


def read(path: str | Path, columns: Iterable[str] | None = None) -> pd.DataFrame:
    df = pd.read_parquet(path, columns=list(columns) if columns is not None else None)
    missing = [c for c in ("material_id",) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a canonical structure table (missing columns {missing})")
    return df


def write(df: pd.DataFrame, path: str | Path) -> None:
    """Write the canonical table atomically with stable dtypes."""
    out = df.copy()
    out["material_id"] = out["material_id"].astype(str)
    out["nsites"] = out["nsites"].astype("int32")
    for name in property_columns(out):
        if PROPERTIES[name].kind == "bool":
            out[name] = out[name].astype("boolean")
        else:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    io.write_parquet(out, path)
