"""A fast CIF reader for plain P1 CIFs (as Materials Project writes them), built on gemmi.

It returns exactly the canonical arrays that pymatgen's ``CifParser`` (``check_occu=True``,
``primitive=False``) would give, or ``None`` for anything outside the simple case, which
the caller then parses with pymatgen. The pymatgen steps reproduced here:

* lattice from the six cell parameters (``Lattice.from_parameters``);
* fractional coordinates within 1e-4 (relative) of 1/3 or 2/3 snapped to those values,
  then wrapped into [0, 1) with ``x - floor(x)``;
* sites sorted by (electronegativity, symbol) of their element, stably (pymatgen's
  ``get_sorted_structure`` after grouping by species), so sites of one element keep the
  file's order.

The simple case: one data block; symmetry operations given and all equal to ``x, y, z``;
every ``_atom_site_type_symbol`` a plain element symbol with a defined electronegativity;
occupancies absent or exactly 1; plain decimal numbers; no magnetic or oxidation-state data.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import numpy as np

_NUMBER_LIST = re.compile(r"^(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?: |$))+$")
_SYMBOL = re.compile(r"^[A-Z][a-z]?$")
_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
_CELL_TAGS = (
    "_cell_length_a",
    "_cell_length_b",
    "_cell_length_c",
    "_cell_angle_alpha",
    "_cell_angle_beta",
    "_cell_angle_gamma",
)
_IMPORTANT_FRACS = (1.0 / 3.0, 2.0 / 3.0)
FRAC_TOLERANCE = 1e-4  # pymatgen CifParser's default frac_tolerance


@lru_cache(maxsize=1)
def _element_table() -> dict[str, tuple[int, float]]:
    """Symbol -> (Z, Pauling electronegativity) for elements with a defined electronegativity."""
    import warnings

    from pymatgen.core import Element

    out: dict[str, tuple[int, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for el in Element:
            x = float(el.X)  # some are stored as ints (Ca: 1, Hg: 2)
            if not math.isnan(x):
                out[el.symbol] = (int(el.Z), x)
    return out


def _floats(values: list[str]) -> np.ndarray | None:
    """Plain decimal numbers (no uncertainties, '?' or '.') as float64, else ``None``."""
    if _NUMBER_LIST.match(" ".join(values)) is None:
        return None
    return np.array([float(v) for v in values], dtype=np.float64)


def _strings(block: Any, tag: str) -> list[str] | None:
    col = block.find_values(tag)
    if len(col) == 0:
        return None
    import gemmi

    return [gemmi.cif.as_string(v) for v in col]


def _is_identity_only(block: Any) -> bool:
    for tag in _SYMOP_TAGS:
        ops = _strings(block, tag)
        if ops is not None:
            return len(ops) == 1 and ops[0].replace(" ", "").lower() == "x,y,z"
    return False


def _snap_and_wrap(frac: np.ndarray) -> np.ndarray:
    out = frac.copy()
    for value in _IMPORTANT_FRACS:
        out[np.abs(frac / value - 1.0) <= FRAC_TOLERANCE] = value
    return out - np.floor(out)


def parse_p1_cif(text: str) -> dict[str, Any] | None:
    """Canonical arrays (lattice, atomic_numbers, frac_coords, nsites, formula) or ``None``."""
    import gemmi

    try:
        doc = gemmi.cif.read_string(text)
    except (ValueError, RuntimeError):
        return None
    if len(doc) != 1:
        return None
    block = doc[0]
    tags = {item.pair[0].lower() for item in block if item.pair is not None}
    tags |= {t.lower() for item in block if item.loop is not None for t in item.loop.tags}
    if any("magn" in t or "moment" in t or "oxidation" in t for t in tags) or not _is_identity_only(block):
        return None
    cell = [_strings(block, t) for t in _CELL_TAGS]
    symbols = _strings(block, "_atom_site_type_symbol")
    coords = [_strings(block, f"_atom_site_fract_{a}") for a in "xyz"]
    if any(c is None or len(c) != 1 for c in cell) or symbols is None or any(c is None for c in coords):
        return None
    params = _floats([c[0] for c in cell])  # type: ignore[index]
    frac = _floats([v for c in coords for v in c])  # type: ignore[union-attr]
    if params is None or frac is None or len(frac) != 3 * len(symbols):
        return None
    occupancies = _strings(block, "_atom_site_occupancy")
    if occupancies is not None:
        occ = _floats(occupancies)
        if occ is None or len(occ) != len(symbols) or not np.all(occ == 1.0):
            return None
    table = _element_table()
    if not symbols or not all(_SYMBOL.match(s) and s in table for s in symbols):
        return None
    return _canonical(params, symbols, frac.reshape(3, -1).T, table)


def _canonical(
    params: np.ndarray, symbols: list[str], frac: np.ndarray, table: dict[str, tuple[int, float]]
) -> dict[str, Any]:
    from pymatgen.core import Composition, Lattice

    lattice = Lattice.from_parameters(*params.tolist())
    order = sorted(range(len(symbols)), key=lambda i: (table[symbols[i]][1], symbols[i]))  # stable
    z = np.array([table[symbols[i]][0] for i in order], dtype=np.int16)
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    return {
        "formula": Composition(counts).reduced_formula,
        "nsites": len(symbols),
        "lattice": np.asarray(lattice.matrix, dtype=np.float64).reshape(9),
        "atomic_numbers": z,
        "frac_coords": _snap_and_wrap(frac[order]).reshape(-1),
    }
