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
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcgcnn import atom_features, graphs, io
from tlcgcnn.checkpoint import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from tlcgcnn.device import pick_device, set_seed
from tlcgcnn.graphs import GraphSet
from tlcgcnn.models import build_model
from tlcgcnn.normalize import MultiNormalizer, Normalizer
from tlcgcnn.objectives import Objective
from tlcgcnn.targets import Target, labels, target_from_spec
from tlcgcnn.transfer import TransferConfig, apply_transfer, set_train_mode

log = logging.getLogger(__name__)


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
class TrainResult:
    best_epoch: int
    best_val_mae: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- utilities


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
    resume_path: str | None = None,
) -> dict[str, Any]:
    """Workflow entry: resolve the split of (size, seed) and train one model.

    ``spec``, ``model_cfg`` and ``train_cfg`` are complete (tlcgcnn.config resolves them).
    ``exclude_ids`` are removed from the training pool first (pretraining leaves out the
    fixed test sets of the fine-tuning targets, so no test material is ever seen).
    ``resume_path``: the training loop's resumable state (continued if it exists)."""
    import pandas as pd

    from tlcgcnn import provenance
    from tlcgcnn.config import parse_size
    from tlcgcnn.split import train_val

    props = list(dict.fromkeys([spec["property"], *(spec.get("properties") or [])]))
    df = pd.read_parquet(table_path, columns=["material_id", *props])
    sp = io.read_json(split_path)
    size_v = parse_size(size)
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


def exclude_ids(split_files: list[str]) -> list[str]:
    """Test ids of the given split files (the fine-tuning targets' fixed test sets)."""
    out: list[str] = []
    for path in split_files:
        out.extend(io.read_json(path)["test"])
    return sorted(set(out))
