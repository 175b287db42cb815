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

One loop, :func:`run_cell`, runs the seeds of every kind of cell; what one seed does is the
kind's :class:`SeedStrategy` (:class:`GraphStrategy`, :class:`BaselineStrategy`,
:class:`tlcgcnn.train.frozen.FrozenStrategy`). The cell arrives typed, a
:class:`tlcgcnn.config.Cell` (the Snakemake adapters rebuild it from the rule's params with
:meth:`~tlcgcnn.config.Cell.from_params`); a seed's :func:`run_key` hashes the cell's plain
values (:meth:`~tlcgcnn.config.Cell.as_params`), so finished seeds keep their keys.
"""

from __future__ import annotations

import logging
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.config import MODE_DEFAULTS, SOURCE_OUTPUT_FEATURES, Cell
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


def _graph(cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and training settings of a graph-model cell."""
    if cell.model is None or cell.train is None:
        raise ValueError(f"mode {cell.mode.name}: not a graph-model cell (it has no model and training settings)")
    return cell.model, cell.train


def mode_fields(cell: Cell, pretrain_n_train: int | None) -> dict[str, Any]:
    """Descriptive fields of a cell's mode, copied into every record (tables, figures)."""
    mode, pre = cell.mode, cell.pretrain
    props = pre.target.properties if pre else None
    return {
        "mode": mode.name,
        "family": mode.family,
        # an estimator; a source-output control without one (zero_shot, recalibrated); a graph model
        "model_kind": mode.estimator
        or (mode.features if mode.features in SOURCE_OUTPUT_FEATURES else _graph(cell)[0]["kind"]),
        "freeze": int(mode.freeze),
        "reinit": mode.reinit,
        "pretrained": mode.pretrained,
        "pretrain_property": ("+".join(props) if props else pre.target.property) if pre else None,
        "pretrain_subset": pre.target.subset if pre else None,
        "pretrain_size": pretrain_n_train,
        **({"features": mode.features} if mode.features else {}),  # frozen features (tlcgcnn.train.frozen)
        "backbone_lr_scale": float(mode.backbone_lr_scale) if mode.pretrained else None,
        # said only for train_pool: all (the records of the other modes are what they were)
        **({"train_pool": mode.train_pool} if mode.train_pool != MODE_DEFAULTS["train_pool"] else {}),
        **({"validate_source": True} if mode.validate_source else {}),
    }


# the training settings every graph-model record repeats (the fine-tuning protocol)
PROTOCOL_FIELDS = ("lr", "epochs", "warmup_epochs", "patience", "schedule", "batch_size", "weight_decay", "optimizer")


def train_fields(cell: Cell) -> dict[str, Any]:
    """The resolved training settings of a graph-model cell that its records carry (lr,
    epochs, warm-up, early-stopping patience, schedule, ...): the protocol the tables compare."""
    train = _graph(cell)[1]
    return {k: train[k] for k in PROTOCOL_FIELDS}


def run_key(cell: Cell, seed: int, inputs: dict[str, str]) -> str:
    """What one seed's results depend on: the cell's settings (its plain values,
    :meth:`~tlcgcnn.config.Cell.as_params`, but not its list of seeds), the seed and the
    contents of its input files. A finished seed with the same key is reused."""
    settings = {k: v for k, v in cell.as_params().items() if k != "seeds"}
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


@dataclass(frozen=True)
class SeedRun:
    """A seed's own folder (``runs/s<seed>/``) and its :func:`run_key`."""

    path: Path
    key: str


class SeedStrategy(ABC):
    """What one kind of cell does for one seed; :func:`run_cell` runs every seed through it.

    ``fields``: the cell's descriptive record fields (a record kept from an earlier job gets
    them too). ``inputs``: the files a seed's results depend on; with them each seed lives in
    ``runs/s<seed>/`` and a seed finished with the same :func:`run_key` is reused, without
    them (None) every seed is computed each time the job runs and nothing is kept per seed."""

    fields: dict[str, Any]
    inputs: dict[str, str] | None = None

    @abstractmethod
    def run_seed(self, seed: int, run: SeedRun | None) -> tuple[dict[str, Any], pd.DataFrame]:
        """Train or fit, and test, one seed: its record and its test predictions (without the
        ``seed`` column). ``run``: the seed's folder, created and stamped with its key, where
        the strategy has ``inputs``; else None."""

    def note(self, record: dict[str, Any]) -> str:
        """What the log line of a newly computed seed says after its test error."""
        return ""

    def train_pending(self, pending: list[tuple[int, SeedRun]]) -> None:  # noqa: B027 (optional hook)
        """Called once before the seeds run with those that need computing (their folders
        created and stamped): a strategy may train them together here (the default does
        nothing; each seed is then done by :meth:`run_seed`)."""


