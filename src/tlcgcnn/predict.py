"""Predict a property for new crystals with one or more trained checkpoints.

Inputs are CIF files, folders of CIF files (``*.cif``; the file name without ``.cif`` is
the id), or tables (CSV, Parquet, JSON) with a ``cif`` or pymatgen ``structure`` column and,
optionally, an id column (else ``<file>:<row>`` is the id). Every structure goes through
the same validation as :mod:`tlcgcnn.ingest`; a dropped input is listed with its reason in
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

import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn import io
from tlcgcnn.ingest import ID_COLUMNS, STRUCTURE_COLUMNS, IngestError, IngestOptions, pick_column, read_input, validate_rows

log = logging.getLogger(__name__)

PROGRESS_MIN = 200  # show progress bars from this many crystals on
DROPPED_COLUMNS = ["input", "row", "material_id", "reason", "detail"]
STRUCTURE_OUT = ["material_id", "input", "formula", "nsites"]


class PredictError(ValueError):
    """Input that cannot be predicted at all (as opposed to rows that are dropped)."""


# --------------------------------------------------------------------------- inputs


def _cif_rows(files: Sequence[Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    rows, unreadable = [], []
    for f in files:
        try:
            text: str | None = f.read_text(errors="replace")
        except OSError as exc:
            unreadable.append({"input": str(f), "row": 1, "material_id": f.stem, "reason": "unreadable_file", "detail": str(exc)[:300]})
            continue
        rows.append({"material_id": f.stem, "structure": text, "input": str(f), "row": 1})
    return pd.DataFrame(rows, columns=["material_id", "structure", "input", "row"]), unreadable


def _table_rows(path: Path) -> pd.DataFrame:
    raw = read_input(path)
    if "_file" in raw.columns:  # read_input read a CIF folder with id_prop.csv
        raise PredictError(f"{path}: internal error: expected a table")
    st_col = pick_column(raw.columns, None, STRUCTURE_COLUMNS, "structure", str(path))
    id_col = next((c for c in ID_COLUMNS if c in raw.columns), None)
    n = len(raw)
    row = np.arange(1, n + 1)
    ids = raw[id_col].astype("string").to_numpy() if id_col else np.array([f"{path.name}:{i}" for i in row], dtype=object)
    return pd.DataFrame({"material_id": ids, "structure": raw[st_col].to_numpy(), "input": str(path), "row": row})


def read_structures(inputs: Sequence[str | Path], options: IngestOptions | None = None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate every input. Returns (canonical structures with ``input`` and
    ``row`` columns, dropped report with ``input, row, material_id, reason, detail``)."""
    options = options or IngestOptions()
    parts: list[pd.DataFrame] = []
    dropped: list[dict[str, Any]] = []
    if not inputs:
        raise PredictError("no input given (CIF files, CIF folders or tables)")
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            raise PredictError(f"{p}: input does not exist")
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".cif")
            if not files:
                raise PredictError(f"{p}: folder holds no .cif files")
            frame, bad = _cif_rows(files)
        elif p.suffix.lower() == ".cif":
            frame, bad = _cif_rows([p])
        else:
            try:
                frame, bad = _table_rows(p), []
            except IngestError as exc:
                raise PredictError(str(exc)) from None
        parts.append(frame)
        dropped.extend(bad)
    raw = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["material_id", "structure", "input", "row"])
    ids = raw["material_id"].astype("string").str.strip()
    keep, arrays, drops = validate_rows(raw["structure"], ids, raw["row"], "id", options, progress=progress and len(raw) >= PROGRESS_MIN)
    for d in drops:
        dropped.append({"input": raw.at[d["index"], "input"], "row": d["row"], "material_id": d["material_id"], "reason": d["reason"], "detail": d["detail"]})
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
    from tlcgcnn.featurize import neighbor_graph

    lattices, fracs, params = job
    out = []
    for lat, frac in zip(lattices, fracs, strict=True):
        g = neighbor_graph(np.asarray(lat, dtype=np.float64).reshape(3, 3), np.asarray(frac, dtype=np.float64).reshape(-1, 3), params)
        out.append((g.nbr_idx.astype(np.int64), g.nbr_dist.astype(np.float32)))
    return out


def build_graphs(structures: pd.DataFrame, params: Any, threads: int = 1, progress: bool = True, chunk_size: int = 128) -> Any:
    """A :class:`tlcgcnn.graphs.GraphSet` of the structures, built in memory exactly as the
    featurize stage builds its shards (:func:`tlcgcnn.featurize.neighbor_graph`)."""
    import torch
    from tqdm.auto import tqdm

    from tlcgcnn.graphs import GraphSet

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
    target: Any  # tlcgcnn.targets.Target
    params: Any  # tlcgcnn.featurize.FeaturizeParams


