"""Fine-tuning: one workflow job per (target, training size, mode) "cell", every seed inside.

A graph cell trains and evaluates one model per seed. Each seed has its own folder
``runs/s<seed>/`` (``model.pt``, ``metrics.json``, ``predictions.parquet`` and the training
loop's resumable ``state.pt``), so a cell that was killed resumes where it stopped: a seed
whose metrics exist for the same settings and inputs (its ``run_key``) is not trained again,
and an unfinished seed continues from its state. A baseline cell fits one scikit-learn model
per seed on the same training ids (a frozen-features cell, :mod:`tlcgcnn.train.frozen`, fits one on
the pretrained source's crystal vectors). Each writes ``metrics.json`` (one record per seed, built
by :func:`tlcgcnn.analysis.evaluate.run_record`) and ``predictions.parquet`` (all seeds, with a
``seed`` column). Grouping the seeds removes the per-job start-up cost (interpreter, torch
import, graph loading) that dominates small training sets.

The cell's settings arrive as :meth:`tlcgcnn.config.Cell.as_params` (plain values).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.config import parse_size
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


def mode_fields(cell: dict[str, Any], pretrain_n_train: int | None) -> dict[str, Any]:
    """Descriptive fields of a cell's mode, copied into every record (tables, figures)."""
    mode, pre = cell["mode"], cell["pretrain"]
    target = pre["target"] if pre else {}
    props = target.get("properties")
    return {
        "mode": mode["name"],
        "family": mode["family"],
        "model_kind": mode["estimator"] or cell["model"]["kind"],
        "freeze": int(mode["freeze"]),
        "reinit": mode["reinit"],
        "pretrained": mode["pretrained"],
        "pretrain_property": ("+".join(props) if props else target["property"]) if pre else None,
        "pretrain_subset": target["subset"] if pre else None,
        "pretrain_size": pretrain_n_train,
        **({"features": mode["features"]} if mode.get("features") else {}),  # frozen features (tlcgcnn.train.frozen)
        "backbone_lr_scale": float(mode.get("backbone_lr_scale", 1.0)) if mode["pretrained"] else None,
        **({"train_pool": mode["train_pool"]} if mode.get("train_pool") else {}),  # set only for train_pool: all
    }


# the training settings every graph-model record repeats (the fine-tuning protocol)
PROTOCOL_FIELDS = ("lr", "epochs", "warmup_epochs", "patience", "schedule", "batch_size", "weight_decay", "optimizer")


def train_fields(cell: dict[str, Any]) -> dict[str, Any]:
    """The resolved training settings of a graph-model cell that its records carry (lr,
    epochs, warm-up, early-stopping patience, schedule, ...): the protocol the tables compare."""
    return {k: cell["train"][k] for k in PROTOCOL_FIELDS}


def run_key(cell: dict[str, Any], seed: int, inputs: dict[str, str]) -> str:
    """What one seed's results depend on: the cell's settings (not its list of seeds), the
    seed and the contents of its input files. A finished seed with the same key is reused."""
    settings = {k: v for k, v in cell.items() if k != "seeds"}
    files = {k: io.sha256_file(v) for k, v in sorted(inputs.items())}
    return io.sha256_json({"cell": settings, "seed": int(seed), "inputs": files})[:16]


def _finished(run: Path, key: str) -> dict[str, Any] | None:
    """The record of a seed finished with ``key``, or None; a stale seed folder is removed."""
    metrics, preds, stamp = run / "metrics.json", run / "predictions.parquet", run / "run_key"
    if run.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
        log.info("%s: settings or inputs changed since it ran: starting the seed again", run)
        shutil.rmtree(run)
        return None
    if metrics.exists() and preds.exists():
        record = io.read_json(metrics)
        if record.get("run_key") == key:
            return record
    return None


