"""Ingest a local dataset into the canonical structure table.

Accepted inputs (read by :mod:`tlcgcnn.data.inputs`): a CSV / Parquet / JSON table with an id
column and a structure column (CIF, POSCAR or extended-XYZ text, or a pymatgen
``Structure.as_dict()``); a folder of CIF files with cgcnn's ``id_prop.csv`` (header
optional); a folder of structure files (CIF, POSCAR, extended XYZ) with a labels CSV.

Each row is validated. A row is dropped (and listed in ``dropped.csv`` with its reason) for
an unparsable structure, partial occupancy / disordered sites, overlapping atoms or a
duplicate id. A missing label is simply missing. A physically absurd label is set to missing
and listed too. Nothing is lost silently.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.data import inputs, table
from tlcgcnn.data.properties import PROPERTIES, canonical_name
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

STRUCTURE_COLUMNS = inputs.STRUCTURE_COLUMNS
ID_COLUMNS = inputs.ID_COLUMNS
REASONS = (
    "missing_structure",
    "unparsable_structure",
    "partial_occupancy",
    "overlapping_atoms",
    "duplicate_id",
    "empty_structure",
)


class IngestError(ValueError):
    """Input that cannot be ingested at all (as opposed to rows that are dropped)."""


@dataclass
class IngestOptions:
    min_distance: float = 0.5  # Å; closer atom pairs mean overlapping atoms
    id_column: str | None = None
    structure_column: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # source column -> canonical name
    required_properties: Sequence[str] = ()
    threads: int = 1
    chunk_size: int = 256
    source: str | None = None
    labels: str | None = None  # labels CSV of a folder of structure files (else the folder's only CSV)
    cif_parser: str = "auto"  # "auto": gemmi fast path for plain P1 CIFs, else pymatgen; "pymatgen": always pymatgen
    sample: dict[str, Any] | None = None  # see sample_rows


@dataclass
class ParsedRow:
    index: int
    arrays: dict[str, Any] | None
    reason: str | None = None
    detail: str = ""


# --------------------------------------------------------------------------- reading input


def read_input(path: str | Path, labels: str | Path | None = None) -> pd.DataFrame:
    """The raw table of a table file, CIF folder with ``id_prop.csv`` or folder of structure
    files (:func:`tlcgcnn.data.inputs.read_input`); an unreadable input raises :class:`IngestError`."""
    try:
        return inputs.read_input(path, labels)
    except inputs.InputError as exc:
        raise IngestError(str(exc)) from None


def pick_column(columns: Iterable[str], wanted: str | None, candidates: Sequence[str], what: str, path: str) -> str:
    """The ``wanted`` column, else the first of ``candidates`` present; raises naming the file."""
    cols = list(columns)
    if wanted is not None:
        if wanted not in cols:
            raise IngestError(f"{path}: {what} column {wanted!r} not found; columns are {cols}")
        return wanted
    for c in candidates:
        if c in cols:
            return c
    raise IngestError(f"{path}: no {what} column (looked for {list(candidates)}); columns are {cols}")


# --------------------------------------------------------------------------- structures


def parse_structure(value: Any) -> Any:
    """A pymatgen Structure from CIF, POSCAR or extended-XYZ text or a pymatgen dict / JSON
    (:func:`tlcgcnn.data.inputs.parse_structure`)."""
    return inputs.parse_structure(value)


def min_pair_distance(structure: Any, cutoff: float) -> float:
    """Smallest interatomic distance below ``cutoff`` (periodic images included), else inf."""
    return min_pair_distance_arrays(np.asarray(structure.lattice.matrix), np.asarray(structure.cart_coords), cutoff)


def min_pair_distance_arrays(lattice: np.ndarray, cart: np.ndarray, cutoff: float) -> float:
    """:func:`min_pair_distance` from a lattice [3,3] (rows) and Cartesian coordinates [n,3]."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    lattice = np.ascontiguousarray(lattice, dtype=float)
    cart = np.ascontiguousarray(cart, dtype=float)
    _, _, _, dist = find_points_in_spheres(
        cart, cart, r=float(cutoff), pbc=np.array([1, 1, 1], dtype=np.int64), lattice=lattice, tol=1e-8
    )
    dist = dist[dist > 1e-8]
    return float(dist.min()) if dist.size else math.inf


