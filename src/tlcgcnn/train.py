"""Pretraining and fine-tuning of graph models.

One entry point, :func:`train`, serves both stages: it fits a model on a target property
(optionally starting from a pretrained checkpoint, with layers frozen or re-initialised),
early-stops on validation MAE and writes a checkpoint that holds the weights, the target's
normaliser (fitted on the training split only), the model config, the split ids, the
training history and provenance. Checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlcgcnn import atom_features, graphs, io
from tlcgcnn.graphs import GraphSet
from tlcgcnn.models import build_model
from tlcgcnn.normalize import MultiNormalizer, Normalizer, transform

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20
    optimizer: str = "adam"
    momentum: float = 0.9
    device: str = "auto"
    amp: str = "none"  # "none" or "bf16"
    normalizer: str = "zscore"
    threads: int = 1
    eval_batch_size: int = 512

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class TransferConfig:
    """How a pretrained model is reused. ``freeze`` = number of conv layers frozen together
    with the embedding (0: nothing frozen). ``reinit``: 'none' keeps every pretrained weight,
    'head' re-initialises the layers after the convolutions, 'unfrozen' re-initialises
    everything that is not frozen (the layer-freezing study)."""

    checkpoint: str | None = None
    freeze: int = 0
    reinit: str = "none"


@dataclass
class Target:
    """What a model learns. ``task``: 'regression' (MSE on the normalised target),
    'classification' (binary, BCE on logits; ``property`` is a boolean such as is_metal) or
    'multitask' (MT-CGCNN: one output per entry of ``properties``, loss = Σ weight · MSE over
    the labelled entries only; ``property`` is the first one and defines the split)."""

    name: str
    property: str
    transform: str = "none"
    subset: str = "all"
    task: str = "regression"
    properties: list[str] | None = None
    weights: list[float] | None = None

    @property
    def n_out(self) -> int:
        return len(self.properties) if self.task == "multitask" and self.properties else 1


TASKS = ("regression", "classification", "multitask")


def masked_mse(out: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_t w_t · MSE_t over the labelled entries of column t (NaN = missing label: it adds
    nothing to the loss nor to the gradient). A column without labels in the batch adds 0."""
    mask = ~torch.isnan(y)
    diff = torch.where(mask, out - torch.nan_to_num(y), torch.zeros_like(out))
    per_task = (diff**2).sum(0) / mask.sum(0).clamp(min=1)
    return (weights.to(out.dtype) * per_task).sum()


@dataclass
class Objective:
    """Training loss and validation score (lower is better) of a task."""

    task: str = "regression"
    weights: torch.Tensor | None = None

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "multitask":
            assert self.weights is not None
            return masked_mse(out, target, self.weights)
        out = out.squeeze(-1)
        if self.task == "classification":
            return torch.nn.functional.binary_cross_entropy_with_logits(out, target)
        return torch.nn.functional.mse_loss(out, target)

    def val_score(self, raw: torch.Tensor, y_norm: torch.Tensor, y: torch.Tensor, normalizer: Normalizer | MultiNormalizer) -> float:
        """Regression: MAE in target units. Classification: BCE. Multi-task: mean over the
        properties of the MAE on the normalised scale (labelled entries only)."""
        if self.task == "classification":
            return float(torch.nn.functional.binary_cross_entropy_with_logits(raw.squeeze(-1), y))
        if self.task == "multitask":
            mask = ~torch.isnan(y_norm)
            err = torch.where(mask, (raw - torch.nan_to_num(y_norm)).abs(), torch.zeros_like(raw))
            return float((err.sum(0) / mask.sum(0).clamp(min=1)).mean())
        pred = normalizer.denorm(raw.squeeze(-1))
        return float((pred - y).abs().mean())


@dataclass
class TrainResult:
    best_epoch: int
    best_val_mae: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- utilities


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if visible not in ("", "-1", "NoDevFiles"):
            # e.g. a SLURM job that was given a GPU, with a CPU-only torch or no driver
            log.warning(
                "CUDA_VISIBLE_DEVICES=%s (GPUs allocated to this job) but torch %s sees no usable CUDA device "
                "(built for CUDA %s); falling back to CPU",
                visible,
                torch.__version__,
                torch.version.cuda or "none",
            )
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available; falling back to CPU", name)
        return torch.device("cpu")
    return dev


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format {ckpt.get('format_version')} is not {CHECKPOINT_VERSION}")
    return ckpt


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    with io.atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    table = ckpt["state_dict"]["atom_table"]
    model = build_model(ckpt["model_config"], table)
    model.load_state_dict(ckpt["state_dict"])
    return model


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()  # type: ignore[operator]


