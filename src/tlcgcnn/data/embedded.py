"""The real-data subset committed in the repository (``resources/mp2018/``).

A fresh clone has no ``../shared`` data and no network, yet its default run should train on
real DFT labels. :func:`build` makes a small, documented selection of a full Materials
Project table (the CGCNN paper's MP-2018 snapshot, or a Materials Project download of the
download stage) that can be committed: at most ``max_bytes`` on disk, with a manifest
(source file and its sha256, the selection rule and seed, counts per label, column units)
and a README with the licence (CC-BY 4.0) and the citations.

The selection rule (:func:`select`), seeded and deterministic for a given input file:

1. *Eligible* rows have an id (the first of a repeated id only), a structure and a valid
   value (present and inside the property's physical range, :mod:`tlcgcnn.data.properties`) of
   every ``require``-d property (ΔEf and the PBE gap by default).
2. For each property of ``keep``, in the order given: of the eligible rows not chosen yet
   that hold a valid value of it, all of them (``0``) or that many drawn at random.
3. ``n`` further rows drawn at random from the eligible rows left.
4. The chosen structures are checked with the ingest stage's own parser and rules
   (:func:`tlcgcnn.data.ingest.parse_structures`); a row that ingest would drop is left out and
   listed in the manifest with the reason, so every committed row is usable.

One ``numpy`` generator (``seed``) serves steps 2 and 3 in turn. The rows keep the input's
order and its columns (CIF text stays CIF text); the Parquet file is zstd-compressed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.data.ingest import ID_COLUMNS, STRUCTURE_COLUMNS, IngestOptions, parse_structures, pick_column, read_input
from tlcgcnn.data.properties import PROPERTIES, canonical_name
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

ZSTD_LEVEL = 19
SELECTION_RULE = (
    "eligible: rows with an id (first of a repeated id), a structure and a valid value of every "
    "required property; then, for each keep property in order, all (0) or that many eligible rows "
    "with a valid value of it drawn at random among those not chosen yet; then n more rows drawn "
    "at random from the eligible rest; one numpy default_rng(seed) for all draws; rows that the "
    "ingest stage would drop (structure checks) are left out; input row order kept"
)

LICENCE = """\
## Licence and citation

Materials Project data is licensed under CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/): you may share and adapt it, with attribution.
When you use this subset, cite:

- A. Jain et al., *Commentary: The Materials Project: A materials genome approach to
  accelerating materials innovation*, APL Materials 1, 011002 (2013) (the Materials Project);
- T. Xie and J. C. Grossman, *Crystal Graph Convolutional Neural Networks for an Accurate and
  Interpretable Prediction of Material Properties*, PRL 120, 145301 (2018) (the MP-2018
  snapshot of CGCNN);
- C. Chen et al., *Learning properties of ordered and disordered materials from
  multi-fidelity data*, Nat. Comput. Sci. 1, 46 (2021) (the multi-fidelity gaps: HSE, GLLB-SC,
  SCAN);
- M. de Jong et al., *Charting the complete elastic properties of inorganic crystalline
  compounds*, Sci. Data 2, 150009 (2015) (elasticity: K_VRH, G_VRH);
- I. Petousis et al., *High-throughput screening of inorganic compounds for the discovery of
  novel dielectric and optical materials*, Sci. Data 4, 160134 (2017) (dielectric constants).

