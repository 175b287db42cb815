"""Evaluate a trained checkpoint on its fixed test set.

Writes ``predictions.parquet`` (material_id, y_true, y_pred in the model's target units, and
in the property's own units when a transform such as log10 was used) and ``metrics.json``
(MAE, RMSE, R², Pearson r, Spearman ρ, plus the run's identifying fields and provenance).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as sstats

from tlcgcnn import graphs, io
from tlcgcnn.normalize import Normalizer, inverse_transform
from tlcgcnn.train import Target, labels, load_checkpoint, model_from_checkpoint, pick_device, predict

log = logging.getLogger(__name__)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    out = {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "n_test": int(len(y_true)),
    }
    if len(y_true) > 2 and np.std(y_pred) > 0 and np.std(y_true) > 0:
        out["pearson_r"] = float(sstats.pearsonr(y_true, y_pred).statistic)
        out["spearman_rho"] = float(sstats.spearmanr(y_true, y_pred).statistic)
    else:
        out["pearson_r"] = out["spearman_rho"] = float("nan")
    return out


def evaluate(
    checkpoint: str | Path,
    table_df: pd.DataFrame,
    graph_dir: str | Path,
    out_metrics: str | Path,
    out_predictions: str | Path,
    device: str = "auto",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ckpt = load_checkpoint(checkpoint)
    target = Target(**ckpt["target"])
    test_ids = list(ckpt["split"]["test"])
    dev = pick_device(device)
    log.info("device: %s%s", dev, f" {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "")
    model = model_from_checkpoint(ckpt).to(dev)
    data = graphs.load(graph_dir, test_ids).to(dev)
    normalizer = Normalizer.from_dict(ckpt["normalizer"])
    raw = predict(model, data, torch.arange(len(test_ids), device=dev), ckpt["train_config"].get("eval_batch_size", 512))
    y_pred = normalizer.denorm(raw.squeeze(-1)).double().cpu().numpy()
    y_true = labels(table_df, test_ids, target)
    metrics = regression_metrics(y_true, y_pred)
    preds = pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": y_pred})
    if target.transform != "none":
        t_true, t_pred = inverse_transform(y_true, target.transform), inverse_transform(y_pred, target.transform)
        preds["y_true_" + target.property] = t_true
        preds["y_pred_" + target.property] = t_pred
        metrics["mae_original_units"] = float(np.abs(t_pred - t_true).mean())
    record = {
        **metrics,
        "target": target.name,
        "property": target.property,
        "transform": target.transform,
        "subset": target.subset,
        "seed": ckpt["seed"],
        "n_train": len(ckpt["split"]["train"]),
        "n_val": len(ckpt["split"]["val"]),
        **{k: v for k, v in ckpt["result"].items()},
        **ckpt.get("meta", {}),
        **(extra or {}),
        "checkpoint": str(checkpoint),
    }
    io.write_parquet(preds, out_predictions)
    io.write_json(out_metrics, record)
    log.info("%s seed %s: test MAE %.4f (n=%d) -> %s", target.name, ckpt["seed"], metrics["mae"], metrics["n_test"], out_metrics)
    return record