def finetune_cell(
    *,
    cell: dict[str, Any],
    table_path: str,
    split_path: str,
    graph_dir: str,
    atom_features_path: str,
    pretrained: list[str],
    split_cfg: dict[str, Any],
    threads: int,
    config: dict[str, Any] | None,
    out_metrics: str,
    out_predictions: str,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Train and evaluate every seed of a graph-model cell (``runs/`` next to ``out_metrics``)."""
    from tlcgcnn.analysis.evaluate import evaluate
    from tlcgcnn.train.checkpoint import load_checkpoint
    from tlcgcnn.train.loop import run_training

    target, size = cell["target"], parse_size(cell["size"])
    runs = Path(out_metrics).parent / "runs"
    table_df = pd.read_parquet(table_path)
    pre_n = len(load_checkpoint(pretrained[0])["split"]["train"]) if pretrained else None
    fields = {**mode_fields(cell, pre_n), **train_fields(cell)}
    inputs = {"table": table_path, "split": split_path, "graphs": str(Path(graph_dir) / "manifest.json")}
    if pretrained:
        inputs["pretrained"] = pretrained[0]
    records, preds = [], []
    for seed in cell["seeds"]:
        run = runs / f"s{seed}"
        key = run_key(cell, seed, inputs)
        rec = _finished(run, key)
        if rec is not None:
            log.info(
                "%s n=%s %s seed %d: finished before (error %.4f): kept",
                target["name"],
                size,
                fields["mode"],
                seed,
                rec["error"],
            )
            rec = {**fields, **rec}  # a record written before a field existed: same settings (run key)
        else:
            run.mkdir(parents=True, exist_ok=True)
            io.write_text(run / "run_key", key)
            ckpt = run_training(
                stage="finetune",
                table_path=table_path,
                split_path=split_path,
                graph_dir=graph_dir,
                atom_features_path=atom_features_path,
                pretrained=pretrained,
                spec=target,
                size=size,
                seed=int(seed),
                mode=fields["mode"],
                split_cfg=split_cfg,
                model_cfg=cell["model"],
                train_cfg=cell["train"],
                transfer=cell["mode"],
                threads=threads,
                config=config,
                out_checkpoint=str(run / "model.pt"),
                progress=False,
                resume_path=str(run / "state.pt"),
                train_pool=cell["mode"].get("train_pool"),
            )
            rec = evaluate(
                run / "model.pt",
                table_df,
                graph_dir,
                run / "metrics.json",
                run / "predictions.parquet",
                device=device,
                extra={"stage": "finetune", "size": size, **fields, "run_key": key},
            )
            log.info(
                "%s n=%s %s seed %d: error %.4f (%d params, %.1f s)",
                target["name"],
                size,
                fields["mode"],
                seed,
                rec["error"],
                ckpt["result"]["n_params"],
                ckpt["result"]["seconds"],
            )
        records.append(rec)
        preds.append(pd.read_parquet(run / "predictions.parquet").assign(seed=int(seed)))
    io.write_parquet(pd.concat(preds, ignore_index=True), out_predictions)
    io.write_json(out_metrics, records)
    return records


def baseline_cell(
    *,
    cell: dict[str, Any],
    table_path: str,
    descriptors_path: str,
    split_path: str,
    split_cfg: dict[str, Any],
    threads: int,
    out_metrics: str,
    out_predictions: str,
) -> list[dict[str, Any]]:
    """Fit a scikit-learn baseline on composition descriptors for every seed of a cell."""
    from tlcgcnn.analysis.evaluate import classification_metrics, regression_metrics, run_record
    from tlcgcnn.data.split import pool_ids, train_val
    from tlcgcnn.data.targets import labels, target_from_spec
    from tlcgcnn.train.baselines import fit_predict

    target = target_from_spec(cell["target"])
    size = parse_size(cell["size"])
    sp = io.read_json(split_path)
    test_ids = list(sp["test"])
    pool = pool_ids(sp, cell["mode"].get("train_pool"))
    desc = pd.read_parquet(descriptors_path).set_index("material_id")
    df = pd.read_parquet(table_path, columns=["material_id", target.property])
    fields = mode_fields(cell, None)
    estimator = cell["mode"]["estimator"]
    records, preds = [], []
    for seed in cell["seeds"]:
        tv = train_val(pool, size, int(seed), split_cfg["val_fraction"], split_cfg["val_min"])
        y_train = pd.Series(labels(df, tv.train, target), index=tv.train)
        pred, info = fit_predict(estimator, target.task, desc, y_train, tv.train, test_ids, int(seed), threads)
        y_true = labels(df, test_ids, target)
        if target.task == "classification":
            metrics = classification_metrics(y_true, pred)
        else:
            metrics = regression_metrics(y_true, pred)
            metrics["error"] = metrics["mae"]
        rec = run_record(
            metrics=metrics,
            target=target,
            seed=int(seed),
            n_train=len(tv.train),
            n_val=0,
            stage="finetune",
            mode=fields["mode"],
            size=size,
            extra={
                "n_params": None,
                "seconds": info["seconds"],
                **fields,
                "best_params": info["best_params"],
                "cv_score": info["cv_score"],
                "cv_folds": info["cv_folds"],
            },
        )
        log.info(
            "%s n=%s %s seed %d: error %.4f, CV best %s",
            target.name,
            size,
            fields["mode"],
            seed,
            rec["error"],
            info["best_params"],
        )
        records.append(rec)
        preds.append(
            pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": np.asarray(pred), "seed": int(seed)})
        )
    io.write_parquet(pd.concat(preds, ignore_index=True), out_predictions)
    io.write_json(out_metrics, records)
    return records
