"""Predict a property for new crystals with one or more trained checkpoints.

Inputs are structure files (CIF, POSCAR, extended XYZ) and folders of them (the id is the
file name without its suffix; read by :mod:`tlcgcnn.data.inputs`), tables (CSV, Parquet,
JSON) with a structure column (CIF, POSCAR or extended-XYZ text, or pymatgen JSON) and,
optionally, an id column (else ``<file>:<row>`` is the id), and in-memory pymatgen
``Structure`` or ASE ``Atoms`` objects (``structure:<i>``). Every structure goes through
the same validation as :mod:`tlcgcnn.data.ingest`; a dropped input is listed with its reason in
the dropped report, never skipped silently.

Graphs are built in memory with the featurization parameters stored in the checkpoint (all
models must share them). Outputs are in the property's own units:

* regression: ``<property>``; a log10 target also as ``log10_<property>``;
* classification: ``<property>_probability`` (of the positive class);
* multi-task: the same per property.

With several models (e.g. the seeds of a cell) each column is the mean over the models and
``<column>_std`` their sample standard deviation (ddof = 1), an uncertainty in the column's
own units. For a log10 target both units are averaged separately: ``k_vrh`` is the mean of
the models' 10**y, not 10 to the mean of y.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.data import inputs
from tlcgcnn.data.ingest import ID_COLUMNS, STRUCTURE_COLUMNS, IngestError, IngestOptions, pick_column, validate_rows
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

PROGRESS_MIN = 200  # show progress bars from this many crystals on
DROPPED_COLUMNS = ["input", "row", "material_id", "reason", "detail"]
STRUCTURE_OUT = ["material_id", "input", "formula", "nsites"]


class PredictError(ValueError):
    """Input that cannot be predicted at all (as opposed to rows that are dropped)."""


# --------------------------------------------------------------------------- inputs


def _file_rows(path: Path) -> pd.DataFrame:
    """Rows of a structure file or folder (CIF, POSCAR, extended XYZ; an id_prop.csv folder's
    labels are not needed to predict and are left out)."""
    try:
        raw = inputs.read_input(path)
    except inputs.InputError as exc:
        raise PredictError(str(exc)) from None
    return pd.DataFrame(
        {
            "material_id": raw["material_id"].astype("string").to_numpy(),
            "structure": raw["structure"].to_numpy(),
            "input": raw["_file"].to_numpy(),
            "row": raw["_line"].to_numpy(),
        }
    )


def _table_rows(path: Path) -> pd.DataFrame:
    try:
        raw = inputs.read_table(path)
        st_col = pick_column(raw.columns, None, STRUCTURE_COLUMNS, "structure", str(path))
    except (inputs.InputError, IngestError) as exc:
        raise PredictError(str(exc)) from None
    id_col = next((c for c in ID_COLUMNS if c in raw.columns), None)
    n = len(raw)
    row = np.arange(1, n + 1)
    ids = (
        raw[id_col].astype("string").to_numpy() if id_col else np.array([f"{path.name}:{i}" for i in row], dtype=object)
    )
    return pd.DataFrame({"material_id": ids, "structure": raw[st_col].to_numpy(), "input": str(path), "row": row})


def _object_rows(objects: Sequence[Any], start: int) -> pd.DataFrame:
    """Rows of in-memory structures (pymatgen ``Structure`` or ASE ``Atoms``): the id is the
    position in the list given to :meth:`tlcgcnn.api.Model.predict` (``structure:<i>``)."""
    ids = [f"structure:{start + k}" for k in range(len(objects))]
    return pd.DataFrame(
        {
            "material_id": ids,
            "structure": list(objects),
            "input": "<memory>",
            "row": np.arange(start, start + len(objects)),
        }
    )


def is_structure_object(value: Any) -> bool:
    """A pymatgen ``Structure`` or an ASE ``Atoms`` (not a path)."""
    return type(value).__name__ in ("Structure", "IStructure", "Atoms") and not isinstance(value, (str, Path))


def read_structures(
    inputs_: Sequence[Any], options: IngestOptions | None = None, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate every input: paths (structure files, folders, tables) and in-memory
    structures. Returns (canonical structures with ``input`` and ``row`` columns, dropped
    report with ``input, row, material_id, reason, detail``)."""
    options = options or IngestOptions()
    parts: list[pd.DataFrame] = []
    if not inputs_:
        raise PredictError("no input given (structure files, folders or tables)")
    n_objects = 0
    for is_object, group in itertools.groupby(inputs_, key=is_structure_object):  # the order given is kept
        items = list(group)
        if is_object:
            parts.append(_object_rows(items, n_objects))
            n_objects += len(items)
            continue
        for inp in items:
            if not isinstance(inp, (str, Path)):
                raise PredictError(f"{type(inp).__name__} is not a structure (pymatgen Structure, ASE Atoms) or a path")
            p = Path(inp)
            if not p.exists():
                raise PredictError(f"{p}: input does not exist")
            parts.append(_file_rows(p) if p.is_dir() or inputs.structure_kind(p) else _table_rows(p))
    raw = pd.concat(parts, ignore_index=True)
    dropped: list[dict[str, Any]] = []
    ids = raw["material_id"].astype("string").str.strip()
    keep, arrays, drops = validate_rows(
        raw["structure"], ids, raw["row"], "id", options, progress=progress and len(raw) >= PROGRESS_MIN
    )
    for d in drops:
        dropped.append(
            {
                "input": raw.at[d["index"], "input"],
                "row": d["row"],
                "material_id": d["material_id"],
                "reason": d["reason"],
                "detail": d["detail"],
            }
        )
    kept = raw.index[keep]
    records = [arrays[i] for i in kept]
    out = pd.DataFrame(
        {
            "material_id": ids[kept].astype(str).to_numpy(),
            "input": raw.loc[kept, "input"].to_numpy(),
            "row": raw.loc[kept, "row"].to_numpy(),
            "formula": [r["formula"] for r in records],
            "nsites": np.asarray([r["nsites"] for r in records], dtype=np.int64),
            "lattice": [r["lattice"] for r in records],
            "atomic_numbers": [r["atomic_numbers"] for r in records],
            "frac_coords": [r["frac_coords"] for r in records],
        }
    )
    report = pd.DataFrame(dropped, columns=DROPPED_COLUMNS)
    return out, report