Provenance of the MP-2018 table: CIFs and ΔEf / Eg from the public repository kdmsit/MEGNet
(commit 4f3c76c6; folders data/, data_elasticity/, multifidelity/), dielectric values joined
from janosh/dielectrics (commit f94baa08).
"""


class EmbeddedError(ValueError):
    """A selection that cannot be made or committed (named file, property and reason)."""


def _valid(values: pd.Series, prop: str) -> np.ndarray:
    """Rows holding a valid value of ``prop`` (present, numeric, inside its physical range)."""
    spec = PROPERTIES[prop]
    if spec.kind == "bool":
        return values.notna().to_numpy()
    x = pd.to_numeric(values, errors="coerce")
    ok = x.notna().to_numpy()
    checked = np.array(
        [spec.check(float(v)) is None if o else False for v, o in zip(x.to_numpy(), ok, strict=True)], dtype=bool
    )
    return checked


def property_columns(raw: pd.DataFrame, props: Sequence[str], path: str) -> dict[str, str]:
    """Canonical property -> source column, for each of ``props`` (an error names the file)."""
    by_name: dict[str, str] = {}
    for col in raw.columns:
        name = canonical_name(str(col))
        if name is not None and name not in by_name:
            by_name[name] = str(col)
    out = {}
    for p in props:
        if p not in PROPERTIES:
            raise EmbeddedError(f"embedded: unknown property {p!r}; known: {sorted(PROPERTIES)}")
        if p not in by_name:
            raise EmbeddedError(f"{path}: no column holds {p!r} (columns: {list(raw.columns)})")
        out[p] = by_name[p]
    return out


def select(
    raw: pd.DataFrame,
    *,
    require: Sequence[str],
    keep: Mapping[str, int],
    n: int,
    seed: int,
    path: str = "<table>",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Steps 1-3 of the selection rule (module docstring): the chosen row positions, in the
    input's order, and what each step took."""
    id_col = pick_column(raw.columns, None, ID_COLUMNS, "id", path)
    st_col = pick_column(raw.columns, None, STRUCTURE_COLUMNS, "structure", path)
    cols = property_columns(raw, [*require, *keep], path)
    ids = raw[id_col].astype("string").str.strip()
    structure = raw[st_col]
    eligible = (ids.notna() & (ids != "") & ~ids.duplicated(keep="first")).to_numpy(dtype=bool)
    eligible &= structure.notna().to_numpy() & (structure.astype(str).str.strip() != "").to_numpy()
    for p in require:
        eligible &= _valid(raw[cols[p]], p)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(raw), dtype=bool)
    steps: list[dict[str, Any]] = []
    for prop, limit in keep.items():
        rows = np.flatnonzero(eligible & ~chosen & _valid(raw[cols[prop]], prop))
        available = len(rows)
        if limit and len(rows) > limit:
            rows = rng.choice(rows, size=int(limit), replace=False)
        chosen[rows] = True
        steps.append({"step": f"keep {prop}", "limit": int(limit), "available": available, "taken": len(rows)})
    rest = np.flatnonzero(eligible & ~chosen)
    take = min(int(n), len(rest))
    chosen[rng.choice(rest, size=take, replace=False)] = True
    steps.append({"step": "random rest", "limit": int(n), "available": len(rest), "taken": take})
    info = {
        "rows_in": len(raw),
        "eligible": int(eligible.sum()),
        "steps": steps,
        "id_column": id_col,
        "structure_column": st_col,
    }
    return np.flatnonzero(chosen), info


def label_counts(df: pd.DataFrame) -> dict[str, int]:
    """Valid values per canonical property column of ``df``."""
    out = {}
    for col in df.columns:
        name = canonical_name(str(col))
        if name is not None:
            out[name] = int(_valid(df[col], name).sum())
    return out


def build(
    input_path: str | Path,
    out_table: str | Path,
    out_manifest: str | Path,
    out_readme: str | Path,
    *,
    require: Sequence[str] = ("formation_energy_per_atom", "band_gap"),
    keep: Mapping[str, int] | None = None,
    n: int = 0,
    seed: int = 0,
    max_bytes: int = 8_000_000,
    min_distance: float = 0.5,
    threads: int = 1,
    title: str = "Real Materials Project subset",
) -> dict[str, Any]:
    """Select, check and write the subset, its manifest and README; returns the manifest.

    Raises :class:`EmbeddedError` when the written table exceeds ``max_bytes`` (nothing is
    left at ``out_table`` then) or when a required / kept property has no column."""
    src = Path(input_path)
    raw = read_input(src)
    log.info("read %d rows from %s", len(raw), src)
    positions, info = select(raw, require=require, keep=dict(keep or {}), n=n, seed=seed, path=str(src))
    chosen = raw.iloc[positions].reset_index(drop=True)
    parsed = parse_structures(
        chosen[info["structure_column"]].tolist(),
        IngestOptions(min_distance=min_distance, threads=threads),
        progress=False,
    )
    bad = [(i, r) for i, r in enumerate(parsed) if r.arrays is None]
    left_out = [
        {"material_id": str(chosen.at[i, info["id_column"]]), "reason": r.reason, "detail": r.detail} for i, r in bad
    ]
    if bad:
        chosen = chosen.drop(index=[i for i, _ in bad]).reset_index(drop=True)
        log.info("left out %d rows that ingest would drop: %s", len(bad), dict(Counter(r.reason for _, r in bad)))
    out = Path(out_table)
    with io.atomic_path(out) as tmp:
        chosen.to_parquet(tmp, index=False, compression="zstd", compression_level=ZSTD_LEVEL)
        size = tmp.stat().st_size
        if size > max_bytes:
            raise EmbeddedError(
                f"{out}: the subset would take {size:,} bytes, over the limit of {max_bytes:,} (embedded.max_bytes); "
                f"lower embedded.n or embedded.keep ({len(chosen)} rows)"
            )
    counts = label_counts(chosen)
    manifest = {
        "title": title,
        "file": out.name,
        "path": out.as_posix(),
        "bytes": size,
        "sha256": io.sha256_file(out),
        "rows": len(chosen),
        "source": {
            "file": src.name,
            "path": str(src),
            "sha256": io.sha256_file(src) if src.is_file() else None,
            "rows": info["rows_in"],
        },
        "selection": {
            "rule": SELECTION_RULE,
            "seed": int(seed),
            "require": list(require),
            "keep": [[k, int(v)] for k, v in (keep or {}).items()],  # [property, limit], in the order taken
            "n": int(n),
            "eligible": info["eligible"],
            "steps": info["steps"],
            "left_out": left_out,
            "module": "tlcgcnn.data.embedded",
        },
        "labels": counts,
        "metals": _metal_count(chosen),
        "columns": [{"column": str(c), "unit": _unit(str(c))} for c in chosen.columns],
        "structure_column": info["structure_column"],
        "licence": "CC-BY 4.0 (Materials Project)",
    }
    io.write_json(out_manifest, manifest)
    io.write_text(out_readme, readme(manifest))
    log.info("wrote %d rows (%s bytes) to %s; labels %s", len(chosen), f"{size:,}", out, counts)
    return manifest