def run_cell(cell: Cell, strategy: SeedStrategy, out_metrics: str, out_predictions: str) -> list[dict[str, Any]]:
    """Every seed of ``cell`` through ``strategy``: one record per seed in ``out_metrics`` and
    the predictions of all seeds (with a ``seed`` column) in ``out_predictions``, each written
    atomically once every seed is done. Seeds of a strategy with ``inputs`` are kept in
    ``runs/`` next to ``out_metrics`` (see :class:`SeedStrategy`)."""
    runs = Path(out_metrics).parent / "runs"
    name, size, mode = cell.target.name, cell.size, cell.mode.name
    records, preds = [], []
    plan: list[tuple[int, SeedRun | None, dict[str, Any] | None]] = []
    for s in cell.seeds:
        seed = int(s)
        run = SeedRun(runs / f"s{seed}", run_key(cell, seed, strategy.inputs)) if strategy.inputs is not None else None
        kept = _finished(run.path, run.key) if run is not None else None
        if run is not None and kept is None:
            run.path.mkdir(parents=True, exist_ok=True)
            io.write_text(run.path / "run_key", run.key)
        plan.append((seed, run, kept))
    strategy.train_pending([(seed, run) for seed, run, kept in plan if run is not None and kept is None])
    for seed, run, kept in plan:
        if run is not None and kept is not None:
            log.info("%s n=%s %s seed %d: finished before (error %.4f): kept", name, size, mode, seed, kept["error"])
            rec = {**strategy.fields, **kept}  # a record written before a field existed: same settings (run key)
            pred = pd.read_parquet(run.path / "predictions.parquet")
        else:
            rec, pred = strategy.run_seed(seed, run)
            log.info("%s n=%s %s seed %d: error %.4f%s", name, size, mode, seed, rec["error"], strategy.note(rec))
        records.append(rec)
        preds.append(pred.assign(seed=seed))
    io.write_parquet(pd.concat(preds, ignore_index=True), out_predictions)
    io.write_json(out_metrics, records)
    return records