def frozen_modules(model: nn.Module, k: int) -> list[nn.Module]:
    if k <= 0:
        return []
    n_conv = len(model.convs)  # type: ignore[arg-type]
    if k > n_conv:
        raise ValueError(f"cannot freeze {k} conv layers: the model has {n_conv}")
    return [model.embedding, *list(model.convs)[:k]]  # type: ignore[index]


def apply_transfer(model: nn.Module, pretrained: dict[str, Any], tcfg: TransferConfig) -> list[nn.Module]:
    """Load pretrained weights, re-initialise and freeze as configured; returns frozen modules."""
    pre_cfg = {k: v for k, v in pretrained["model_config"].items() if k != "n_out"}
    own_cfg = {k: v for k, v in model.config.to_dict().items() if k != "n_out"}  # type: ignore[union-attr]
    if pre_cfg != own_cfg:
        raise ValueError(f"pretrained model config {pre_cfg} does not match the fine-tuning model {own_cfg}")
    state = dict(pretrained["state_dict"])
    own = model.state_dict()
    for key in list(state):  # a head of another width (multi-task source) is not loaded
        if key in own and state[key].shape != own[key].shape:
            state.pop(key)
    model.load_state_dict(state, strict=False)
    frozen = frozen_modules(model, tcfg.freeze)
    if tcfg.reinit == "head":
        for m in model.head_modules():  # type: ignore[operator]
            _reset(m)
    elif tcfg.reinit == "unfrozen":
        keep = {id(p) for m in frozen for p in m.parameters()}
        for m in [*model.convs, *model.head_modules()]:  # type: ignore[misc]
            if not any(id(p) in keep for p in m.parameters()):
                _reset(m)
    elif tcfg.reinit != "none":
        raise ValueError(f"unknown reinit {tcfg.reinit!r}; choose none, head or unfrozen")
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Training mode, except frozen layers keep BatchNorm running statistics fixed."""
    model.train()
    for m in frozen:
        m.eval()


# --------------------------------------------------------------------------- fitting


@torch.no_grad()
def predict(model: nn.Module, data: GraphSet, positions: torch.Tensor, batch_size: int, amp: str = "none") -> torch.Tensor:
    model.eval()
    outs = []
    dev = data.z.device
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        for b in data.batches(positions, batch_size):
            outs.append(model(b).float())
    return torch.cat(outs) if outs else torch.zeros(0, 1, device=dev)


def fit(
    model: nn.Module,
    data: GraphSet,
    y: torch.Tensor,
    train_pos: torch.Tensor,
    val_pos: torch.Tensor,
    normalizer: Normalizer,
    cfg: TrainConfig,
    seed: int,
    frozen: list[nn.Module] | None = None,
    desc: str = "train",
    progress: bool = True,
    objective: Objective | None = None,
) -> TrainResult:
    """Minimise the objective's loss (default: MSE on normalised targets); keep the weights
    of the best validation score (default: validation MAE)."""
    from tqdm.auto import tqdm

    frozen = frozen or []
    objective = objective or Objective()
    dev = data.z.device
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")
    gen = torch.Generator().manual_seed(seed)
    y_norm = y if objective.task == "classification" else normalizer.norm(y)
    y_val = y[val_pos]
    best = (float("inf"), -1)
    best_state = copy.deepcopy(model.state_dict())
    hist: dict[str, list[float]] = {"train_loss": [], "val_mae": []}
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not progress, mininterval=2.0)
    for epoch in bar:
        set_train_mode(model, frozen)
        total, count = 0.0, 0
        for b_pos in _batch_positions(train_pos, cfg.batch_size, gen):
            if b_pos.numel() < 2:  # BatchNorm needs two samples
                continue
            batch = data.batch(b_pos)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
                out = model(batch).float()
            loss = objective.loss(out, y_norm[b_pos])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * b_pos.numel()
            count += b_pos.numel()
        raw = predict(model, data, val_pos, cfg.eval_batch_size, cfg.amp)
        val_mae = objective.val_score(raw, y_norm[val_pos], y_val, normalizer)
        hist["train_loss"].append(total / max(count, 1))
        hist["val_mae"].append(val_mae)
        if val_mae < best[0]:
            best = (val_mae, epoch)
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{hist['train_loss'][-1]:.4f}", val_mae=f"{val_mae:.4f}", best=f"{best[0]:.4f}")
        if epoch - best[1] >= cfg.patience:
            log.info("early stop at epoch %d (best %d, val MAE %.4f)", epoch, best[1], best[0])
            break
    bar.close()
    model.load_state_dict(best_state)
    return TrainResult(best_epoch=best[1], best_val_mae=best[0], history=hist, seconds=time.perf_counter() - t0)


def _batch_positions(pos: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = pos[torch.randperm(pos.numel(), generator=gen).to(pos.device)]
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() < 2:  # fold a lone last sample into the previous batch
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


# --------------------------------------------------------------------------- entry point


def labels(table_df: Any, ids: list[str], target: Target) -> np.ndarray:
    """Labels of ``ids``: a vector, or for a multi-task target a [n, properties] matrix in
    which NaN marks a missing label (only the first property must be present)."""
    indexed = table_df.set_index("material_id")
    if target.task == "multitask" and target.properties:
        mat = np.column_stack([indexed.loc[ids, p].to_numpy(dtype=np.float64, na_value=np.nan) for p in target.properties])
        if np.isnan(mat[:, 0]).any():
            raise ValueError(f"{int(np.isnan(mat[:, 0]).sum())} of the selected materials have no {target.properties[0]} label")
        out = np.full_like(mat, np.nan)
        ok = ~np.isnan(mat)
        for j in range(mat.shape[1]):
            out[ok[:, j], j] = transform(mat[ok[:, j], j], target.transform)
        return out
    col = indexed.loc[ids, target.property].to_numpy(dtype=np.float64, na_value=np.nan)
    if target.task == "classification":
        if np.isnan(col).any():
            raise ValueError(f"{int(np.isnan(col).sum())} of the selected materials have no {target.property} label")
        return col
    if np.isnan(col).any():
        raise ValueError(f"{int(np.isnan(col).sum())} of the selected materials have no {target.property} label")
    return transform(col, target.transform)


def train(
    *,
    table_df: Any,
    graph_dir: str | Path,
    atom_table_path: str | Path,
    split_ids: dict[str, list[str]],
    target: Target,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    seed: int,
    out_checkpoint: str | Path,
    transfer: TransferConfig | None = None,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit one model and write its checkpoint. ``split_ids`` holds 'train', 'val', 'test'."""
    set_seed(seed)
    torch.set_num_threads(max(1, train_cfg.threads))
    torch.set_flush_denormal(True)  # denormals slow CPU kernels down several-fold
    device = pick_device(train_cfg.device)
    log.info("device: %s (threads %d)%s", device, torch.get_num_threads(), f" {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    ids = split_ids["train"] + split_ids["val"]
    data = graphs.load(graph_dir, ids).to(device)
    y = torch.as_tensor(labels(table_df, ids, target), dtype=torch.float32, device=device)
    n_tr = len(split_ids["train"])
    train_pos = torch.arange(n_tr, device=device)
    val_pos = torch.arange(n_tr, len(ids), device=device)
    normalizer: Normalizer | MultiNormalizer
    if target.task == "multitask":
        normalizer = MultiNormalizer.fit(y[:n_tr].cpu().numpy(), train_cfg.normalizer)
    elif target.task == "classification":
        normalizer = Normalizer("zscore", 0.0, 1.0)  # outputs are logits
    else:
        normalizer = Normalizer.fit(y[:n_tr].cpu().numpy(), train_cfg.normalizer)
    weights = torch.as_tensor(target.weights or [1.0] * target.n_out, dtype=torch.float32, device=device)
    objective = Objective(task=target.task, weights=weights)

    table = torch.from_numpy(atom_features.load_matrix(atom_table_path))
    model = build_model({**model_cfg, "n_out": target.n_out}, table)
    frozen: list[nn.Module] = []
    if transfer is not None and transfer.checkpoint:
        pre = load_checkpoint(transfer.checkpoint)
        frozen = apply_transfer(model, pre, transfer)
        log.info("transfer from %s: freeze=%d reinit=%s", transfer.checkpoint, transfer.freeze, transfer.reinit)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s: %d train / %d val crystals; %d parameters (%d trainable)", target.name, n_tr, len(split_ids["val"]), n_params, n_trainable)
    result = fit(model, data, y, train_pos, val_pos, normalizer, train_cfg, seed, frozen, desc=target.name, progress=progress, objective=objective)
    ckpt = {
        "format_version": CHECKPOINT_VERSION,
        "model_config": model.config.to_dict(),  # type: ignore[union-attr]
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalizer": normalizer.to_dict(),
        "target": asdict(target),
        "split": {k: list(v) for k, v in split_ids.items()},
        "seed": int(seed),
        "train_config": asdict(train_cfg),
        "transfer": asdict(transfer) if transfer else None,
        "result": {
            "best_epoch": result.best_epoch,
            "best_val_mae": result.best_val_mae,
            "epochs_run": len(result.history["val_mae"]),
            "seconds": result.seconds,
            "n_params": n_params,
            "n_trainable": n_trainable,
            "device": str(device),
        },
        "history": result.history,
        "meta": meta or {},
    }
    save_checkpoint(ckpt, out_checkpoint)
    log.info("best val MAE %.4f at epoch %d after %.1f s -> %s", result.best_val_mae, result.best_epoch, result.seconds, out_checkpoint)
    return ckpt


def run_training(
    *,
    stage: str,
    table_path: str,
    split_path: str,
    graph_dir: str,
    atom_features_path: str,
    pretrained: list[str],
    spec: dict[str, Any],
    size: int | str,
    seed: int,
    mode: str | None,
    split_cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    transfer: dict[str, Any] | None,
    threads: int,
    config: dict[str, Any] | None,
    out_checkpoint: str,
    progress: bool = True,
    exclude_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Workflow entry: resolve the split of (size, seed) and train one model.

    ``exclude_ids`` are removed from the training pool first (pretraining leaves out the
    fixed test sets of the fine-tuning targets, so no test material is ever seen)."""
    import pandas as pd

    from tlcgcnn import provenance
    from tlcgcnn.split import train_val

    props = list(dict.fromkeys([spec["property"], *(spec.get("properties") or [])]))
    df = pd.read_parquet(table_path, columns=["material_id", *props])
    sp = io.read_json(split_path)
    size_v: int | str = size if str(size) == "all" else int(size)
    pool = list(sp["pool"])
    if exclude_ids:
        drop = set(exclude_ids)
        pool = [i for i in pool if i not in drop]
        log.info("%d of %d pool materials are fine-tuning test materials: left out", len(sp["pool"]) - len(pool), len(sp["pool"]))
    tv = train_val(pool, size_v, int(seed), split_cfg["val_fraction"], split_cfg["val_min"])
    split_ids = {"train": tv.train, "val": tv.val, "test": list(sp["test"])}
    target = target_from_spec(spec)
    tcfg = TrainConfig.from_dict({**train_cfg, "threads": int(threads)})
    tr = None
    if pretrained:
        spec_t = transfer or {}
        tr = TransferConfig(checkpoint=pretrained[0], freeze=int(spec_t.get("freeze", 0)), reinit=str(spec_t.get("reinit", "none")))
    prov = provenance.record(config, io.sha256_file(table_path))
    meta = {
        "stage": stage,
        "mode": mode or stage,
        "size": size_v,
        "pretrained": (transfer or {}).get("pretrained") if pretrained else None,
        "config_sha256": prov["config_sha256"],
        "data_sha256": prov["data_sha256"],
        "git_commit": prov["code"]["git_commit"],
        "package_version": prov["code"]["package"],
        "torch_version": prov["torch"],
    }
    return train(
        table_df=df,
        graph_dir=graph_dir,
        atom_table_path=atom_features_path,
        split_ids=split_ids,
        target=target,
        model_cfg=model_cfg,
        train_cfg=tcfg,
        seed=int(seed),
        out_checkpoint=out_checkpoint,
        transfer=tr,
        meta=meta,
        progress=progress,
    )


def target_from_spec(spec: dict[str, Any]) -> Target:
    """Target of a config entry (pretrain or finetune target)."""
    props = spec.get("properties")
    task = spec.get("task") or ("multitask" if props and len(props) > 1 else "regression")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    weights = spec.get("weights")
    if props and weights and len(weights) != len(props):
        raise ValueError(f"{spec['name']}: {len(weights)} weights for {len(props)} properties")
    return Target(
        name=spec["name"],
        property=props[0] if props else spec["property"],
        transform=spec.get("transform", "none"),
        subset=spec.get("subset", "all"),
        task=task,
        properties=list(props) if task == "multitask" and props else None,
        weights=[float(w) for w in weights] if task == "multitask" and weights else None,
    )


def exclude_ids(split_files: list[str]) -> list[str]:
    """Test ids of the given split files (the fine-tuning targets' fixed test sets)."""
    out: list[str] = []
    for path in split_files:
        out.extend(io.read_json(path)["test"])
    return sorted(set(out))