def _fast_cif(value: Any, min_distance: float) -> dict[str, Any] | None:
    """Canonical arrays of a plain P1 CIF that passes validation, via gemmi; else ``None``
    (the caller then takes the pymatgen path, which also names the reason for a drop)."""
    if not isinstance(value, str) or value.lstrip().startswith("{"):
        return None
    from tlcgcnn.data.cif_fast import parse_p1_cif

    arrays = parse_p1_cif(value)
    if arrays is None:
        return None
    m = arrays["lattice"].reshape(3, 3)
    if abs(float(np.dot(np.cross(m[0], m[1]), m[2]))) <= 1e-6:
        return None
    cart = arrays["frac_coords"].reshape(-1, 3) @ m
    if min_pair_distance_arrays(m, cart, min_distance) < min_distance:
        return None
    return arrays


def _validate_structure(index: int, value: Any, min_distance: float, cif_parser: str = "pymatgen") -> ParsedRow:
    if cif_parser == "auto" and (fast := _fast_cif(value, min_distance)) is not None:
        return ParsedRow(index, fast)
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    ):
        return ParsedRow(index, None, "missing_structure", "no structure given")
    try:
        s = parse_structure(value)
    except Exception as exc:  # any parser failure drops only this row
        return ParsedRow(index, None, "unparsable_structure", f"{type(exc).__name__}: {exc}"[:300])
    if len(s) == 0:
        return ParsedRow(index, None, "empty_structure", "structure has no sites")
    if not s.is_ordered:
        bad = next(site for site in s if not site.is_ordered)
        return ParsedRow(index, None, "partial_occupancy", f"disordered site {bad.species}")
    if s.lattice.volume <= 1e-6:
        return ParsedRow(index, None, "unparsable_structure", "degenerate lattice (zero volume)")
    dmin = min_pair_distance(s, min_distance)
    if dmin < min_distance:
        return ParsedRow(index, None, "overlapping_atoms", f"atoms {dmin:.3f} Å apart (< {min_distance} Å)")
    return ParsedRow(index, table.structure_arrays(s))


def _parse_chunk(args: tuple[Sequence[int], Sequence[Any], float, str]) -> list[ParsedRow]:
    indices, values, min_distance, cif_parser = args
    return [_validate_structure(i, v, min_distance, cif_parser) for i, v in zip(indices, values, strict=True)]


def parse_structures(values: Sequence[Any], options: IngestOptions, progress: bool = True) -> list[ParsedRow]:
    """Parse and validate all structures, in parallel over ``options.threads`` processes."""
    from tqdm.auto import tqdm

    n = len(values)
    size = max(1, options.chunk_size)
    if options.cif_parser not in ("auto", "pymatgen"):
        raise IngestError(f"unknown cif_parser {options.cif_parser!r}; choose auto or pymatgen")
    chunks = [
        (list(range(a, min(a + size, n))), list(values[a : a + size]), options.min_distance, options.cif_parser)
        for a in range(0, n, size)
    ]
    bar = tqdm(total=n, desc="parse structures", unit="crystal", disable=not progress, mininterval=2.0)
    results: list[ParsedRow] = []
    if options.threads <= 1 or len(chunks) <= 1:
        for ch in chunks:
            results.extend(_parse_chunk(ch))
            bar.update(len(ch[0]))
    else:
        with ProcessPoolExecutor(max_workers=options.threads) as pool:
            for part in pool.map(_parse_chunk, chunks):
                results.extend(part)
                bar.update(len(part))
    bar.close()
    return results