class GraphStrategy(SeedStrategy):
    """A graph-model cell: per seed, train a model (from the source checkpoint for a transfer
    mode, :func:`tlcgcnn.train.loop.run_training`) and evaluate it on the test set, in the
    seed's ``runs/s<seed>/`` (resumable; reused once finished). Under ``train.ensemble: on``
    (``auto``: on a GPU) the seeds still to train are trained first, together, as one vmapped
    ensemble (:meth:`train_pending`, :func:`tlcgcnn.train.ensemble.fit_seeds`)."""

    def __init__(
        self,
        cell: Cell,
        *,
        table_path: str,
        split_path: str,
        graph_dir: str,
        atom_features_path: str,
        pretrained: str | None,
        split_cfg: dict[str, Any],
        threads: int,
        config: dict[str, Any] | None,
        device: str | None = None,
    ) -> None:
        from tlcgcnn.train.checkpoint import load_checkpoint
        from tlcgcnn.train.loop import TrainConfig

        model, train = _graph(cell)
        if cell.mode.pretrained and not pretrained:
            raise ValueError(f"mode {cell.mode.name} starts from {cell.mode.pretrained}: its checkpoint is needed")
        if pretrained and not cell.mode.pretrained:
            raise ValueError(f"mode {cell.mode.name} trains from scratch, but a pretrained checkpoint was given")
        self.cell, self.model = cell, model
        self.train = TrainConfig.from_dict({**train, "threads": int(threads)})
        self.device = device or str(train["device"])
        self.table_path, self.split_path, self.graph_dir = table_path, split_path, graph_dir
        self.atom_features_path, self.pretrained = atom_features_path, pretrained
        self.split_cfg, self.config = split_cfg, config
        self.table_df = pd.read_parquet(table_path)
        pre_n = len(load_checkpoint(pretrained)["split"]["train"]) if pretrained else None
        self.fields = {**mode_fields(cell, pre_n), **train_fields(cell)}
        self.inputs = {"table": table_path, "split": split_path, "graphs": str(Path(graph_dir) / "manifest.json")}
        if pretrained:
            self.inputs["pretrained"] = pretrained
        self.trained_together: set[int] = set()  # seeds trained by train_pending in this job

    def run_seed(self, seed: int, run: SeedRun | None) -> tuple[dict[str, Any], pd.DataFrame]:
        from tlcgcnn.analysis.evaluate import evaluate

        if run is None:
            raise ValueError("a graph-model seed is trained in its own runs/s<seed>/ folder")
        if seed not in self.trained_together:
            self._train_one(seed, run)
        rec = evaluate(
            run.path / "model.pt",
            self.table_df,
            self.graph_dir,
            run.path / "metrics.json",
            run.path / "predictions.parquet",
            device=self.device,
            extra={"stage": "finetune", "size": self.cell.size, **self.fields, "run_key": run.key},
        )
        return rec, pd.read_parquet(run.path / "predictions.parquet")

    def _train_one(self, seed: int, run: SeedRun) -> None:
        from tlcgcnn.train.loop import run_training

        run_training(
            stage="finetune",
            table_path=self.table_path,
            split_path=self.split_path,
            graph_dir=self.graph_dir,
            atom_features_path=self.atom_features_path,
            target=self.cell.target,
            size=self.cell.size,
            seed=seed,
            model_config=self.model,
            train_config=self.train,
            split_cfg=self.split_cfg,
            config=self.config,
            out_checkpoint=str(run.path / "model.pt"),
            mode=self.cell.mode,
            pretrained=self.pretrained,
            progress=False,
            resume_path=str(run.path / "state.pt"),
        )

    def ensemble_on(self) -> bool:
        """Whether this cell's seeds train as one ensemble (``train.ensemble``; ``auto``: on a GPU)."""
        from tlcgcnn.train.device import pick_device

        if self.train.ensemble == "auto":
            return pick_device(self.train.device).type == "cuda"
        return self.train.ensemble == "on"

    def train_pending(self, pending: list[tuple[int, SeedRun]]) -> None:
        """The seeds still to train, as one vmapped ensemble (:func:`tlcgcnn.train.ensemble.fit_seeds`)
        where ``train.ensemble`` says so and at least two are left; each gets its
        ``runs/s<seed>/model.pt`` as if trained alone. The ensemble's resumable state is
        ``runs/ensemble_state.pt`` (removed once every checkpoint is written)."""
        if len(pending) < 2 or not self.ensemble_on():
            return
        from tlcgcnn.train.ensemble import fit_seeds
        from tlcgcnn.train.loop import prepare, save_trained, training_job

        cell = self.cell
        jobs, preps = [], []
        for seed, _ in pending:
            job = training_job(
                stage="finetune",
                table_path=self.table_path,
                split_path=self.split_path,
                target=cell.target,
                size=cell.size,
                seed=seed,
                split_cfg=self.split_cfg,
                config=self.config,
                mode=cell.mode,
                pretrained=self.pretrained,
            )
            jobs.append(job)
            preps.append(
                prepare(
                    table_df=job.table_df,
                    graph_dir=self.graph_dir,
                    atom_table_path=self.atom_features_path,
                    split_ids=job.split_ids,
                    target=job.target,
                    model_cfg=self.model,
                    train_cfg=self.train,
                    seed=seed,
                    transfer=job.transfer,
                )
            )
        state = pending[0][1].path.parent / "ensemble_state.pt"
        seeds = [seed for seed, _ in pending]
        desc = f"{cell.target.name} n={cell.size} {cell.mode.name}"
        log.info("%s: seeds %s trained together as one ensemble", desc, seeds)
        results = fit_seeds(preps, self.train, state_path=state, progress=False, desc=desc)
        for (seed, run), prep, job, result in zip(pending, preps, jobs, results, strict=True):
            save_trained(prep, result, self.train, run.path / "model.pt", job.meta)
            self.trained_together.add(seed)
        state.unlink(missing_ok=True)

    def note(self, record: dict[str, Any]) -> str:
        return f" ({int(record['n_params'])} params, {float(record['seconds']):.1f} s)"


