"""Build the RAW download table from API records.

The raw table has one row per material with ``material_id`` (string), ``structure`` (the
pymatgen ``Structure.as_dict()`` serialised with ``json.dumps``), canonical property columns
(float64 or boolean) and optional source-specific extra columns. Records whose structure cannot
be built are not kept; they are returned as ``dropped`` entries (id + reason) for the manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.data.properties import PROPERTIES


@dataclass
class Converted:
    """Rows ready for the table, the records dropped (id + reason), and the expected columns."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    received: int = 0
    columns: list[str] = field(default_factory=list)


class BadRecord(ValueError):
    """A record that cannot become a row (the message is the reason)."""


def check_structure(structure: Any) -> None:
    """Raise BadRecord if a pymatgen Structure is unusable (empty, degenerate, non-finite)."""
    if len(structure) == 0:
        raise BadRecord("structure has no sites")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise BadRecord("lattice has non-finite entries")
    volume = float(abs(np.linalg.det(matrix)))
    if not volume > 1e-6:
        raise BadRecord(f"lattice is degenerate (volume {volume:g} Å^3)")
    if not np.all(np.isfinite(structure.frac_coords)):
        raise BadRecord("site coordinates are not finite")


def structure_from_dict(data: Any) -> Any:
    """pymatgen Structure from an ``as_dict()`` mapping; BadRecord with the reason if impossible."""
    from pymatgen.core import Structure

    if not isinstance(data, dict):
        raise BadRecord(f"structure is {type(data).__name__}, expected a pymatgen structure dict")
    try:
        structure = Structure.from_dict(data)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad input
        raise BadRecord(f"cannot build structure: {type(exc).__name__}: {exc}") from exc
    check_structure(structure)
    return structure


def to_float(value: Any) -> float:
    """A float from an API value (None or unparsable → NaN)."""
    if value is None or isinstance(value, bool):
        return math.nan if value is None else float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def convert(
    records: Iterable[dict[str, Any]],
    record_id: Callable[[dict[str, Any]], str],
    build: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]],
    into: Converted | None = None,
) -> Converted:
    """Turn API records into rows. ``build`` returns (Structure, column values) or raises BadRecord.

    A repeated ``material_id`` keeps its first occurrence; later ones are dropped with a reason.
    """
    out = into or Converted()
    seen = {row["material_id"] for row in out.rows}
    for record in records:
        out.received += 1
        try:
            mid = record_id(record)
        except (KeyError, TypeError, ValueError) as exc:
            out.dropped.append({"material_id": "<missing>", "reason": f"record has no usable id: {exc}"})
            continue
        if mid in seen:
            out.dropped.append({"material_id": mid, "reason": "duplicate material_id (kept the first record)"})
            continue
        try:
            structure, values = build(record)
        except BadRecord as exc:
            out.dropped.append({"material_id": mid, "reason": str(exc)})
            continue
        seen.add(mid)
        out.rows.append({"material_id": mid, "structure": json.dumps(structure.as_dict()), **values})
    return out


def to_frame(rows: list[dict[str, Any]], property_columns: Iterable[str]) -> pd.DataFrame:
    """The raw table with stable dtypes (canonical properties float64/boolean, ids string)."""
    columns = list(dict.fromkeys(["material_id", "structure", *property_columns]))
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), dtype=object)
    df = df[columns + [c for c in df.columns if c not in columns]]
    df["material_id"] = df["material_id"].astype(str)
    df["structure"] = df["structure"].astype(str)
    for col in df.columns:
        prop = PROPERTIES.get(col)
        if prop is None:
            continue
        if prop.kind == "bool":
            df[col] = df[col].astype("boolean")
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df
