"""The structure inputs materials scientists have, read into one raw table.

Accepted (:func:`read_input`):

* a **table** (``.csv[.gz]``, ``.parquet``, ``.json``, ``.jsonl``) with an id column and a
  structure column whose cells hold CIF text, POSCAR text, extended-XYZ text or a pymatgen
  ``Structure.as_dict()`` (a dict or its JSON string);
* a **CIF folder with** ``id_prop.csv`` (the convention of txie-93/cgcnn): rows ``id,value``
  without a header, or a header row naming the id column and one or more label columns;
  each id's structure is ``<id>.cif`` (or ``<id>`` with another structure suffix below);
* a **folder of structure files** (``*.cif``, ``POSCAR*`` / ``CONTCAR*`` / ``*.vasp`` /
  ``*.poscar``, ``*.xyz`` / ``*.extxyz``; the id is the file name without its suffix, a
  multi-frame extended-XYZ file gives ``<stem>:<frame>`` unless a frame names its own
  ``material_id`` or ``id``) plus a **labels CSV**: the folder's only other ``.csv``, or the
  one given as ``labels``, with an id column matching the file ids and label columns.

The raw table has ``material_id``, ``structure`` (text or dict, parsed later by
:func:`parse_structure`, which recognises each format by its content), the label columns,
``_file`` (where the structure came from) and ``_line`` (the row a user looks up: the
labels file's line, or 1 for a structure file). A label row whose structure file is absent
keeps an empty structure, so ingest lists it as ``missing_structure`` instead of losing it;
a structure file without a label row is kept unlabelled.

:func:`input_sha256` hashes a file or a whole folder (sorted relative names and contents),
the provenance of a run's data; :func:`input_columns` reads only a table's header, so that a
configuration can be checked against its data while Snakemake parses the workflow.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

ID_COLUMNS = ("material_id", "id", "mp_id", "task_id", "entry_id")
STRUCTURE_COLUMNS = ("cif", "structure", "poscar", "extxyz", "xyz")
TABLE_SUFFIXES = (
    ".csv",
    ".csv.gz",
    ".csv.bz2",
    ".csv.xz",
    ".parquet",
    ".pq",
    ".json",
    ".json.gz",
    ".jsonl",
    ".jsonl.gz",
)
CIF_SUFFIXES = (".cif",)
POSCAR_SUFFIXES = (".vasp", ".poscar")
XYZ_SUFFIXES = (".xyz", ".extxyz")
POSCAR_NAMES = re.compile(r"^(POSCAR|CONTCAR)([._-].*)?$", re.IGNORECASE)
ID_PROP = "id_prop.csv"


class InputError(ValueError):
    """Input that cannot be read at all (as opposed to rows that are dropped later)."""


# --------------------------------------------------------------------------- what a path is


def is_table(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(TABLE_SUFFIXES)


def structure_kind(path: Path) -> str | None:
    """``cif``, ``poscar`` or ``xyz`` for a structure file name, else None."""
    name = path.name.lower()
    if name.endswith(CIF_SUFFIXES):
        return "cif"
    if name.endswith(POSCAR_SUFFIXES) or POSCAR_NAMES.match(path.name):
        return "poscar"
    if name.endswith(XYZ_SUFFIXES):
        return "xyz"
    return None


def file_id(path: Path) -> str:
    """The id of a structure file: its name without the structure suffix (``POSCAR_mp-1``
    -> ``mp-1``; a bare ``POSCAR`` keeps its name)."""
    m = POSCAR_NAMES.match(path.name)
    if m and m.group(2):
        return m.group(2)[1:]
    return path.stem if path.suffix else path.name


def structure_files(folder: Path) -> list[Path]:
    """The structure files of a folder (not recursive), sorted by name."""
    return sorted((f for f in folder.iterdir() if f.is_file() and structure_kind(f)), key=lambda f: f.name)


# --------------------------------------------------------------------------- reading


def read_input(path: str | Path, labels: str | Path | None = None) -> pd.DataFrame:
    """Read a table, a CIF folder with ``id_prop.csv`` or a folder of structure files (with
    ``labels``, or the folder's only other CSV, as the labels file) into the raw table."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: input does not exist")
    if p.is_dir():
        if labels is None and (p / ID_PROP).is_file():
            return read_id_prop_folder(p)
        return read_structure_folder(p, labels)
    if labels is not None:
        raise InputError(f"{p}: a labels file goes with a folder of structure files, not with a table")
    if structure_kind(p):
        return read_structure_files([p])
    return read_table(p)


def read_table(p: Path) -> pd.DataFrame:
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz")):
            # ids stay text: "1e5" or a hex id must not become a number
            return pd.read_csv(p, low_memory=False, dtype={c: str for c in ID_COLUMNS})
        if name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")):
            return pd.read_json(p, lines=".jsonl" in name, dtype={c: str for c in ID_COLUMNS})
    except (ValueError, OSError) as exc:
        raise InputError(f"{p}: cannot read table: {exc}") from exc
    raise InputError(
        f"{p}: unsupported input (expected a table: .csv[.gz], .parquet, .json; a structure file: .cif, POSCAR, "
        ".vasp, .xyz/.extxyz; or a folder of them)"
    )


def _has_header(first: list[str]) -> bool:
    """An ``id_prop.csv`` row is a header when its label fields are not numbers."""
    for value in first[1:]:
        try:
            float(value)
        except ValueError:
            return True
    return False


def _first_row(id_prop: Path) -> list[str]:
    """The first row of an ``id_prop.csv`` as stripped text ([] for an empty file)."""
    try:
        first = pd.read_csv(id_prop, header=None, nrows=1, dtype=str)
    except pd.errors.EmptyDataError:
        return []
    return first.iloc[0].astype(str).str.strip().tolist() if len(first) else []


def _folder_csvs(folder: Path) -> list[Path]:
    """The CSV files of a folder (candidates for its labels file), sorted by name."""
    return sorted(f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith((".csv", ".csv.gz")))


def read_id_prop_folder(folder: Path) -> pd.DataFrame:
    """cgcnn's layout: ``id_prop.csv`` (``id,value`` rows, header optional) and ``<id>.cif``."""
    id_prop = folder / ID_PROP
    first = _first_row(id_prop)
    if not first:
        raise InputError(f"{id_prop}: empty (expected rows id,value)")
    if len(first) < 2:
        raise InputError(f"{id_prop}: expected at least two columns (id,value), found {len(first)}")
    header = _has_header(first)
    if header:
        props = pd.read_csv(id_prop, dtype={first[0]: str})
        props = props.rename(columns={first[0]: "material_id"})
        start = 2
    else:
        props = pd.read_csv(id_prop, header=None, dtype={0: str})
        names = ["material_id", "target", *(f"target_{k}" for k in range(2, props.shape[1]))]
        props.columns = names
        start = 1
    # the structure of each id; where <id>.cif and another file of that id both exist, the CIF
    files = {file_id(f): f for f in sorted(structure_files(folder), key=lambda f: structure_kind(f) == "cif")}
    rows = []
    for i, rec in enumerate(props.to_dict("records"), start=start):
        cid = str(rec.pop("material_id")).strip()
        f = files.get(cid)
        rows.append(
            {
                "material_id": cid,
                "structure": _read_text(f) if f else None,
                "_file": str(f if f else folder / f"{cid}.cif"),
                "_line": i,
                **rec,
            }
        )
    out = pd.DataFrame(rows)
    out.attrs["unnamed_target"] = not header
    out.attrs["labels_file"] = str(id_prop)
    return out


def read_structure_folder(folder: Path, labels: str | Path | None = None) -> pd.DataFrame:
    """A folder of structure files and, optionally, a labels CSV keyed by file id."""
    files = structure_files(folder)
    if not files:
        raise InputError(
            f"{folder}: no structure files (.cif, POSCAR*/CONTCAR*, .vasp, .poscar, .xyz, .extxyz) and no {ID_PROP}"
        )
    structures = read_structure_files(files)
    if labels is None:
        csvs = _folder_csvs(folder)
        if len(csvs) > 1:
            raise InputError(
                f"{folder}: several CSV files ({[c.name for c in csvs]}); "
                "name the labels file (dataset.labels or --labels)"
            )
        labels = csvs[0] if csvs else None
    if labels is None:
        return structures
    return _join_labels(structures, Path(labels))


def _join_labels(structures: pd.DataFrame, labels: Path) -> pd.DataFrame:
    if not labels.is_file():
        raise InputError(f"{labels}: labels file does not exist")
    table = read_table(labels)
    id_col = next((c for c in ID_COLUMNS if c in table.columns), None)
    if id_col is None:
        raise InputError(f"{labels}: no id column (looked for {list(ID_COLUMNS)}); columns are {list(table.columns)}")
    table = table.rename(columns={id_col: "material_id"})
    table["material_id"] = table["material_id"].astype(str).str.strip()
    table["_line"] = range(2, len(table) + 2)
    clash = [c for c in table.columns if c in ("structure", "_file")]
    if clash:
        raise InputError(f"{labels}: a labels file holds labels, not {clash}")
    known = dict(zip(structures["material_id"], structures.index, strict=False))
    rows = []
    for rec in table.to_dict("records"):
        pos = known.pop(rec["material_id"], None)
        if pos is None:  # a label without a structure file: listed as missing_structure by ingest
            rows.append({**rec, "structure": None, "_file": str(labels)})
        else:
            s = structures.loc[pos]
            rows.append({**rec, "structure": s["structure"], "_file": s["_file"]})
    for pos in known.values():  # structure files without a label row: kept, unlabelled
        s = structures.loc[pos]
        rows.append(
            {"material_id": s["material_id"], "structure": s["structure"], "_file": s["_file"], "_line": s["_line"]}
        )
    out = pd.DataFrame(rows)
    out.attrs["labels_file"] = str(labels)
    return out


def read_structure_files(files: list[Path]) -> pd.DataFrame:
    """One row per structure (one per frame of a multi-frame extended-XYZ file)."""
    rows: list[dict[str, Any]] = []
    for f in files:
        text = _read_text(f)
        if structure_kind(f) == "xyz" and text is not None:
            frames = split_xyz_frames(text)
            for k, (frame_id, frame) in enumerate(frames):
                fid = frame_id or (file_id(f) if len(frames) == 1 else f"{file_id(f)}:{k}")
                rows.append({"material_id": fid, "structure": frame, "_file": str(f), "_line": k + 1})
        else:
            rows.append({"material_id": file_id(f), "structure": text, "_file": str(f), "_line": 1})
    return pd.DataFrame(rows, columns=["material_id", "structure", "_file", "_line"])


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


_XYZ_ID = re.compile(r"""(?:^|\s)(?:material_id|id)=(?:"([^"]*)"|(\S+))""")


def split_xyz_frames(text: str) -> list[tuple[str | None, str]]:
    """The frames of an (extended) XYZ text, each with the id its comment line names, if any.
    A frame whose atom count is not a number ends the split: the rest is one (unparsable)
    frame, so the error reaches the dropped report."""
    lines = text.splitlines()
    frames: list[tuple[str | None, str]] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except (ValueError, IndexError):
            frames.append((None, "\n".join(lines[i:])))
            break
        comment = lines[i + 1] if i + 1 < len(lines) else ""
        m = _XYZ_ID.search(comment)
        frames.append(((m.group(1) or m.group(2)) if m else None, "\n".join(lines[i : i + n + 2]) + "\n"))
        i += n + 2
    return frames or [(None, text)]


# --------------------------------------------------------------------------- parsing


def structure_format(value: Any) -> str:
    """Which format a structure cell holds: ``json``, ``cif``, ``xyz`` or ``poscar``."""
    if isinstance(value, dict):
        return "json"
    text = str(value).lstrip()
    if text.startswith("{"):
        return "json"
    head = text[:4000]
    if re.search(r"^\s*data_", head, re.MULTILINE) and "_cell_length" in head:
        return "cif"
    first = text.split("\n", 2)
    if len(first) >= 2 and first[0].strip().isdigit():
        return "xyz"
    return "poscar"


def parse_structure(value: Any) -> Any:
    """A pymatgen ``Structure`` from CIF, POSCAR or extended-XYZ text, a pymatgen dict or its
    JSON, an ASE ``Atoms`` or a ``Structure`` itself."""
    from pymatgen.core import Structure

    if isinstance(value, Structure):
        return value
    if type(value).__name__ == "Atoms":
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(value)
    kind = structure_format(value)
    if kind == "json":
        return Structure.from_dict(value if isinstance(value, dict) else json.loads(str(value)))
    text = str(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "cif":
            from pymatgen.io.cif import CifParser

            structures = CifParser.from_str(text, occupancy_tolerance=1.0).parse_structures(
                primitive=False, on_error="raise"
            )
            if not structures:
                raise ValueError("CIF holds no structure")
            return structures[0]
        if kind == "xyz":
            return _from_extxyz(text)
        from pymatgen.io.vasp import Poscar

        try:
            return Poscar.from_str(text, read_velocities=False).structure
        except Exception as exc:
            raise ValueError(f"neither CIF, POSCAR, extended XYZ nor pymatgen JSON (as POSCAR: {exc})") from None


def _from_extxyz(text: str) -> Any:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = ase.io.read(_io.StringIO(text), format="extxyz", index=0)
    if not atoms.cell.rank == 3 or not all(atoms.pbc):
        raise ValueError("extended XYZ frame without a full periodic Lattice= (a molecule, not a crystal)")
    return AseAtomsAdaptor.get_structure(atoms)


# --------------------------------------------------------------------------- provenance


def input_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder: every file below it, in sorted relative-name order,
    hashed as its name and its contents (renaming a file changes the hash; mtimes do not)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if not p.is_dir():
        raise InputError(f"{p}: input does not exist")
    for f in sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: f.relative_to(p).as_posix()):
        rel = f.relative_to(p).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue  # hidden files (.DS_Store, editor swap files) are not data
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def input_columns(path: str | Path, labels: str | Path | None = None) -> list[str] | None:
    """The label-bearing column names of an input, reading as little as possible (a CSV's
    header, a Parquet schema, a labels file's header); None where that is not cheap (JSON)
    or the input does not exist yet (a download)."""
    p = Path(path)
    if not p.exists():
        return None
    if p.is_dir():
        if labels is None and (p / ID_PROP).is_file():
            row = _first_row(p / ID_PROP)
            return row if row and _has_header(row) else ["material_id", "target"]
        if labels is None:
            csvs = _folder_csvs(p)
            if len(csvs) != 1:
                return [] if not csvs else None
            labels = csvs[0]
        return input_columns(labels)
    name = p.name.lower()
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz")):
        return [str(c) for c in pd.read_csv(p, nrows=0).columns]
    if name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return list(pq.read_schema(p).names)
    return None
