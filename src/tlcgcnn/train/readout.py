"""Fine-tune a universal potential's read-out on a target (``features: readout``).

Config: ``finetune.modes.<m>: {pretrained: <a backbone source>, features: readout}``, with
``reinit: head`` to start the last layer afresh and ``backbone_lr_scale`` for the learning rate
of the layers that keep their pretrained weights (discriminative fine-tuning, as for CGCNN).

CHGNet predicts a crystal's energy per atom as the mean over its atoms of one MLP (the
read-out: 64 → 64 → 64 → 64 → 1, SiLU) applied to each atom's features after the last
interaction block and the read-out layer norm. This mode keeps the interaction blocks frozen
and trains that MLP, from its pretrained weights, to predict the target instead: the
prediction is ``mean + std * mean_over_atoms(MLP(atom features))`` with the training labels'
mean and standard deviation. The atom features are computed once per structure and cached
for the run (:func:`tlcgcnn.features.backbones.embed_atoms`), so a seed trains a 13k-parameter
MLP on fixed inputs: seconds on a CPU, where fine-tuning the blocks would take hours.

Per seed (the training / validation draw of the graph models of the same size and seed,
:func:`tlcgcnn.train.frozen.cell_ids`): mini-batches of crystals, MSE on the standardised
target, AdamW, the schedule and warm-up of the cell's training settings, the validation MAE
(target units) after every epoch, early stopping after ``patience`` epochs without
improvement and the best epoch's weights kept. Each seed lives in ``runs/s<seed>/``
(``model.pt``: the trained read-out's weights and normalisation; ``metrics.json``;
``predictions.parquet``), and a finished seed is reused when the cell runs again
(:func:`tlcgcnn.train.finetune.run_cell`). Regression targets only.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.config import Cell
from tlcgcnn.train.finetune import SeedRun, SeedStrategy, mode_fields, train_fields
from tlcgcnn.train.frozen import cell_ids, test_metrics
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


def _packed(feats: dict[str, np.ndarray], ids: list[str]) -> tuple[Any, Any, Any]:
    """The atom rows of ``ids`` stacked [atoms, width], each row's crystal index, and the
    crystals' atom counts (torch tensors)."""
    import torch

    arrays = [feats[i] for i in ids]
    counts = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    atoms = torch.from_numpy(np.concatenate(arrays).astype(np.float32))
    owner = torch.repeat_interleave(torch.arange(len(ids)), counts)
    return atoms, owner, counts


def crystal_outputs(mlp: Any, atoms: Any, owner: Any, counts: Any) -> Any:
    """Mean over each crystal's atoms of the read-out's per-atom outputs (one per crystal)."""
    import torch

    per_atom = mlp(atoms).squeeze(-1)
    total = torch.zeros(len(counts), dtype=per_atom.dtype).index_add_(0, owner, per_atom)
    return total / counts.to(per_atom.dtype)


def _reset_head(mlp: Any, seed: int) -> None:
    """Re-initialise the read-out's last linear layer (PyTorch's default init, seeded)."""
    import torch

    last = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        last.reset_parameters()