def load_models(paths: Sequence[str | Path]) -> list[LoadedModel]:
    """Load the checkpoints (on CPU) and check that they can be combined: the same
    featurization parameters and the same target, else :class:`CheckpointError`."""
    from tlcgcnn.checkpoint import CheckpointError, featurize_params, load_checkpoint, model_from_checkpoint
    from tlcgcnn.targets import Target

    if not paths:
        raise PredictError("no model given (--model M.pt)")
    out = []
    for p in paths:
        ckpt = load_checkpoint(p)
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


def _model_columns(lm: LoadedModel, graphs: Any, device: Any, batch_size: int, desc: str = "predict", progress: bool = True) -> dict[str, np.ndarray]:
    """One model's predictions, by output column, in each reported unit."""
    import torch
    from tqdm.auto import tqdm

    from tlcgcnn.normalize import normalizer_from_dict
    from tlcgcnn.targets import inverse_transform
    from tlcgcnn.train import predict as forward

    t = lm.target
    model = lm.model.to(device)
    positions = torch.arange(len(graphs), device=device)
    parts = []
    with tqdm(total=len(graphs), desc=desc, unit="crystal", disable=not progress or len(graphs) < PROGRESS_MIN, mininterval=1.0) as bar:
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


def predict_frame(models: Sequence[LoadedModel], graphs: Any, device: str = "auto", batch_size: int = 512, progress: bool = True) -> pd.DataFrame:
    """Mean (and with two or more models the sample std) of each output column."""
    from tlcgcnn.device import pick_device

    dev = pick_device(device)
    on_dev = graphs.to(dev)
    per_model = [
        _model_columns(lm, on_dev, dev, batch_size, desc=f"predict {k + 1}/{len(models)}", progress=progress) for k, lm in enumerate(models)
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
    from tlcgcnn.properties import units_of as prop_units

    t = models[0].target
    out: dict[str, str] = {}
    for prop in (list(t.properties) if t.task == "multitask" and t.properties else [t.property]):
        if t.task == "classification":
            out[f"{prop}_probability"] = "probability"
            continue
        unit = prop_units(prop)
        out[prop] = unit
        if t.transform != "none":
            out[f"{t.transform}_{prop}"] = f"{t.transform}({unit})" if unit else t.transform
    return out


# --------------------------------------------------------------------------- entry point


def default_dropped_path(out: str | Path) -> Path:
    """``predictions.csv`` -> ``predictions.dropped.csv`` next to it."""
    p = Path(out)
    name = p.name
    for suffix in (".csv.gz", ".csv"):
        if name.lower().endswith(suffix):
            return p.with_name(name[: -len(suffix)] + ".dropped" + name[-len(suffix) :])
    return p.with_name(name + ".dropped.csv")


def run(
    models: Sequence[str | Path],
    inputs: Sequence[str | Path],
    out: str | Path,
    dropped: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 512,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every valid input crystal with the models; write the predictions and the
    dropped report. Returns a summary (counts, output columns and their units)."""
    import torch

    torch.set_num_threads(max(1, threads))
    loaded = load_models(models)  # first: a bad checkpoint fails before any parsing
    params = loaded[0].params
    structures, report = read_structures(inputs, IngestOptions(threads=threads), progress=progress)
    dropped_path = Path(dropped) if dropped is not None else default_dropped_path(out)
    if len(structures) == 0:
        io.write_csv(report, dropped_path)
        raise PredictError(f"no valid crystal among the inputs; {len(report)} dropped, reasons in {dropped_path}")
    graphs = build_graphs(structures, params, threads=threads, progress=progress)
    preds = predict_frame(loaded, graphs, device=device, batch_size=batch_size, progress=progress)
    result = pd.concat([structures[STRUCTURE_OUT].reset_index(drop=True), preds], axis=1)
    io.write_csv(result, out)
    io.write_csv(report, dropped_path)
    summary = {
        "predicted": len(result),
        "dropped": len(report),
        "dropped_by_reason": report["reason"].value_counts().to_dict(),
        "models": [lm.path for lm in loaded],
        "target": loaded[0].target.name,
        "units": units_of(loaded),
        "columns": list(preds.columns),
        "out": str(out),
        "dropped_report": str(dropped_path),
    }
    log.info("predicted %d crystals (%d dropped) with %d model(s) -> %s", len(result), len(report), len(loaded), out)
    return summary
