"""One workflow job per (target, size, mode) "cell": every seed of the cell in one process.

A CGCNN cell trains and evaluates one model per seed (``runs/s<seed>/`` holds each model,
its metrics and test predictions); a baseline cell fits one scikit-learn model per seed on
the same training ids. Either writes ``metrics.json`` (a list with one record per seed, the
fields of :func:`tlcgcnn.evaluate.evaluate`) and ``predictions.parquet`` (all seeds, with a
``seed`` column). Grouping the seeds removes the per-job start-up cost (interpreter, torch
import, graph loading) that dominates small training sets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn import io

log = logging.getLogger(__name__)


def mode_fields(mode: str, spec: dict[str, Any], pretrain: dict[str, Any] | None, pretrain_n_train: int | None, model_kind: str) -> dict[str, Any]:
    """Descriptive fields of a mode, copied into every record (for tables and figures)."""
    if spec.get("estimator"):
        family = "baseline"
    elif spec.get("pretrained"):
        family = "transfer"
    else:
        family = "scratch"
    props = (pretrain or {}).get("properties")
    return {
        "mode": mode,
        "family": family,
        "model_kind": spec.get("estimator") or model_kind,
        "freeze": int(spec.get("freeze", 0)),
        "reinit": spec.get("reinit", "none"),
        "pretrained": spec.get("pretrained"),
        "pretrain_property": ("+".join(props) if props else pretrain.get("property")) if pretrain else None,
        "pretrain_subset": pretrain.get("subset", "all") if pretrain else None,
        "pretrain_size": pretrain_n_train,
    }


def run_gnn_cell(
    *,
    table_path: str,
    split_path: str,
    graph_dir: str,
    atom_features_path: str,
    pretrained: list[str],
    spec: dict[str, Any],
    size: int | str,
    seeds: list[int],
    mode: str,
    mode_spec: dict[str, Any],
    pretrain_spec: dict[str, Any] | None,
    split_cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    threads: int,
    config: dict[str, Any] | None,
    runs_dir: str,
    out_metrics: str,
    out_predictions: str,
    device: str = "auto",
) -> list[dict[str, Any]]:
    from tlcgcnn.evaluate import evaluate
    from tlcgcnn.checkpoint import load_checkpoint
    from tlcgcnn.train import run_training

    table_df = pd.read_parquet(table_path)
    pre_n = len(load_checkpoint(pretrained[0])["split"]["train"]) if pretrained else None
    fields = mode_fields(mode, mode_spec, pretrain_spec, pre_n, model_cfg.get("kind", "cgcnn"))
    records, preds = [], []
    for seed in seeds:
        run = Path(runs_dir) / f"s{seed}"
        ckpt = run_training(
            stage="finetune", table_path=table_path, split_path=split_path, graph_dir=graph_dir,
            atom_features_path=atom_features_path, pretrained=pretrained, spec=spec, size=size, seed=int(seed),
            mode=mode, split_cfg=split_cfg, model_cfg=model_cfg, train_cfg=train_cfg, transfer=mode_spec,
            threads=threads, config=config, out_checkpoint=str(run / "model.pt"), progress=False,
        )
        rec = evaluate(
            run / "model.pt", table_df, graph_dir, run / "metrics.json", run / "predictions.parquet", device=device,
            extra={"stage": "finetune", "size": size if str(size) == "all" else int(size), **fields},
        )
        log.info("%s n=%s %s seed %d: error %.4f (%d params, %.1f s)", spec["name"], size, mode, seed, rec["error"], ckpt["result"]["n_params"], ckpt["result"]["seconds"])
        records.append(rec)
        preds.append(pd.read_parquet(run / "predictions.parquet").assign(seed=int(seed)))
    io.write_parquet(pd.concat(preds, ignore_index=True), out_predictions)
    io.write_json(out_metrics, records)
    return records


def run_baseline_cell(
    *,
    table_path: str,
    descriptors_path: str,
    split_path: str,
    spec: dict[str, Any],
    size: int | str,
    seeds: list[int],
    mode: str,
    mode_spec: dict[str, Any],
    split_cfg: dict[str, Any],
    threads: int,
    out_metrics: str,
    out_predictions: str,
) -> list[dict[str, Any]]:
    from tlcgcnn.baselines import fit_predict
    from tlcgcnn.metrics import classification_metrics, regression_metrics
    from tlcgcnn.split import train_val
    from tlcgcnn.targets import labels, target_from_spec

    target = target_from_spec(spec)
    sp = io.read_json(split_path)
    test_ids = list(sp["test"])
    desc = pd.read_parquet(descriptors_path).set_index("material_id")
    df = pd.read_parquet(table_path, columns=["material_id", target.property])
    fields = mode_fields(mode, mode_spec, None, None, "")
    size_v: int | str = size if str(size) == "all" else int(size)
    records, preds = [], []
    for seed in seeds:
        tv = train_val(sp["pool"], size_v, int(seed), split_cfg["val_fraction"], split_cfg["val_min"])
        y_train = pd.Series(labels(df, tv.train, target), index=tv.train)
        pred, info = fit_predict(mode_spec["estimator"], target.task, desc, y_train, tv.train, test_ids, int(seed), threads)
        y_true = labels(df, test_ids, target)
        if target.task == "classification":
            metrics = classification_metrics(y_true, pred)
        else:
            metrics = regression_metrics(y_true, pred)
            metrics["error"] = metrics["mae"]
        rec = {
            **metrics, "target": target.name, "property": target.property, "transform": target.transform,
            "subset": target.subset, "task": target.task, "seed": int(seed), "n_train": len(tv.train), "n_val": 0,
            "n_params": None, "seconds": info["seconds"], "stage": "finetune", "size": size_v, **fields,
            "best_params": info["best_params"], "cv_score": info["cv_score"], "cv_folds": info["cv_folds"],
        }
        log.info("%s n=%s %s seed %d: error %.4f, CV best %s", target.name, size, mode, seed, rec["error"], info["best_params"])
        records.append(rec)
        preds.append(pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": np.asarray(pred), "seed": int(seed)}))
    io.write_parquet(pd.concat(preds, ignore_index=True), out_predictions)
    io.write_json(out_metrics, records)
    return records