class ReadoutStrategy(SeedStrategy):
    """A read-out fine-tuning cell: the backbone's atom features of every crystal the cell's
    seeds need, computed (or read from the run's cache) once; per seed its read-out MLP
    trained from the pretrained weights, validated and tested."""

    def __init__(
        self,
        cell: Cell,
        *,
        table_path: str,
        split_path: str,
        split_cfg: dict[str, Any],
        threads: int,
        config: dict[str, Any] | None,
        atom_cache: str | None = None,
        device: str = "auto",
    ) -> None:
        from tlcgcnn.data.targets import target_from_spec
        from tlcgcnn.features import backbones
        from tlcgcnn.report import provenance

        mode = cell.mode
        backbone = cell.pretrain.backbone if cell.pretrain else None
        if mode.kind != "readout" or not backbone:
            raise ValueError(f"mode {mode.name}: not a read-out mode (needs a backbone source and features: readout)")
        self.cell, self.threads, self.backbone = cell, int(threads), backbones.get(backbone)
        self.target = target = target_from_spec(cell.target)
        if target.task != "regression":
            raise ValueError(
                f"mode {mode.name}: read-out fine-tuning is built for regression targets, not {target.task}"
            )
        if cell.train is None:
            raise ValueError(f"mode {mode.name}: the cell has no training settings")
        self.train = dict(cell.train)
        sp = io.read_json(split_path)
        self.test_ids = list(sp["test"])
        self.draws, ids = cell_ids(sp, cell.size, cell.seeds, split_cfg, mode.train_pool)
        table = pd.read_parquet(table_path)
        self.feats, info = backbones.embed_atoms(
            table, backbone, ids=ids, device=device, cache=atom_cache, threads=self.threads, progress=False
        )
        self.device, self.hardware = "cpu", backbones._hardware("cpu")
        self.embed_seconds = info["seconds"]
        log.info(
            "%s: atom features of %d crystals (%d computed now) by %s in %.1f s",
            target.name,
            len(ids),
            info["n_embedded"],
            backbone,
            info["seconds"],
        )
        self.df = table[["material_id", target.property]]
        self.version = backbones.package_version(self.backbone)
        self.fields = {**mode_fields(cell, None), **train_fields(cell), "model_kind": f"{backbone} read-out"}
        self.source = {
            "backbone": backbone,
            "backbone_package": f"{self.backbone.package}=={self.version}",
            "backbone_licence": self.backbone.licence,
            "backbone_training_data": self.backbone.training_data,
        }
        self.prov = provenance.record(config, io.sha256_file(table_path))
        self.inputs = {"table": table_path, "split": split_path}

    def _pretrained_mlp(self) -> Any:
        from tlcgcnn.features.backbones import load_chgnet

        return copy.deepcopy(load_chgnet(self.backbone, "cpu").mlp).float()

    def fit(
        self, seed: int, train_ids: list[str], y_train: np.ndarray, val_ids: list[str], y_val: np.ndarray
    ) -> dict[str, Any]:
        """Train the read-out for one seed; the best epoch's weights, normalisation and history."""
        import torch

        from tlcgcnn.train.loop import TrainConfig, lr_factor

        cfg = TrainConfig.from_dict({**self.train, "threads": self.threads})
        torch.set_num_threads(self.threads)
        torch.manual_seed(seed)
        mlp = self._pretrained_mlp()
        pretrained_names = {n for n, _ in mlp.named_parameters()}
        if self.cell.mode.reinit == "head":
            _reset_head(mlp, seed)
            last = [n for n, m in mlp.named_modules() if isinstance(m, torch.nn.Linear)][-1]
            pretrained_names -= {f"{last}.weight", f"{last}.bias"}
        scale = float(self.cell.mode.backbone_lr_scale)
        groups = [
            {"params": [p for n, p in mlp.named_parameters() if n in pretrained_names], "lr": cfg.lr * scale},
            {"params": [p for n, p in mlp.named_parameters() if n not in pretrained_names], "lr": cfg.lr},
        ]
        groups = [g for g in groups if g["params"]]
        base_lr = [g["lr"] for g in groups]
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
        yt = torch.tensor((y_train - mean) / std, dtype=torch.float32)
        va_atoms, va_owner, va_counts = _packed(self.feats, val_ids)
        gen = torch.Generator().manual_seed(seed)
        n = len(train_ids)
        steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        best = (math.inf, -1, copy.deepcopy(mlp.state_dict()))
        history: list[float] = []
        t0 = time.perf_counter()
        epoch = 0
        for epoch in range(cfg.epochs):
            mlp.train()
            order = torch.randperm(n, generator=gen)
            for step in range(steps_per_epoch):
                for g, lr in zip(opt.param_groups, base_lr, strict=True):
                    g["lr"] = lr * lr_factor(cfg, epoch + step / steps_per_epoch)
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size].tolist()
                atoms, owner, counts = _packed(self.feats, [train_ids[i] for i in idx])
                loss = torch.nn.functional.mse_loss(crystal_outputs(mlp, atoms, owner, counts), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            mlp.eval()
            with torch.no_grad():
                pred = crystal_outputs(mlp, va_atoms, va_owner, va_counts).double().numpy() * std + mean
            val = float(np.abs(pred - y_val).mean())
            if not math.isfinite(val):
                raise FloatingPointError(
                    f"{self.cell.mode.name} seed {seed}: non-finite validation MAE at epoch {epoch + 1}"
                )
            history.append(val)
            if val < best[0]:
                best = (val, epoch + 1, copy.deepcopy(mlp.state_dict()))
            elif epoch + 1 - best[1] >= cfg.patience:
                break
        mlp.load_state_dict(best[2])
        return {
            "mlp": mlp,
            "mean": mean,
            "std": std,
            "best_val_mae": best[0],
            "best_epoch": best[1],
            "epochs_run": epoch + 1,
            "history": history,
            "seconds": time.perf_counter() - t0,
            "n_params": int(sum(p.numel() for p in mlp.parameters())),
        }

    def predict(self, fitted: dict[str, Any], ids: list[str]) -> np.ndarray:
        import torch

        atoms, owner, counts = _packed(self.feats, ids)
        with torch.no_grad():
            out = crystal_outputs(fitted["mlp"].eval(), atoms, owner, counts).double().numpy()
        return out * fitted["std"] + fitted["mean"]

    def run_seed(self, seed: int, run: SeedRun | None) -> tuple[dict[str, Any], pd.DataFrame]:
        import torch

        from tlcgcnn.analysis.evaluate import run_record
        from tlcgcnn.data.targets import labels

        if run is None:
            raise ValueError("a read-out seed is trained in its own runs/s<seed>/ folder")
        target, df, prov, tv = self.target, self.df, self.prov, self.draws[seed]
        fitted = self.fit(seed, list(tv.train), labels(df, tv.train, target), list(tv.val), labels(df, tv.val, target))
        metrics, frame = test_metrics(target, df, self.test_ids, self.predict(fitted, self.test_ids))
        with io.atomic_path(run.path / "model.pt") as tmp:
            torch.save(
                {
                    "kind": "backbone-readout",
                    "backbone": self.backbone.name,
                    "package_version": self.version,
                    "readout_state": fitted["mlp"].state_dict(),
                    "mean": fitted["mean"],
                    "std": fitted["std"],
                    "target": self.cell.target.as_dict(),
                    "seed": seed,
                    "best_epoch": fitted["best_epoch"],
                },
                tmp,
            )
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
                "best_val_mae": fitted["best_val_mae"],
                "best_epoch": fitted["best_epoch"],
                "epochs_run": fitted["epochs_run"],
                "n_params": fitted["n_params"],
                "n_trainable": fitted["n_params"],
                "seconds": fitted["seconds"],
                "embed_seconds": self.embed_seconds,
                "device": self.device,
                "hardware": self.hardware,
                "precision": "fp32",
                **self.fields,
                **self.source,
                "checkpoint": str(run.path / "model.pt"),
                "config_sha256": prov["config_sha256"],
                "data_sha256": prov["data_sha256"],
                "git_commit": prov["code"]["git_commit"],
                "package_version": prov["code"]["package"],
                "torch_version": prov["torch"],
                "run_key": run.key,
            },
        )
        io.write_parquet(frame, run.path / "predictions.parquet")
        io.write_json(run.path / "metrics.json", rec)
        return rec, frame

    def note(self, record: dict[str, Any]) -> str:
        return (
            f", validation {record['best_val_mae']:.4f} at epoch {record['best_epoch']} "
            f"({float(record['seconds']):.1f} s)"
        )


def readout_cell(
    *,
    cell: Cell,
    table_path: str,
    split_path: str,
    split_cfg: dict[str, Any],
    threads: int,
    config: dict[str, Any] | None,
    out_metrics: str,
    out_predictions: str,
    atom_cache: str | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Fine-tune the backbone's read-out for every seed of ``cell`` (see the module docstring)."""
    from tlcgcnn.train.finetune import run_cell

    strategy = ReadoutStrategy(
        cell,
        table_path=table_path,
        split_path=split_path,
        split_cfg=split_cfg,
        threads=threads,
        config=config,
        atom_cache=atom_cache,
        device=device,
    )
    return run_cell(cell, strategy, out_metrics, out_predictions)
