"""Evaluate a trained checkpoint on its fixed test set; the one builder of run records.

Writes ``predictions.parquet`` (material_id, y_true, y_pred in the model's target units, and
in the property's own units when a transform such as log10 was used) and ``metrics.json``
(MAE, RMSE, R², Pearson r, Spearman ρ, plus the run's identifying fields and provenance).
Every run record (pretraining, fine-tuning, baselines) is built by :func:`run_record`.
The metric functions and :func:`run_record` are torch-free (the baselines use them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis.metrics import classification_metrics, regression_metrics
from tlcgcnn.data.targets import Target, inverse_transform, labels
from tlcgcnn.utils import fileio as io

__all__ = ["classification_metrics", "embed_ids", "evaluate", "predict_ids", "regression_metrics", "run_record"]

log = logging.getLogger(__name__)


def evaluate(
    checkpoint: str | Path,
    table_df: pd.DataFrame,
    graph_dir: str | Path,
    out_metrics: str | Path,
    out_predictions: str | Path,
    device: str = "auto",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics and predictions of ``checkpoint`` on its test ids; ``extra`` fields are added
    to the record (after the checkpoint's own run metadata)."""
    import torch

    from tlcgcnn.nn import graphs
    from tlcgcnn.nn.normalize import normalizer_from_dict
    from tlcgcnn.train.checkpoint import load_checkpoint, model_from_checkpoint
    from tlcgcnn.train.device import pick_device
    from tlcgcnn.train.loop import predict

    ckpt = load_checkpoint(checkpoint)
    target = Target(**ckpt["target"])
    test_ids = list(ckpt["split"]["test"])
    dev = pick_device(device)
    log.info("device: %s%s", dev, f" {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "")
    model = model_from_checkpoint(ckpt, checkpoint).to(dev)
    data = graphs.load(graph_dir, test_ids).to(dev)
    normalizer = normalizer_from_dict(ckpt["normalizer"])
    raw = predict(
        model, data, torch.arange(len(test_ids), device=dev), ckpt["train_config"].get("eval_batch_size", 512)
    )
    y_true = labels(table_df, test_ids, target)
    if target.task == "multitask":
        metrics, preds = _multitask_metrics(target, test_ids, y_true, normalizer.denorm(raw).double().cpu().numpy())
    elif target.task == "classification":
        prob = torch.sigmoid(raw.squeeze(-1)).double().cpu().numpy()
        metrics = classification_metrics(y_true, prob)
        preds = pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": prob})
    else:
        y_pred = normalizer.denorm(raw.squeeze(-1)).double().cpu().numpy()
        metrics = regression_metrics(y_true, y_pred)
        metrics["error"] = metrics["mae"]
        preds = pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": y_pred})
    if target.transform != "none" and target.task == "regression":
        t_true, t_pred = inverse_transform(y_true, target.transform), inverse_transform(y_pred, target.transform)
        preds["y_true_" + target.property] = t_true
        preds["y_pred_" + target.property] = t_pred
        metrics["mae_original_units"] = float(np.abs(t_pred - t_true).mean())
    meta = dict(ckpt.get("meta", {}))
    record = run_record(
        metrics=metrics,
        target=target,
        seed=ckpt["seed"],
        n_train=len(ckpt["split"]["train"]),
        n_val=len(ckpt["split"]["val"]),
        stage=meta.pop("stage", None),
        mode=meta.pop("mode", None),
        size=meta.pop("size", None),
        extra={**ckpt["result"], **meta, **(extra or {}), "checkpoint": str(checkpoint)},
    )
    io.write_parquet(preds, out_predictions)
    io.write_json(out_metrics, record)
    log.info(
        "%s seed %s: test error %.4f (n=%d) -> %s",
        target.name,
        ckpt["seed"],
        metrics["error"],
        metrics["n_test"],
        out_metrics,
    )
    return record


def predict_ids(
    ckpt: dict[str, Any], checkpoint: str | Path, graph_dir: str | Path, ids: list[str], device: str = "auto"
) -> np.ndarray:
    """Predictions of a regression checkpoint (already loaded) for ``ids`` of a graph cache,
    in the model's target units (denormalised), after checking that the cache was featurized
    as the model's training graphs were (:func:`tlcgcnn.train.loop.check_same_featurization`)."""
    from tlcgcnn.nn.normalize import normalizer_from_dict

    raw = _forward_ids(ckpt, checkpoint, graph_dir, ids, device, features=False)
    return normalizer_from_dict(ckpt["normalizer"]).denorm(raw.squeeze(-1)).double().cpu().numpy()


def embed_ids(
    ckpt: dict[str, Any], checkpoint: str | Path, graph_dir: str | Path, ids: list[str], device: str = "auto"
) -> np.ndarray:
    """The crystal vectors of a checkpoint (already loaded) for ``ids`` of a graph cache:
    float64 [len(ids), h_fea_len], row i for ids[i] (``crystal_features`` of the model: what
    its output layer reads), in eval mode, in batches, without gradients. The cache must be
    featurized as the model's training graphs were."""
    return _forward_ids(ckpt, checkpoint, graph_dir, ids, device, features=True).double().cpu().numpy()


def _forward_ids(
    ckpt: dict[str, Any], checkpoint: str | Path, graph_dir: str | Path, ids: list[str], device: str, features: bool
) -> Any:
    """Raw outputs (or with ``features`` the crystal vectors) of ``ids``: a torch tensor."""
    import torch

    from tlcgcnn.nn import graphs
    from tlcgcnn.train.checkpoint import model_from_checkpoint
    from tlcgcnn.train.device import pick_device
    from tlcgcnn.train.loop import check_same_featurization, predict

    dev = pick_device(device)
    data = graphs.load(graph_dir, ids)
    check_same_featurization(ckpt, data, checkpoint, graph_dir)
    model = model_from_checkpoint(ckpt, checkpoint).to(dev)
    data = data.to(dev)
    batch = ckpt["train_config"].get("eval_batch_size", 512)
    return predict(model, data, torch.arange(len(ids), device=dev), batch, features=features)


def run_record(
    *,
    metrics: dict[str, Any],
    target: Target,
    seed: int,
    n_train: int,
    n_val: int,
    stage: str | None,
    mode: str | None,
    size: int | str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run's record in ``metrics.json``: its test metrics, what was learnt (target
    fields), from which split (seed, sizes), in which stage and mode, then ``extra`` fields
    (training result, provenance, mode description, estimator details)."""
    return {
        **metrics,
        "target": target.name,
        "property": target.property,
        "transform": target.transform,
        "subset": target.subset,
        "task": target.task,
        "seed": int(seed),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "stage": stage,
        "mode": mode,
        "size": size,
        **(extra or {}),
    }


def _multitask_metrics(
    target: Target, ids: list[str], y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per-property metrics of a multi-task model on the labelled test entries; the headline
    ``mae`` / ``error`` is that of the first property (the one the split is defined on)."""
    assert target.properties is not None
    out: dict[str, Any] = {}
    preds = pd.DataFrame({"material_id": ids})
    for j, prop in enumerate(target.properties):
        ok = ~np.isnan(y_true[:, j])
        m = regression_metrics(y_true[ok, j], y_pred[ok, j])
        if j == 0:
            out.update(m)
        out.update({f"{k}_{prop}": v for k, v in m.items()})
        preds[f"y_true_{prop}"] = y_true[:, j]
        preds[f"y_pred_{prop}"] = y_pred[:, j]
    preds["y_true"], preds["y_pred"] = y_true[:, 0], y_pred[:, 0]
    out["error"] = out["mae"]
    return out, preds
