"""Evaluation on outside labelled sets (config ``external:``).

An external set is ingested and featurized by the main data set's own stages (same
validation, same graph parameters). Three steps are its own:

* :func:`overlap`: which external materials also occur in the main table, by the same id
  or by the same structure (pymatgen's ``StructureMatcher``, compared only between
  structures of the same reduced formula, so that it stays fast);
* :func:`evaluate_target`: every seed model of every graph-model cell of a target predicts
  the set; a material is flagged ``in_training`` when it, or a structure matching it, is
  among that model's training or validation ids, and the MAE is reported over all labelled
  materials and without the flagged ones;
* :func:`collect`: one table of every (external set, target, size, mode, seed) with the
  external MAE next to the internal test MAE, and one table of all predictions.

Errors are in the target's units (log10 units for a log10 target, as the internal test
MAE); ``mae_external_original_units`` gives the property's own units for a transformed target.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

LEAD_COLUMNS = [
    "external",
    "target",
    "size",
    "mode",
    "seed",
    "n_external",
    "n_in_training",
    "mae_external",
    "mae_external_no_overlap",
    "mae_test",
]
PREDICTION_COLUMNS = ["external", "target", "size", "mode", "seed", "material_id", "y_true", "y_pred", "in_training"]


# --------------------------------------------------------------------------- overlap


def overlap(external_table: str | Path, main_table: str | Path, out: str | Path) -> pd.DataFrame:
    """For each external material, the main-table ids that are the same material: the same
    id, and every main structure of the same reduced formula that ``StructureMatcher``
    (pymatgen defaults) matches. Writes ``material_id, formula, same_id, n_matches, matches``."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from tlcgcnn.data import table

    cols = ["material_id", "formula", "nsites", "lattice", "atomic_numbers", "frac_coords"]
    ext = table.read(external_table, columns=cols)
    main = table.read(main_table, columns=cols)
    main_ids = set(main["material_id"].astype(str))
    by_formula = {f: grp for f, grp in main.groupby("formula", sort=False)}
    matcher = StructureMatcher()
    cache: dict[str, Any] = {}

    def main_structure(row: Any) -> Any:
        mid = str(row["material_id"])
        if mid not in cache:
            cache[mid] = table.to_structure(row)
        return cache[mid]

    rows, compared = [], 0
    for r in ext.to_dict("records"):
        mid = str(r["material_id"])
        matches = [mid] if mid in main_ids else []
        cands = by_formula.get(r["formula"])
        if cands is not None:
            s = table.to_structure(r)
            for c in cands.to_dict("records"):
                if str(c["material_id"]) == mid:
                    continue
                compared += 1
                if matcher.fit(s, main_structure(c)):
                    matches.append(str(c["material_id"]))
        rows.append(
            {
                "material_id": mid,
                "formula": r["formula"],
                "same_id": mid in main_ids,
                "n_matches": len(matches),
                "matches": matches,
            }
        )
    df = pd.DataFrame(rows, columns=["material_id", "formula", "same_id", "n_matches", "matches"])
    io.write_parquet(df, out)
    log.info(
        "%d external materials: %d share an id with the main table, %d match a main structure "
        "(%d same-formula comparisons)",
        len(df),
        int(df["same_id"].sum()) if len(df) else 0,
        int((df["n_matches"] > df["same_id"].astype(int)).sum()) if len(df) else 0,
        compared,
    )
    return df


# --------------------------------------------------------------------------- evaluation


def evaluation_ids(df: pd.DataFrame, target: Any, split_cfg: dict[str, Any], name: str) -> list[str]:
    """External materials a target is scored on: labelled (positive for a log10 target) and
    in the target's subset (metal / non-metal by the split's rule)."""
    from tlcgcnn.data.split import metal_flags

    y = pd.to_numeric(df[target.property], errors="coerce")
    keep = y.notna().to_numpy()
    if target.transform == "log10":
        keep &= (y > 0).fillna(False).to_numpy(dtype=bool)
    if target.subset != "all":
        try:
            flags = metal_flags(df, split_cfg["metal_rule"], split_cfg["band_gap_threshold"])
        except ValueError as err:
            raise ValueError(
                f"external {name}: target {target.name} is fitted on the {target.subset} subset, but {err}"
            ) from None
        want = flags if target.subset == "metal" else ~flags
        keep &= want.fillna(False).to_numpy(dtype=bool)
    return df.loc[keep, "material_id"].astype(str).tolist()


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, suffix: str) -> dict[str, Any]:
    from tlcgcnn.analysis.metrics import regression_metrics

    if len(y_true) == 0:
        return {f"mae_{suffix}": float("nan"), f"rmse_{suffix}": float("nan"), f"r2_{suffix}": float("nan")}
    m = regression_metrics(y_true, y_pred)
    return {f"mae_{suffix}": m["mae"], f"rmse_{suffix}": m["rmse"], f"r2_{suffix}": m.get("r2", float("nan"))}