# --------------------------------------------------------------------------- graphs


def _graph_chunk(job: tuple[list[np.ndarray], list[np.ndarray], Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    from tlcgcnn.features.featurize import neighbor_graph

    lattices, fracs, params = job
    out = []
    for lat, frac in zip(lattices, fracs, strict=True):
        g = neighbor_graph(
            np.asarray(lat, dtype=np.float64).reshape(3, 3), np.asarray(frac, dtype=np.float64).reshape(-1, 3), params
        )
        out.append((g.nbr_idx.astype(np.int64), g.nbr_dist.astype(np.float32)))
    return out


def build_graphs(
    structures: pd.DataFrame, params: Any, threads: int = 1, progress: bool = True, chunk_size: int = 128
) -> Any:
    """A :class:`tlcgcnn.nn.graphs.GraphSet` of the structures, built in memory exactly as the
    featurize stage builds its shards (:func:`tlcgcnn.features.featurize.neighbor_graph`)."""
    import torch
    from tqdm.auto import tqdm

    from tlcgcnn.nn.graphs import GraphSet

    n = len(structures)
    lat, frac = list(structures["lattice"]), list(structures["frac_coords"])
    jobs = [(lat[a : a + chunk_size], frac[a : a + chunk_size], params) for a in range(0, n, chunk_size)]
    bar = tqdm(total=n, desc="build graphs", unit="crystal", disable=not progress or n < PROGRESS_MIN, mininterval=1.0)
    results: list[tuple[np.ndarray, np.ndarray]] = []
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.extend(_graph_chunk(job))
            bar.update(len(job[0]))
    else:
        with ProcessPoolExecutor(max_workers=threads) as pool:
            for part in pool.map(_graph_chunk, jobs):
                results.extend(part)
                bar.update(len(part))
    bar.close()
    counts = structures["nsites"].to_numpy(dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    m = params.max_neighbors
    z = np.concatenate(list(structures["atomic_numbers"])).astype(np.int64) if n else np.zeros(0, np.int64)
    return GraphSet(
        ids=structures["material_id"].astype(str).to_numpy(),
        z=torch.from_numpy(z),
        nbr_idx=torch.from_numpy(np.concatenate([r[0] for r in results]) if n else np.zeros((0, m), np.int64)),
        nbr_dist=torch.from_numpy(np.concatenate([r[1] for r in results]) if n else np.zeros((0, m), np.float32)),
        offsets=torch.from_numpy(offsets),
    )


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    path: str
    ckpt: dict[str, Any]
    model: Any  # torch.nn.Module
    target: Any  # tlcgcnn.data.targets.Target
    params: Any  # tlcgcnn.features.featurize.FeaturizeParams


def load_models(paths: Sequence[str | Path]) -> list[LoadedModel]:
    """Load the checkpoints (on CPU) and check that they can be combined: the same
    featurization parameters and the same target, else :class:`CheckpointError`."""
    from tlcgcnn.data.targets import Target
    from tlcgcnn.train.checkpoint import CheckpointError, featurize_params, load_checkpoint, model_from_checkpoint

    if not paths:
        raise PredictError("no model given (--model M.pt)")
    from tlcgcnn.data.properties import register_specs

    out = []
    for p in paths:
        ckpt = load_checkpoint(p)
        register_specs(ckpt.get("property_specs"))  # a user's own property: its units
        target = Target(**ckpt["target"])
        out.append(LoadedModel(str(p), ckpt, model_from_checkpoint(ckpt, p), target, featurize_params(ckpt, p)))
    first = out[0]
    for other in out[1:]:
        if other.params != first.params:
            raise CheckpointError(
                f"{other.path}: built its graphs with {other.params}, but {first.path} with {first.params}; "
                "models given together must share featurization parameters"
            )
        a = (first.target.property, first.target.transform, first.target.task, first.target.properties)
        b = (other.target.property, other.target.transform, other.target.task, other.target.properties)
        if a != b:
            raise CheckpointError(
                f"{other.path}: predicts (property, transform, task, properties) = {b}, but {first.path} predicts {a}; "
                "models given together must share their target"
            )
    return out


def _model_columns(
    lm: LoadedModel, graphs: Any, device: Any, batch_size: int, desc: str = "predict", progress: bool = True
) -> dict[str, np.ndarray]:
    """One model's predictions, by output column, in each reported unit."""
    import torch
    from tqdm.auto import tqdm

    from tlcgcnn.data.targets import inverse_transform
    from tlcgcnn.nn.normalize import normalizer_from_dict
    from tlcgcnn.train.loop import predict as forward

    t = lm.target
    model = lm.model.to(device)
    positions = torch.arange(len(graphs), device=device)
    parts = []
    with tqdm(
        total=len(graphs),
        desc=desc,
        unit="crystal",
        disable=not progress or len(graphs) < PROGRESS_MIN,
        mininterval=1.0,
    ) as bar:
        for chunk in positions.split(batch_size):  # one batch per call: eval-mode outputs do not depend on batching
            parts.append(forward(model, graphs, chunk, batch_size))
            bar.update(chunk.numel())
    raw = torch.cat(parts)
    normalizer = normalizer_from_dict(lm.ckpt["normalizer"])
    if t.task == "classification":
        return {f"{t.property}_probability": torch.sigmoid(raw.squeeze(-1)).double().cpu().numpy()}
    if t.task == "multitask" and t.properties:
        y = normalizer.denorm(raw).double().cpu().numpy()
        props = list(t.properties)
    else:
        y = normalizer.denorm(raw.squeeze(-1)).double().cpu().numpy()[:, None]
        props = [t.property]
    cols: dict[str, np.ndarray] = {}
    for j, prop in enumerate(props):
        if t.transform == "none":
            cols[prop] = y[:, j]
        else:
            cols[f"{t.transform}_{prop}"] = y[:, j]
            cols[prop] = inverse_transform(y[:, j], t.transform)
    return cols


def predict_frame(
    models: Sequence[LoadedModel], graphs: Any, device: str = "auto", batch_size: int = 512, progress: bool = True
) -> pd.DataFrame:
    """Mean (and with two or more models the sample std) of each output column."""
    from tlcgcnn.train.device import pick_device

    dev = pick_device(device)
    on_dev = graphs.to(dev)
    per_model = [
        _model_columns(lm, on_dev, dev, batch_size, desc=f"predict {k + 1}/{len(models)}", progress=progress)
        for k, lm in enumerate(models)
    ]
    out = pd.DataFrame(index=range(len(graphs)))
    for col in per_model[0]:
        stack = np.stack([pm[col] for pm in per_model])
        out[col] = stack.mean(axis=0)
        if len(models) >= 2:
            out[f"{col}_std"] = stack.std(axis=0, ddof=1)
    return out


def units_of(models: Sequence[LoadedModel]) -> dict[str, str]:
    """Units of each output column (empty for dimensionless values and probabilities)."""
    from tlcgcnn.data.properties import units_of as prop_units

    t = models[0].target
    out: dict[str, str] = {}
    for prop in list(t.properties) if t.task == "multitask" and t.properties else [t.property]:
        if t.task == "classification":
            out[f"{prop}_probability"] = "probability"
            continue
        unit = prop_units(prop)
        out[prop] = unit
        if t.transform != "none":
            out[f"{t.transform}_{prop}"] = f"{t.transform}({unit})" if unit else t.transform
    return out


# --------------------------------------------------------------------------- entry point


OUTPUT_FORMATS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}


def output_format(path: str | Path) -> str:
    """The table format an output name asks for (csv, parquet, json); any other suffix is
    refused before any work is done."""
    name = Path(path).name.lower()
    for suffix, fmt in sorted(OUTPUT_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise PredictError(f"{path}: unknown output format; name it .csv, .csv.gz, .parquet or .json")


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` atomically in the format its suffix names (:func:`output_format`)."""
    fmt = output_format(path)
    if fmt == "csv":
        io.write_csv(df, path)
    elif fmt == "parquet":
        io.write_parquet(df, path)
    else:
        io.write_text(path, df.to_json(orient="records", indent=1, double_precision=15))


def strict_device(name: str) -> Any:
    """The torch device for ``name`` (auto, cpu, cuda, cuda:N, mps); asking for one this
    machine does not have is an error, not a silent fall-back."""
    import torch

    from tlcgcnn.train.device import pick_device

    if name != "auto":
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise PredictError(
                f"--device {name}: torch {torch.__version__} sees no CUDA device here; use --device cpu or auto"
            )
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PredictError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise PredictError(f"--device {name}: MPS is not available here; use --device cpu or auto")
    return pick_device(name)


def default_dropped_path(out: str | Path) -> Path:
    """``predictions.csv`` -> ``predictions.dropped.csv`` next to it."""
    p = Path(out)
    name = p.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq", ".json"):
        if name.lower().endswith(suffix):
            return p.with_name(name[: -len(suffix)] + ".dropped.csv")
    return p.with_name(name + ".dropped.csv")


def run(
    models: Sequence[str | Path],
    inputs_: Sequence[str | Path],
    out: str | Path,
    dropped: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 512,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """``tlcgcnn predict``: :meth:`tlcgcnn.api.Model.predict` of the models (zoo names,
    checkpoints, folders of seeds) on the inputs; writes the predictions in the format of
    ``out``'s suffix and the dropped report. Returns a summary (counts, columns, units)."""
    from tlcgcnn.api import load_model

    output_format(out)  # refuse an unknown format before any work
    strict_device(device)
    model = load_model(list(models))  # a bad checkpoint fails before any parsing
    dropped_path = Path(dropped) if dropped is not None else default_dropped_path(out)
    try:
        result = model.predict(list(inputs_), device=device, batch_size=batch_size, threads=threads, progress=progress)
    except PredictError as exc:
        report = getattr(exc, "dropped", None)
        if report is not None:
            io.write_csv(report, dropped_path)
            raise PredictError(
                f"no valid crystal among the inputs; {len(report)} dropped, reasons in {dropped_path}"
            ) from None
        raise
    report = result.attrs.pop("dropped")
    write_table(result, out)
    io.write_csv(report, dropped_path)
    summary = {
        "predicted": len(result),
        "dropped": len(report),
        "dropped_by_reason": report["reason"].value_counts().to_dict(),
        "models": [str(p) for p in model.paths],
        "target": model.target.name,
        "units": model.units,
        "interval": bool(model.calibration),
        "columns": [c for c in result.columns if c not in STRUCTURE_OUT],
        "out": str(out),
        "dropped_report": str(dropped_path),
    }
    log.info(
        "predicted %d crystals (%d dropped) with %d model(s) -> %s", len(result), len(report), len(model.paths), out
    )
    return summary