def finetune_cell(
    *,
    cell: Cell,
    table_path: str,
    split_path: str,
    graph_dir: str,
    atom_features_path: str,
    pretrained: str | None,
    split_cfg: dict[str, Any],
    threads: int,
    config: dict[str, Any] | None,
    out_metrics: str,
    out_predictions: str,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every seed of a graph-model cell (``runs/`` next to ``out_metrics``).
    ``pretrained``: the source checkpoint of a transfer mode; ``device``: the cell's
    ``train.device`` where None."""
    strategy = GraphStrategy(
        cell,
        table_path=table_path,
        split_path=split_path,
        graph_dir=graph_dir,
        atom_features_path=atom_features_path,
        pretrained=pretrained,
        split_cfg=split_cfg,
        threads=threads,
        config=config,
        device=device,
    )
    return run_cell(cell, strategy, out_metrics, out_predictions)


class BaselineStrategy(SeedStrategy):
    """A scikit-learn baseline on composition descriptors: per seed, fit on the seed's training
    ids (those of the graph-model cells of the same size and seed) and predict the test set.
    Computed anew each time the job runs (no ``runs/``)."""

    def __init__(
        self,
        cell: Cell,
        *,
        table_path: str,
        descriptors_path: str,
        split_path: str,
        split_cfg: dict[str, Any],
        threads: int,
    ) -> None:
        from tlcgcnn.data.split import pool_ids
        from tlcgcnn.data.targets import target_from_spec

        if cell.kind != "baseline" or cell.mode.estimator is None:
            raise ValueError(f"mode {cell.mode.name}: not a baseline mode (an estimator on composition descriptors)")
        self.cell, self.estimator = cell, cell.mode.estimator
        self.target = target_from_spec(cell.target)
        sp = io.read_json(split_path)
        self.test_ids = list(sp["test"])
        self.pool = pool_ids(sp, cell.mode.train_pool)
        self.desc = pd.read_parquet(descriptors_path).set_index("material_id")
        self.df = pd.read_parquet(table_path, columns=["material_id", self.target.property])
        self.fields = mode_fields(cell, None)
        self.split_cfg, self.threads = split_cfg, threads

    def run_seed(self, seed: int, run: SeedRun | None) -> tuple[dict[str, Any], pd.DataFrame]:
        from tlcgcnn.analysis.evaluate import classification_metrics, regression_metrics, run_record
        from tlcgcnn.data.split import train_val
        from tlcgcnn.data.targets import labels
        from tlcgcnn.train.baselines import fit_predict

        target, test_ids, cfg = self.target, self.test_ids, self.split_cfg
        tv = train_val(self.pool, self.cell.size, seed, cfg["val_fraction"], cfg["val_min"])
        y_train = pd.Series(labels(self.df, tv.train, target), index=tv.train)
        pred, info = fit_predict(
            self.estimator, target.task, self.desc, y_train, tv.train, test_ids, seed, self.threads
        )
        y_true = labels(self.df, test_ids, target)
        if target.task == "classification":
            metrics = classification_metrics(y_true, pred)
        else:
            metrics = regression_metrics(y_true, pred)
            metrics["error"] = metrics["mae"]
        rec = run_record(
            metrics=metrics,
            target=target,
            seed=seed,
            n_train=len(tv.train),
            n_val=0,
            stage="finetune",
            mode=self.fields["mode"],
            size=self.cell.size,
            extra={
                "n_params": None,
                "seconds": info["seconds"],
                **self.fields,
                "best_params": info["best_params"],
                "cv_score": info["cv_score"],
                "cv_folds": info["cv_folds"],
            },
        )
        return rec, pd.DataFrame({"material_id": test_ids, "y_true": y_true, "y_pred": np.asarray(pred)})

    def note(self, record: dict[str, Any]) -> str:
        return f", CV best {record['best_params']}"


def baseline_cell(
    *,
    cell: Cell,
    table_path: str,
    descriptors_path: str,
    split_path: str,
    split_cfg: dict[str, Any],
    threads: int,
    out_metrics: str,
    out_predictions: str,
) -> list[dict[str, Any]]:
    """Fit a scikit-learn baseline on composition descriptors for every seed of a cell."""
    strategy = BaselineStrategy(
        cell,
        table_path=table_path,
        descriptors_path=descriptors_path,
        split_path=split_path,
        split_cfg=split_cfg,
        threads=threads,
    )
    return run_cell(cell, strategy, out_metrics, out_predictions)