# --------------------------------------------------------------------------- labels


def _to_bool(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return pd.NA
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "t", "1.0"}:
        return True
    if text in {"false", "0", "no", "f", "0.0"}:
        return False
    return pd.NA


def map_property_columns(df: pd.DataFrame, explicit: dict[str, str]) -> dict[str, str]:
    """Map source column -> canonical property name (explicit mapping first, then aliases)."""
    mapping: dict[str, str] = {}
    for src, dst in explicit.items():
        if src not in df.columns:
            raise IngestError(f"configured column {src!r} not found in input; columns are {list(df.columns)}")
        if dst not in PROPERTIES:
            raise IngestError(
                f"configured column {src!r} maps to unknown property {dst!r}; known: {sorted(PROPERTIES)}"
            )
        mapping[src] = dst
    taken = set(mapping.values())
    for col in df.columns:
        if col in mapping:
            continue
        name = canonical_name(str(col))
        if name is not None and name not in taken:
            mapping[col] = name
            taken.add(name)
    return mapping


def clean_labels(
    raw: pd.DataFrame, mapping: dict[str, str], ids: pd.Series, rows: pd.Series
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Canonical label columns with absurd values set to missing, and the list of those."""
    out = pd.DataFrame(index=raw.index)
    issues: list[dict[str, Any]] = []
    for src, name in mapping.items():
        prop = PROPERTIES[name]
        if prop.kind == "bool":
            out[name] = raw[src].map(_to_bool).astype("boolean")
            continue
        values = pd.to_numeric(raw[src], errors="coerce").astype("float64")
        unparsable = values.isna() & raw[src].notna() & (raw[src].astype(str).str.strip() != "")
        for idx in raw.index[unparsable]:
            issues.append(
                _label_issue(
                    ids[idx],
                    rows[idx],
                    name,
                    raw.at[idx, src],
                    "unparsable_label",
                    f"{name} value {raw.at[idx, src]!r} is not a number",
                )
            )
        for idx in values.index[values.notna()]:
            why = prop.check(float(values[idx]))
            if why is not None:
                issues.append(_label_issue(ids[idx], rows[idx], name, values[idx], "absurd_label", why))
                values[idx] = np.nan
        out[name] = values
    return out, issues


def _label_issue(mid: Any, row: Any, prop: str, value: Any, reason: str, detail: str) -> dict[str, Any]:
    return {
        "row": row,
        "material_id": mid,
        "property": prop,
        "value": value,
        "reason": reason,
        "action": "label_set_missing",
        "detail": detail,
    }


# --------------------------------------------------------------------------- main entry


def validate_rows(
    structures: pd.Series, ids: pd.Series, rows: pd.Series, id_col: str, options: IngestOptions, progress: bool = True
) -> tuple[np.ndarray, dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """Drop rows without an id, with a repeated id or with an invalid structure.

    ``structures``, ``ids`` (stripped strings) and ``rows`` (row numbers as the user sees
    them) share a 0..n-1 index. Returns the keep mask, the canonical arrays of each kept
    row (by index) and one dropped-report record per dropped row, with its reason (and its
    ``index``, which the written report leaves out)."""
    dropped: list[dict[str, Any]] = []
    keep = np.ones(len(structures), dtype=bool)
    missing_id = ids.isna() | (ids == "")
    for idx in structures.index[missing_id.to_numpy()]:
        dropped.append(
            {
                "index": idx,
                "row": rows[idx],
                "material_id": None,
                "reason": "missing_id",
                "action": "row_dropped",
                "detail": f"empty {id_col}",
            }
        )
        keep[idx] = False
    dup = ids.duplicated(keep="first") & ~missing_id
    for idx in structures.index[dup.to_numpy()]:
        first = int(rows[ids.index[(ids == ids[idx])][0]])
        dropped.append(
            {
                "index": idx,
                "row": rows[idx],
                "material_id": ids[idx],
                "reason": "duplicate_id",
                "action": "row_dropped",
                "detail": f"same id as row {first}",
            }
        )
        keep[idx] = False

    candidates = structures.index[keep]
    parsed = parse_structures(structures.loc[candidates].tolist(), options, progress=progress)
    arrays: dict[int, dict[str, Any]] = {}
    for pos, res in zip(candidates, parsed, strict=True):
        if res.arrays is None:
            dropped.append(
                {
                    "index": pos,
                    "row": rows[pos],
                    "material_id": ids[pos],
                    "reason": res.reason,
                    "action": "row_dropped",
                    "detail": res.detail,
                }
            )
            keep[pos] = False
        else:
            arrays[pos] = res.arrays
    return keep, arrays, dropped


def ingest_frame(
    raw: pd.DataFrame, options: IngestOptions, path: str = "<table>", progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Validate a raw table. Returns (canonical table, dropped report, summary)."""
    id_col = pick_column(raw.columns, options.id_column, ID_COLUMNS, "id", path)
    st_col = pick_column(raw.columns, options.structure_column, STRUCTURE_COLUMNS, "structure", path)
    raw = raw.reset_index(drop=True)
    # 1-based data row numbers as a user sees them in the file (header = line 1 for CSV)
    rows = pd.Series(raw["_line"] if "_line" in raw.columns else np.arange(1, len(raw) + 1), index=raw.index)
    ids = raw[id_col].astype("string").str.strip()
    source = options.source or Path(path).name

    explicit = dict(options.columns)
    if "target" in raw.columns and "_file" in raw.columns and "target" not in explicit:
        # cgcnn id_prop.csv without a header: the single target column must be named by the user
        raise IngestError(
            f"{path}: id_prop.csv has an unnamed target; name it: dataset.columns: {{target: <property>}} "
            "(tlcgcnn finetune --label <property>), or give id_prop.csv a header row"
        )
    mapping = map_property_columns(raw.drop(columns=[id_col, st_col]), explicit)

    keep, arrays, dropped = validate_rows(raw[st_col], ids, rows, id_col, options, progress=progress)

    labels, label_issues = clean_labels(raw, mapping, ids, rows)
    kept_idx = raw.index[keep]
    kept_ids = set(ids[kept_idx])
    label_issues = [i for i in label_issues if i["material_id"] in kept_ids]
    records = [arrays[i] for i in kept_idx]
    out = pd.DataFrame(
        {
            "material_id": ids[kept_idx].astype(str).to_numpy(),
            "source": source,
            "formula": [r["formula"] for r in records],
            "nsites": np.asarray([r["nsites"] for r in records], dtype=np.int32),
            "lattice": [r["lattice"] for r in records],
            "atomic_numbers": [r["atomic_numbers"] for r in records],
            "frac_coords": [r["frac_coords"] for r in records],
        }
    )
    for name in labels.columns:
        out[name] = labels.loc[kept_idx, name].to_numpy()

    report = pd.DataFrame(
        dropped + label_issues, columns=["row", "material_id", "property", "value", "reason", "action", "detail"]
    )
    report.insert(0, "file", path)
    summary = _summary(path, raw, out, dropped, label_issues, mapping, options)
    return out, report, summary


def check_required(
    path: str, summary: dict[str, Any], required: Sequence[str], columns: Sequence[str], report_path: str
) -> None:
    """Stop before any training when a property the run needs has no usable label: a
    property with no column at all is named with the columns there are; one whose values
    were all dropped points at the dropped report (written before this check)."""
    absent = [p for p in required if p not in summary["column_mapping"].values()]
    if absent:
        raise IngestError(
            f"{path}: no column for {absent} (label columns found: {sorted(summary['column_mapping'])}; all columns: "
            f"{[c for c in columns if not str(c).startswith('_')]}); name the column in dataset.columns "
            "(or tlcgcnn finetune --label COLUMN), or declare the property under properties:"
        )
    empty = [p for p in required if summary["labels"].get(p, 0) == 0]
    if empty:
        raise IngestError(
            f"{path}: no usable values left for required properties {empty} "
            f"(label counts: {summary['labels']}; kept {summary['rows_kept']} of {summary['rows_in']} rows; "
            f"every dropped row and label with its reason: {report_path})"
        )


def _summary(
    path: str,
    raw: pd.DataFrame,
    out: pd.DataFrame,
    dropped: list[dict[str, Any]],
    issues: list[dict[str, Any]],
    mapping: dict[str, str],
    options: IngestOptions,
) -> dict[str, Any]:
    labels = {name: int(out[name].notna().sum()) for name in mapping.values()}
    return {
        "input": path,
        "rows_in": len(raw),
        "rows_kept": len(out),
        "rows_dropped": len(dropped),
        "dropped_by_reason": dict(Counter(d["reason"] for d in dropped)),
        "labels_set_missing": len(issues),
        "labels_set_missing_by_property": dict(Counter(i["property"] for i in issues)),
        "labels": labels,
        "column_mapping": mapping,
        "min_distance": options.min_distance,
        "atoms": int(out["nsites"].sum()) if len(out) else 0,
        "max_sites": int(out["nsites"].max()) if len(out) else 0,
    }


def ingest(
    path: str | Path,
    out_table: str | Path,
    out_dropped: str | Path,
    out_summary: str | Path,
    options: IngestOptions,
    progress: bool = True,
) -> dict[str, Any]:
    """Read ``path``, validate it and write the canonical table, dropped report and summary."""
    raw = read_input(path, options.labels)
    log.info("read %d rows from %s", len(raw), path)
    if options.sample:
        raw = sample_rows(raw, **options.sample)
    out, report, summary = ingest_frame(raw, options, path=str(path), progress=progress)
    summary["input_sha256"] = inputs.input_sha256(path)
    io.write_csv(report, out_dropped)  # first: a run that stops below names this report
    check_required(str(path), summary, options.required_properties, list(raw.columns), str(out_dropped))
    table.write(out, out_table)
    io.write_json(out_summary, summary)
    log.info(
        "kept %d of %d rows; dropped %d (%s); %d labels set missing",
        summary["rows_kept"],
        summary["rows_in"],
        summary["rows_dropped"],
        summary["dropped_by_reason"] or "none",
        summary["labels_set_missing"],
    )
    return summary


def sample_rows(raw: pd.DataFrame, n: int, seed: int = 0, keep: dict[str, int] | None = None) -> pd.DataFrame:
    """A seeded subsample of a raw table, for reduced runs of a large data set: for each
    property in ``keep`` up to that many rows labelled with it (0 = all of them; e.g. the
    rare elastic or dielectric labels), plus ``n`` further rows drawn from the rest. Columns
    are matched by canonical property name. The input's row order is kept."""
    rng = np.random.default_rng(seed)
    if "_line" not in raw.columns:  # keep the input's row numbers for the dropped report
        raw = raw.assign(_line=np.arange(1, len(raw) + 1))
    by_canonical = {canonical_name(str(c)): c for c in raw.columns}
    chosen = np.zeros(len(raw), dtype=bool)
    for prop, limit in (keep or {}).items():
        col = by_canonical.get(prop)
        if col is None:
            raise IngestError(f"dataset.sample.keep: no column for property {prop!r}")
        rows = np.flatnonzero(raw[col].notna().to_numpy() & ~chosen)
        if limit and len(rows) > limit:
            rows = rng.choice(rows, size=int(limit), replace=False)
        chosen[rows] = True
    rest = np.flatnonzero(~chosen)
    chosen[rng.choice(rest, size=min(int(n), len(rest)), replace=False)] = True
    log.info("sampled %d of %d rows (seed %d, keep %s)", int(chosen.sum()), len(raw), seed, keep or {})
    return raw.loc[chosen].reset_index(drop=True)