def evaluate_target(
    *,
    external: str,
    cell_metrics: list[str],
    table_path: str,
    graph_dir: str,
    overlap_path: str,
    split_cfg: dict[str, Any],
    out_metrics: str,
    out_predictions: str,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Every seed model of the given fine-tuning cells (their ``metrics.json``) predicts the
    external set; one record per model, predictions of all models in one table."""
    from tlcgcnn.analysis.evaluate import predict_ids
    from tlcgcnn.data.targets import Target, inverse_transform, labels
    from tlcgcnn.train.checkpoint import load_checkpoint

    df = pd.read_parquet(table_path)
    ov = pd.read_parquet(overlap_path).set_index("material_id")
    records: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    for path in cell_metrics:
        data = io.read_json(path)
        for rec in data if isinstance(data, list) else [data]:
            ckpt_path = rec["checkpoint"]
            ckpt = load_checkpoint(ckpt_path)
            target = Target(**ckpt["target"])
            if target.task != "regression":
                raise ValueError(
                    f"external {external}: {ckpt_path} is a {target.task} model; external sets score regression targets"
                )
            if target.property not in df.columns:
                raise ValueError(f"external {external}: {table_path} has no {target.property} column")
            ids = evaluation_ids(df, target, split_cfg, external)
            if not ids:
                raise ValueError(
                    f"external {external}: no labelled material of {target.property} in the {target.subset} subset "
                    f"of {table_path}"
                )
            seen = set(ckpt["split"]["train"]) | set(ckpt["split"]["val"])
            flag = np.array([any(m in seen for m in ov.at[i, "matches"]) for i in ids], dtype=bool)
            y_true = labels(df, ids, target)
            y_pred = predict_ids(ckpt, ckpt_path, graph_dir, ids, device=device)
            out: dict[str, Any] = {
                "external": external,
                "target": rec["target"],
                "property": target.property,
                "transform": target.transform,
                "size": rec["size"],
                "mode": rec["mode"],
                "family": rec.get("family"),
                "seed": int(rec["seed"]),
                "n_external": len(ids),
                "n_in_training": int(flag.sum()),
                **_metrics(y_true, y_pred, "external"),
                **_metrics(y_true[~flag], y_pred[~flag], "external_no_overlap"),
                "mae_test": rec.get("mae"),
                "error_test": rec.get("error"),
                "checkpoint": ckpt_path,
            }
            if target.transform != "none":
                t_true, t_pred = (
                    inverse_transform(y_true, target.transform),
                    inverse_transform(y_pred, target.transform),
                )
                out["mae_external_original_units"] = float(np.abs(t_pred - t_true).mean())
                out["mae_external_no_overlap_original_units"] = (
                    float(np.abs(t_pred - t_true)[~flag].mean()) if (~flag).any() else float("nan")
                )
            records.append(out)
            preds.append(
                pd.DataFrame(
                    {
                        "external": external,
                        "target": rec["target"],
                        "size": str(rec["size"]),
                        "mode": rec["mode"],
                        "seed": int(rec["seed"]),
                        "material_id": ids,
                        "y_true": y_true,
                        "y_pred": y_pred,
                        "in_training": flag,
                    }
                )
            )
            log.info(
                "%s on %s n=%s %s seed %s: MAE %.4f (%d materials), %.4f without the %d seen in training "
                "(test MAE %.4f)",
                rec["target"],
                external,
                rec["size"],
                rec["mode"],
                rec["seed"],
                out["mae_external"],
                len(ids),
                out["mae_external_no_overlap"],
                out["n_in_training"],
                rec.get("mae", float("nan")),
            )
    io.write_parquet(
        pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(columns=PREDICTION_COLUMNS), out_predictions
    )
    io.write_json(out_metrics, records)
    return records


# --------------------------------------------------------------------------- tables


def collect(
    metric_files: list[str], prediction_files: list[str], out_table: str | Path, out_predictions: str | Path
) -> pd.DataFrame:
    """Workflow entry: ``stats/external.csv`` (one row per external set, target, size, mode
    and seed: external MAE with and without the materials seen in training, internal test
    MAE) and every prediction in one parquet table."""
    rows: list[dict[str, Any]] = []
    for p in metric_files:
        rows.extend(io.read_json(p))
    df = pd.DataFrame(rows)
    if len(df):
        df["_size"] = df["size"].map(lambda s: float("inf") if s == "all" else float(s))
        df = (
            df.sort_values(["external", "target", "_size", "mode", "seed"]).drop(columns="_size").reset_index(drop=True)
        )
        first = [c for c in LEAD_COLUMNS if c in df.columns]
        df = df[first + [c for c in df.columns if c not in first]]
    io.write_csv(df, out_table)
    parts = [pd.read_parquet(p) for p in prediction_files]
    io.write_parquet(
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS), out_predictions
    )
    return df