def _metal_count(df: pd.DataFrame) -> int | None:
    col = next((c for c in df.columns if canonical_name(str(c)) == "is_metal"), None)
    if col is None:
        return None
    from tlcgcnn.data.ingest import _to_bool

    return int(df[col].map(_to_bool).astype("boolean").fillna(False).sum())


def _unit(column: str) -> str:
    name = canonical_name(column)
    if name is None:
        return (
            "id"
            if column in ID_COLUMNS
            else (
                "structure (CIF text)"
                if column == "cif"
                else ("structure (pymatgen JSON)" if column == "structure" else "")
            )
        )
    prop = PROPERTIES[name]
    unit = prop.unit or "dimensionless"
    return f"{unit}: {prop.description}" + (f" (canonical name {name})" if name != column else "")


def readme(manifest: dict[str, Any]) -> str:
    """The README of the subset folder: what it is, how it was selected, counts, units,
    how to rebuild it, licence and citations."""
    sel, src = manifest["selection"], manifest["source"]
    rows = "\n".join(f"| `{p}` | {n:,} |" for p, n in sorted(manifest["labels"].items()))
    cols = "\n".join(f"| `{c['column']}` | {c['unit']} |" for c in manifest["columns"])
    steps = "\n".join(
        f"| {s['step']} | {s['limit'] or 'all'} | {s['available']:,} | {s['taken']:,} |" for s in sel["steps"]
    )
    left = len(sel["left_out"])
    return f"""# {manifest["title"]}

`{manifest["file"]}`: {manifest["rows"]:,} real crystals (DFT, Materials Project) with their
structures ({manifest["structure_column"]} column) and labels; {manifest["bytes"]:,} bytes
(sha256 `{manifest["sha256"]}`). The default configuration (`config/config.yaml`) trains on it,
offline. Every row has {" and ".join(f"`{p}`" for p in sel["require"])}.

Made by the rule `embedded_subset` (`rules/embedded.smk`, module `tlcgcnn.data.embedded`) from
`{src["file"]}` ({src["rows"]:,} rows, sha256 `{src["sha256"]}`); `manifest.json` holds
everything below in machine-readable form.

## Selection (seed {sel["seed"]})

{sel["rule"]}.

| step | limit | available | taken |
|---|---|---|---|
{steps}

Eligible rows: {sel["eligible"]:,}. Rows left out because ingest would drop their structure: {left}.

## Labels (rows with a valid value)

| property | rows |
|---|---|
{rows}

Metals (`is_metal`): {manifest["metals"] if manifest["metals"] is not None else "no such column"}.

## Columns and units

| column | unit and meaning |
|---|---|
{cols}

## Rebuild

```
snakemake --cores 2 --config regenerate_embedded=True --forcerun embedded_subset -- {manifest["path"]}
```

(`config/README.md`, section `embedded`, has the settings; with the input file above and the
selection settings of `manifest.json` the rule remakes this table).

{LICENCE}"""


def check_committed(folder: str | Path) -> dict[str, Any]:
    """The manifest of a committed subset folder, checked against its table: sha256, byte
    size, row count and label counts. Raises :class:`EmbeddedError` naming what differs."""
    d = Path(folder)
    manifest = io.read_json(d / "manifest.json")
    table = d / manifest["file"]
    problems = []
    if io.sha256_file(table) != manifest["sha256"]:
        problems.append("sha256 differs")
    if table.stat().st_size != manifest["bytes"]:
        problems.append(f"{table.stat().st_size} bytes, manifest says {manifest['bytes']}")
    df = pd.read_parquet(table)
    if len(df) != manifest["rows"]:
        problems.append(f"{len(df)} rows, manifest says {manifest['rows']}")
    counts = label_counts(df)
    if counts != manifest["labels"]:
        problems.append(f"label counts {counts} vs manifest {manifest['labels']}")
    if problems:
        raise EmbeddedError(f"{table}: does not match {d / 'manifest.json'}: " + "; ".join(problems))
    return manifest


__all__ = ["EmbeddedError", "build", "check_committed", "label_counts", "readme", "select"]
