"""The frozen-features transfer mode: a pretrained network's crystal vectors fed to a
scikit-learn estimator (ridge, random forest, SVR, ...), no layer fine-tuned.

Config: ``finetune.modes.<m>: {pretrained: <source>, estimator: ridge, features: frozen}``.
One job per (target, training size, mode) cell, like every other cell:

1. the source checkpoint embeds, once per cell, every crystal the cell's seeds need (their
   training and validation ids and the fixed test set): the vector its output layer reads
   (``crystal_features``, ``h_fea_len`` wide), in eval mode, without gradients
   (:func:`tlcgcnn.analysis.evaluate.embed_ids`);
2. per seed, the training and validation ids are those of the graph-model cells of the same
   (size, seed) (:func:`tlcgcnn.data.split.train_val` with the same split settings); the
   estimator is chosen by k-fold CV on the training ids only and fitted on them
   (:func:`tlcgcnn.train.baselines.fit_predict`: standardisation inside its pipeline); it predicts
   the validation ids (``best_val_mae``: the estimator's error on the ids the graph models
   early-stop on; validation binary cross-entropy for a classification target, as theirs) and
   the fixed test set (the reported metrics). No test label is read before the predictions
   exist, and no test crystal reaches the fit.

**The controls of a same-quantity transfer** (``features: zero_shot | recalibrated | delta``,
e.g. a PBE-gap source on an HSE-gap target) run in the same cells, from a checkpoint source
with one regression output (its prediction in the source property's units, which must be
the target's): ``zero_shot`` predicts the source's output as it is (nothing fitted; the same
predictions for every seed), ``recalibrated`` fits the least-squares line
target = a + b · source output on the seed's training crystals, ``delta`` (Δ-learning) fits
the mode's estimator on the source's crystal vectors to target − source output and adds the
source output back. A fine-tuned transfer that does no better than these has learned nothing
beyond the source's correlation with the target.

A ``backbone:`` source (a universal potential such as CHGNet, :mod:`tlcgcnn.features.backbones`)
has no checkpoint: step 1 reads the crystal vectors of the cell's ids from the backbone's
embeddings of the whole table (rule ``embed_backbone``), made once per run; the rest is as
above, and the records name the backbone, its package version and licence.

Writes ``metrics.json`` (one record per seed, the fields of the other cells: test metrics,
target, seed, sizes, mode description with ``family: transfer``, ``best_val_mae``,
provenance) and ``predictions.parquet`` (all seeds, ``seed`` column), so the statistics
test the mode against scratch in the ``transfer_vs_scratch`` family. The seeds run through the
loop every cell shares (:func:`tlcgcnn.train.finetune.run_cell`, :class:`FrozenStrategy`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.config import SOURCE_OUTPUT_FEATURES, Cell
from tlcgcnn.train.finetune import SeedRun, SeedStrategy, mode_fields, run_cell
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


def cell_ids(
    split: dict[str, Any], size: int | str, seeds: list[int], split_cfg: dict[str, Any], train_pool: str | None = None
) -> tuple[dict[int, Any], list[str]]:
    """Per seed the training / validation draw (:class:`tlcgcnn.data.split.TrainVal`, the graph
    models' own, from the pool ``train_pool`` names), and every id the cell embeds: those
    draws' ids, then the test ids."""
    from tlcgcnn.data.split import pool_ids, train_val

    pool = pool_ids(split, train_pool)
    draws = {int(s): train_val(pool, size, int(s), split_cfg["val_fraction"], split_cfg["val_min"]) for s in seeds}
    ids = list(dict.fromkeys([i for tv in draws.values() for i in (*tv.train, *tv.val)]))
    test = list(split["test"])
    overlap = set(ids) & set(test)
    if overlap:
        raise ValueError(
            f"{len(overlap)} test ids (first: {sorted(overlap)[0]!r}) are in the training pool of the split"
        )
    return draws, ids + test


def val_score(task: str, y_val: np.ndarray, pred: np.ndarray) -> float:
    """What the graph models early-stop on: validation MAE in target units (regression), or
    validation binary cross-entropy (classification)."""
    from tlcgcnn.analysis.metrics import classification_metrics

    if task == "classification":
        return float(classification_metrics(y_val, pred)["log_loss"])
    return float(np.abs(np.asarray(pred, dtype=float) - y_val).mean())


def test_metrics(
    target: Any, df: pd.DataFrame, test_ids: list[str], pred_test: np.ndarray
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The test metrics of ``pred_test`` (``error``: MAE, or 1 − ROC-AUC's metrics for a
    classifier; the MAE in the property's own units for a transformed target) and the
    predictions frame; the test labels are read here, once the predictions exist."""
    from tlcgcnn.analysis.evaluate import classification_metrics, regression_metrics
    from tlcgcnn.data.targets import inverse_transform, labels

    y_true = labels(df, test_ids, target)
    if target.task == "classification":
        metrics = classification_metrics(y_true, pred_test)
    else:
        metrics = regression_metrics(y_true, pred_test)
        metrics["error"] = metrics["mae"]
    frame = pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": pred_test})
    if target.transform != "none" and target.task == "regression":
        t_true, t_pred = inverse_transform(y_true, target.transform), inverse_transform(pred_test, target.transform)
        frame["y_true_" + target.property], frame["y_pred_" + target.property] = t_true, t_pred
        metrics["mae_original_units"] = float(np.abs(t_pred - t_true).mean())
    return metrics, frame


class FrozenStrategy(SeedStrategy):
    """A frozen-features cell: the source checkpoint embeds, once, every crystal the cell's
    seeds need (a backbone source: they are read from its ``embeddings``); per seed the mode's
    estimator is chosen and fitted on the seed's training vectors, scored on its validation
    ids and tested. Computed anew each time the job runs."""

    def __init__(
        self,
        cell: Cell,
        *,
        table_path: str,
        split_path: str,
        split_cfg: dict[str, Any],
        threads: int,
        config: dict[str, Any] | None,
        graph_dir: str | None = None,
        pretrained: str | None = None,
        embeddings: str | None = None,
        embeddings_info: str | None = None,
        device: str = "auto",
    ) -> None:
        from tlcgcnn.data.targets import target_from_spec
        from tlcgcnn.report import provenance

        mode = cell.mode
        self.features = mode.features
        if not ((mode.features == "frozen" and mode.estimator) or mode.features in SOURCE_OUTPUT_FEATURES):
            raise ValueError(
                f"mode {mode.name}: not a frozen-features mode (needs estimator and features: frozen, "
                f"or features: {' | '.join(SOURCE_OUTPUT_FEATURES)})"
            )
        self.cell, self.estimator, self.threads, self.pretrained = cell, mode.estimator, threads, pretrained
        self.target = target = target_from_spec(cell.target)
        sp = io.read_json(split_path)
        self.test_ids = list(sp["test"])
        self.draws, ids = cell_ids(sp, cell.size, cell.seeds, split_cfg, mode.train_pool)

        self.source_output: pd.Series | None = None  # a source-output control's (_checkpoint_vectors)
        backbone = cell.pretrain.backbone if cell.pretrain else None
        if backbone:
            if not (embeddings and embeddings_info):
                raise ValueError(f"mode {mode.name}: backbone source {backbone} needs its embeddings and their info")
            X, source, pre_n = self._backbone_vectors(backbone, embeddings, embeddings_info, ids)
        else:
            if not (pretrained and graph_dir):
                raise ValueError(f"mode {mode.name}: a checkpoint source needs the checkpoint and the graph cache")
            if self.features in SOURCE_OUTPUT_FEATURES and target.task != "regression":
                raise ValueError(f"mode {mode.name}: features: {self.features} is for regression targets")
            X, source, pre_n = self._checkpoint_vectors(pretrained, graph_dir, ids, threads, device)
        if self.features in SOURCE_OUTPUT_FEATURES and backbone:
            raise ValueError(f"mode {mode.name}: features: {self.features} needs a checkpoint source")
        if not np.isfinite(X.to_numpy()).all():
            raise ValueError(
                f"{pretrained or embeddings}: non-finite crystal vectors for "
                f"{int((~np.isfinite(X.to_numpy())).any(axis=1).sum())} crystals"
            )
        log.info(
            "%s: %d crystals embedded by %s (%d features) in %.1f s",
            target.name,
            len(ids),
            pretrained or f"{backbone} ({embeddings})",
            X.shape[1],
            self.embed_seconds or 0.0,
        )
        self.X, self.source = X, source
        self.df = pd.read_parquet(table_path, columns=["material_id", target.property])
        self.fields = mode_fields(cell, pre_n)
        self.prov = provenance.record(config, io.sha256_file(table_path))

    def _checkpoint_vectors(
        self, pretrained: str, graph_dir: str, ids: list[str], threads: int, device: str
    ) -> tuple[pd.DataFrame, dict[str, Any], int]:
        """The checkpoint's crystal vectors of ``ids``, computed here (with a source-output
        control also its prediction, :attr:`source_output`; zero_shot and recalibrated use
        only that, so their vectors are not computed: ``X`` is the prediction as one column);
        the records' source fields; the source's training-set size."""
        import torch

        from tlcgcnn.analysis.evaluate import embed_ids
        from tlcgcnn.train.checkpoint import load_checkpoint
        from tlcgcnn.train.device import pick_device, processor

        torch.set_num_threads(max(1, int(threads)))
        ckpt = load_checkpoint(pretrained)
        self.device = dev = str(pick_device(device))
        self.hardware = processor(dev)
        t0 = time.perf_counter()
        if self.features in SOURCE_OUTPUT_FEATURES:
            self.source_output = self._source_output(ckpt, pretrained, graph_dir, ids)
        if self.source_output is not None and self.features in ("zero_shot", "recalibrated"):
            X = self.source_output.to_frame("source_output")
        else:
            X = pd.DataFrame(
                embed_ids(ckpt, pretrained, graph_dir, ids, device=dev), index=pd.Index(ids, name="material_id")
            )
        self.embed_seconds: float | None = time.perf_counter() - t0
        return X, {"source_checkpoint": str(pretrained)}, len(ckpt["split"]["train"])

    def _source_output(self, ckpt: dict[str, Any], pretrained: str, graph_dir: str, ids: list[str]) -> pd.Series:
        """The source checkpoint's own prediction for ``ids`` (denormalised: the source
        property's units), indexed by id; an error for a source with several outputs."""
        from tlcgcnn.analysis.evaluate import predict_ids

        out = np.asarray(predict_ids(ckpt, pretrained, graph_dir, ids, device=self.device), dtype=np.float64)
        if out.ndim != 1:
            raise ValueError(
                f"{pretrained}: {out.shape[1]} outputs per crystal; features: {self.features} needs a source "
                "with one regression output (a single-task checkpoint)"
            )
        if not np.isfinite(out).all():
            raise ValueError(f"{pretrained}: non-finite predictions for {int((~np.isfinite(out)).sum())} crystals")
        return pd.Series(out, index=pd.Index(ids, name="material_id"))

    def _fit_predict(
        self, seed: int, y_train: pd.Series, train: list[str], predict: list[str]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The mode's predictions for ``predict`` from the seed's training crystals, and its fit info."""
        from tlcgcnn.train.baselines import fit_predict

        src = self.source_output
        if self.features == "frozen":
            return fit_predict(self.estimator, self.target.task, self.X, y_train, train, predict, seed, self.threads)
        assert src is not None
        t0 = time.perf_counter()
        if self.features == "zero_shot":
            info: dict[str, Any] = {"best_params": None, "cv_score": None, "cv_folds": None}
            pred = src.loc[predict].to_numpy()
        elif self.features == "recalibrated":
            slope, intercept = np.polyfit(src.loc[train].to_numpy(), y_train.loc[train].to_numpy(dtype=float), 1)
            info = {
                "best_params": {"slope": float(slope), "intercept": float(intercept)},
                "cv_score": None,
                "cv_folds": None,
            }
            pred = intercept + slope * src.loc[predict].to_numpy()
        else:  # delta: the estimator learns target - source output on the source's crystal vectors
            residual = y_train - src.loc[y_train.index].to_numpy()
            fitted, info = fit_predict(
                self.estimator, "regression", self.X, residual, train, predict, seed, self.threads
            )
            pred = src.loc[predict].to_numpy() + fitted
        return np.asarray(pred, dtype=np.float64), {**info, "seconds": time.perf_counter() - t0}

    def _backbone_vectors(
        self, backbone: str, embeddings: str, embeddings_info: str, ids: list[str]
    ) -> tuple[pd.DataFrame, dict[str, Any], None]:
        """A backbone's crystal vectors of ``ids``, read from its embeddings of the table (made
        by another job, on the device and hardware its info names; ``embed_seconds`` None:
        that job embedded the whole table); the records' source fields (backbone, package and
        version, licence, training data); no training-set size in crystals."""
        from tlcgcnn.features.backbones import read_embeddings

        info = io.read_json(embeddings_info)
        if info["backbone"] != backbone:
            raise ValueError(f"{embeddings_info}: embeddings of {info['backbone']}, not of {backbone}")
        X = read_embeddings(embeddings, ids)
        self.device, self.hardware, self.embed_seconds = info["device"], info["hardware"], None
        source = {
            "backbone": backbone,
            "backbone_package": f"{info['package']}=={info['package_version']}",
            "backbone_licence": info["licence"],
            "backbone_training_data": info["training_data"],
            "source_embeddings": str(embeddings),
        }
        return X, source, None

    def run_seed(self, seed: int, run: SeedRun | None) -> tuple[dict[str, Any], pd.DataFrame]:
        from tlcgcnn.analysis.evaluate import run_record
        from tlcgcnn.data.targets import labels

        target, test_ids, df, X, prov = self.target, self.test_ids, self.df, self.X, self.prov
        tv = self.draws[seed]
        y_train = pd.Series(labels(df, tv.train, target), index=tv.train)
        pred, info = self._fit_predict(seed, y_train, tv.train, [*tv.val, *test_ids])
        pred_val, pred_test = pred[: len(tv.val)], np.asarray(pred[len(tv.val) :], dtype=np.float64)
        best_val = val_score(target.task, labels(df, tv.val, target), pred_val)
        metrics, frame = test_metrics(target, df, test_ids, pred_test)
        rec = run_record(
            metrics=metrics,
            target=target,
            seed=seed,
            n_train=len(tv.train),
            n_val=len(tv.val),
            stage="finetune",
            mode=self.fields["mode"],
            size=self.cell.size,
            extra={
                "best_val_mae": best_val,
                "n_params": None,
                "seconds": info["seconds"],
                "embed_seconds": self.embed_seconds,
                "device": self.device,
                "hardware": self.hardware,
                **self.fields,
                "best_params": info["best_params"],
                "cv_score": info["cv_score"],
                "cv_folds": info["cv_folds"],
                "n_features": {"zero_shot": 0, "recalibrated": 1}.get(str(self.features), int(X.shape[1])),
                **self.source,
                "config_sha256": prov["config_sha256"],
                "data_sha256": prov["data_sha256"],
                "git_commit": prov["code"]["git_commit"],
                "package_version": prov["code"]["package"],
                "torch_version": prov["torch"],
            },
        )
        return rec, frame

    def note(self, record: dict[str, Any]) -> str:
        if self.features in ("zero_shot", "recalibrated"):
            return f", validation {record['best_val_mae']:.4f}, {self.features} {record['best_params'] or ''}".rstrip()
        return f", validation {record['best_val_mae']:.4f}, CV best {record['best_params']}"


def frozen_cell(
    *,
    cell: Cell,
    table_path: str,
    split_path: str,
    split_cfg: dict[str, Any],
    threads: int,
    config: dict[str, Any] | None,
    out_metrics: str,
    out_predictions: str,
    graph_dir: str | None = None,
    pretrained: str | None = None,
    embeddings: str | None = None,
    embeddings_info: str | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Embed the cell's crystals with the ``pretrained`` checkpoint (a backbone source: read
    them from its ``embeddings``), then fit, validate and test the mode's estimator for every
    seed of the cell."""
    strategy = FrozenStrategy(
        cell,
        table_path=table_path,
        split_path=split_path,
        graph_dir=graph_dir,
        pretrained=pretrained,
        embeddings=embeddings,
        embeddings_info=embeddings_info,
        split_cfg=split_cfg,
        threads=threads,
        config=config,
        device=device,
    )
    return run_cell(cell, strategy, out_metrics, out_predictions)
