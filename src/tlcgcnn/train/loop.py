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
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcgcnn.config import Mode, Size, TargetSpec, TrainSettings
from tlcgcnn.data.properties import user_specs
from tlcgcnn.data.targets import Target, labels, target_from_spec
from tlcgcnn.features import atom_features
from tlcgcnn.nn import ModelConfig, build_model, graphs
from tlcgcnn.nn.graphs import GraphSet
from tlcgcnn.nn.normalize import MultiNormalizer, Normalizer
from tlcgcnn.train import accel
from tlcgcnn.train.accel import AMP, COMPILE, Runtime
from tlcgcnn.train.checkpoint import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from tlcgcnn.train.device import pick_device, processor, set_seed
from tlcgcnn.train.objectives import Objective
from tlcgcnn.train.transfer import (
    TransferConfig,
    apply_transfer,
    param_groups,
    pretrained_parameter_names,
    set_train_mode,
)
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


SCHEDULES = ("constant", "cosine")
ENSEMBLE = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainConfig(TrainSettings):
    """Training settings of one run: the fields and defaults of
    :class:`tlcgcnn.config.TrainSettings` (written once, there). ``amp``: 'bf16' autocast,
    'none' (fp32) or 'auto' (bf16 where the device computes it natively: CUDA with bf16
    support, or a CPU with AVX512-BF16 / AMX; fp32 elsewhere). ``schedule``: 'constant'
    learning rate, or 'cosine' decay from ``lr`` to ``lr * min_lr_ratio`` over ``epochs``;
    either after ``warmup_epochs`` of linear warm-up. ``checkpoint_every``: epochs between
    resumable training states (0: never). ``ensemble``: the seeds of a fine-tuning cell
    trained as one vmapped ensemble ('on', 'off', 'auto': on a GPU;
    :func:`tlcgcnn.train.ensemble.fit_seeds`)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(names)}")
        if isinstance(d.get("ensemble"), bool):  # YAML reads a bare on / off as a boolean
            d = {**d, "ensemble": "on" if d["ensemble"] else "off"}
        cfg = cls(**d)
        if cfg.ensemble not in ENSEMBLE:
            raise ValueError(f"unknown ensemble {cfg.ensemble!r}; choose from {ENSEMBLE}")
        if cfg.amp not in AMP:
            raise ValueError(f"unknown amp {cfg.amp!r}; choose from {AMP}")
        if cfg.compile not in COMPILE:
            raise ValueError(f"unknown compile {cfg.compile!r}; choose from {COMPILE}")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from {SCHEDULES}")
        return cfg


@dataclass
class TrainResult:
    best_epoch: int
    best_val_mae: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    precision: str = "fp32"
    runtime: dict[str, str] = field(default_factory=dict)  # tlcgcnn.train.accel.Runtime
    # validation score of the starting weights (fit's score_start), best_epoch -1 where it won
    start_val_mae: float | None = None


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss or validation score."""


# --------------------------------------------------------------------------- utilities


def resolve_amp(amp: str, device: torch.device) -> str:
    """'bf16' or 'none' for a configured ``amp`` on ``device`` by the device's flags alone
    ('auto': bf16 where native). Training settles ``auto`` by measurement instead
    (:func:`tlcgcnn.train.accel.resolve`)."""
    if amp != "auto":
        return amp
    return "bf16" if accel.bf16_native(device) else "none"


def make_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]], cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (fused kernel on CPU and CUDA: one pass over all parameters per step) or SGD.
    ``params``: parameters (one group at ``cfg.lr``) or parameter groups, each with its own
    ``lr`` (:func:`tlcgcnn.train.transfer.param_groups`)."""
    if cfg.optimizer == "adam":
        fused = device.type in ("cpu", "cuda")
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")


def lr_factor(cfg: TrainConfig, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` epochs (fractional) into training."""
    if cfg.warmup_epochs > 0 and progress < cfg.warmup_epochs:
        return max(progress / cfg.warmup_epochs, 1e-3)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        t = min(max(progress - cfg.warmup_epochs, 0.0) / span, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


# --------------------------------------------------------------------------- fitting


@torch.no_grad()
def predict(
    model: nn.Module,
    data: GraphSet,
    positions: torch.Tensor,
    batch_size: int,
    amp: str = "none",
    features: bool = False,
) -> torch.Tensor:
    """Raw outputs [n, n_out] of the crystals at ``positions``, in eval mode, in batches; with
    ``features`` the crystal vectors the output layer reads instead ([n, h_fea_len],
    ``model.crystal_features``)."""
    model.eval()
    outs = []
    dev = data.z.device
    run = model.crystal_features if features else model
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        for b in data.batches(positions, batch_size):
            outs.append(run(b).float())
    width = model.config.h_fea_len if features else 1  # type: ignore[union-attr]
    return torch.cat(outs) if outs else torch.zeros(0, width, device=dev)


def validation_score(
    model: nn.Module,
    data: GraphSet,
    val_pos: torch.Tensor,
    y: torch.Tensor,
    y_norm: torch.Tensor,
    normalizer: Normalizer | MultiNormalizer,
    objective: Objective,
    cfg: TrainConfig,
    amp: str,
    desc: str,
    where: str,
) -> float:
    """The objective's validation score of ``model`` (default: MAE in the label's units);
    a NaN or infinite score raises :class:`NonFiniteError` naming the run ``desc`` and ``where``
    ("at epoch 3, seed 1")."""
    raw = predict(model, data, val_pos, cfg.eval_batch_size, amp)
    value = objective.val_score(raw, y_norm[val_pos], y[val_pos], normalizer)
    if not math.isfinite(value):
        raise NonFiniteError(
            f"{desc}: non-finite validation score ({value}) {where}; lower train.lr or check the labels"
        )
    return value


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
    state_path: str | Path | None = None,
    param_groups: list[dict[str, Any]] | None = None,
    score_start: bool = False,
) -> TrainResult:
    """Minimise the objective's loss (default: MSE on normalised targets); keep the weights
    of the best validation score (default: validation MAE).

    ``score_start``: the starting weights are validated before the first epoch and compete
    with every epoch as epoch -1, so a run that never beats them ends with them unchanged
    (``best_epoch`` -1; a pretrained source fine-tuned on its own quantity, ``validate_source``).

    ``param_groups``: optimizer groups with their own learning rates (default: every
    trainable parameter at ``cfg.lr``); warm-up and schedule scale each group's own lr.
    The history's ``lr`` is ``cfg.lr`` times the schedule's factor.

    With ``state_path``, a resumable state (weights, optimizer, RNG, epoch, best weights,
    history) is written there every ``cfg.checkpoint_every`` epochs, and an existing state
    is resumed from: on CPU a killed and restarted run ends bitwise-identical to an
    uninterrupted one (the state keeps the precision and compile choice of ``amp`` /
    ``compile: auto``, :mod:`tlcgcnn.train.accel`). A NaN or infinite loss or validation score raises
    :class:`NonFiniteError` naming the run, the epoch and the seed."""
    from tqdm.auto import tqdm

    frozen = frozen or []
    objective = objective or Objective()
    dev = data.z.device
    opt = make_optimizer(param_groups or [p for p in model.parameters() if p.requires_grad], cfg, dev)
    base_lrs = [float(g["lr"]) for g in opt.param_groups]  # before a resumed state's scheduled lrs
    factor = lr_factor(cfg, 0.0)
    gen = torch.Generator().manual_seed(seed)
    y_norm = y if objective.task == "classification" else normalizer.norm(y)
    best = (float("inf"), -1)
    best_state = copy.deepcopy(model.state_dict())
    hist: dict[str, list[float]] = {"train_loss": [], "val_mae": [], "elapsed_s": [], "lr": []}
    start, elapsed0 = 0, 0.0
    start_val: float | None = None
    runtime: Runtime | None = None
    if state_path is not None and Path(state_path).exists():
        st = torch.load(state_path, map_location=dev, weights_only=True)
        if st.get("runtime"):
            runtime = Runtime(**st["runtime"])
        if st.get("seed") != seed or st.get("epochs") != cfg.epochs:
            raise ValueError(
                f"{state_path}: training state of seed {st.get('seed')} / {st.get('epochs')} epochs, "
                f"not seed {seed} / {cfg.epochs}; delete it to start over"
            )
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        best_state = st["best_state"]
        best = (float(st["best_val"]), int(st["best_epoch"]))
        start_val = st.get("start_val")
        hist = {k: list(v) for k, v in st["history"].items()}
        start = int(st["epoch"]) + 1
        elapsed0 = hist["elapsed_s"][-1] if hist["elapsed_s"] else 0.0
        log.info(
            "%s: resumed from %s after epoch %d (best val %.4f at %d)", desc, state_path, start - 1, best[0], best[1]
        )
    t0 = time.perf_counter()  # the probe and the compilation count as training time
    if runtime is None:
        runtime = accel.resolve(
            cfg.amp,
            cfg.compile,
            model=model,
            data=data,
            train_pos=train_pos,
            y=y_norm,
            loss_fn=objective.loss,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
        )
    amp = runtime.amp
    if score_start and start == 0:  # best_state already holds the starting weights (the probe trains a copy)
        where = f"of the starting weights, seed {seed}"
        start_val = validation_score(model, data, val_pos, y, y_norm, normalizer, objective, cfg, amp, desc, where)
        best = (start_val, -1)
        log.info("%s: the starting weights (epoch -1) score %.4f on validation", desc, start_val)
    forward = accel.step_model(model, runtime)
    n_steps = max(1, math.ceil(train_pos.numel() / cfg.batch_size))
    bar = tqdm(
        range(start, cfg.epochs),
        desc=desc,
        unit="epoch",
        disable=not progress,
        mininterval=2.0,
        initial=start,
        total=cfg.epochs,
    )
    if start > 0 and (start - 1) - best[1] >= cfg.patience:
        bar = tqdm(range(0), disable=True)  # the resumed run had already stopped early
    for epoch in bar:
        set_train_mode(model, frozen)
        total, count = 0.0, 0
        for step, b_pos in enumerate(_batch_positions(train_pos, cfg.batch_size, gen)):
            if b_pos.numel() < 2:  # BatchNorm needs two samples
                continue
            factor = lr_factor(cfg, epoch + step / n_steps)
            for group, base_lr in zip(opt.param_groups, base_lrs, strict=True):
                group["lr"] = base_lr * factor
            batch = accel.train_batch(data, b_pos, runtime, cfg.batch_size)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                out = forward(batch)[: batch.n_crystals].float()
            loss = objective.loss(out, y_norm[b_pos])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"{desc}: non-finite training loss ({value}) at epoch {epoch}, step {step}, seed {seed}; "
                    "lower train.lr or check the labels"
                )
            total += value * b_pos.numel()
            count += b_pos.numel()
        where = f"at epoch {epoch}, seed {seed}"
        val_mae = validation_score(model, data, val_pos, y, y_norm, normalizer, objective, cfg, amp, desc, where)
        hist["train_loss"].append(total / max(count, 1))
        hist["val_mae"].append(val_mae)
        hist["elapsed_s"].append(elapsed0 + time.perf_counter() - t0)
        hist["lr"].append(cfg.lr * factor)
        if val_mae < best[0]:
            best = (val_mae, epoch)
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{hist['train_loss'][-1]:.4f}", val_mae=f"{val_mae:.4f}", best=f"{best[0]:.4f}")
        stop = epoch - best[1] >= cfg.patience
        if state_path is not None and cfg.checkpoint_every > 0 and ((epoch + 1) % cfg.checkpoint_every == 0 or stop):
            state = {
                "seed": seed,
                "epochs": cfg.epochs,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "best_state": best_state,
                "best_val": best[0],
                "best_epoch": best[1],
                "history": hist,
                "runtime": runtime.as_dict(),
                **({"start_val": start_val} if start_val is not None else {}),
            }
            with io.atomic_path(state_path) as tmp:
                torch.save(state, tmp)
        if stop:
            log.info("early stop at epoch %d (best %d, val MAE %.4f)", epoch, best[1], best[0])
            break
    bar.close()
    model.load_state_dict(best_state)
    seconds = elapsed0 + time.perf_counter() - t0
    return TrainResult(
        best_epoch=best[1],
        best_val_mae=best[0],
        history=hist,
        seconds=seconds,
        precision=runtime.precision,
        runtime=runtime.as_dict(),
        start_val_mae=start_val,
    )


def _batch_positions(pos: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = pos[torch.randperm(pos.numel(), generator=gen).to(pos.device)]
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() < 2:  # fold a lone last sample into the previous batch
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


# --------------------------------------------------------------------------- entry point


@dataclass
class Prepared:
    """One run ready to fit (:func:`prepare`): the model (pretrained weights loaded, layers
    frozen or re-initialised as its transfer says), its graphs, labels and positions, the
    target's normaliser fitted on the training labels, the objective, and the optimizer's
    parameter groups (None: every trainable parameter at ``lr``)."""

    model: nn.Module
    data: GraphSet
    y: torch.Tensor
    train_pos: torch.Tensor
    val_pos: torch.Tensor
    normalizer: Normalizer | MultiNormalizer
    objective: Objective
    frozen: list[nn.Module]
    groups: list[dict[str, Any]] | None
    target: Target
    split_ids: dict[str, list[str]]
    seed: int
    transfer: TransferConfig | None
    device: torch.device
    n_params: int
    n_trainable: int


def prepare(
    *,
    table_df: Any,
    graph_dir: str | Path,
    atom_table_path: str | Path,
    split_ids: dict[str, list[str]],
    target: Target,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    seed: int,
    transfer: TransferConfig | None = None,
) -> Prepared:
    """Everything :func:`train` does before fitting: seed, threads, device, graphs, labels,
    normaliser, the model with its transfer applied (the model is built right after
    :func:`set_seed`, so its initial weights are the seed's)."""
    set_seed(seed)
    torch.set_num_threads(max(1, train_cfg.threads))
    torch.set_flush_denormal(True)  # denormals slow CPU kernels down several-fold
    device = pick_device(train_cfg.device)
    log.info(
        "device: %s (threads %d)%s",
        device,
        torch.get_num_threads(),
        f" {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "",
    )
    ids = split_ids["train"] + split_ids["val"]
    data = graphs.load(graph_dir, ids).to(device)
    check_graphs(data, model_cfg, graph_dir)
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
    kept: set[str] = set()
    if transfer is not None and transfer.checkpoint:
        pre = load_checkpoint(transfer.checkpoint)
        check_same_featurization(pre, data, transfer.checkpoint, graph_dir)
        frozen = apply_transfer(model, pre, transfer)
        kept = pretrained_parameter_names(model, pre, transfer)
        if transfer.validate_source:
            normalizer = source_normalizer(pre, transfer, target)
        log.info(
            "transfer from %s: freeze=%d reinit=%s backbone_lr_scale=%g",
            transfer.checkpoint,
            transfer.freeze,
            transfer.reinit,
            transfer.backbone_lr_scale,
        )
    model.to(device)
    groups = None
    if transfer is not None and transfer.checkpoint and transfer.backbone_lr_scale != 1.0:
        groups = param_groups(model, kept, train_cfg.lr, transfer.backbone_lr_scale)
        log.info(
            "learning rates: %s",
            ", ".join(f"{g['name']} {sum(p.numel() for p in g['params'])} parameters at {g['lr']:g}" for g in groups),
        )
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "%s: %d train / %d val crystals; %d parameters (%d trainable)",
        target.name,
        n_tr,
        len(split_ids["val"]),
        n_params,
        n_trainable,
    )
    return Prepared(
        model=model,
        data=data,
        y=y,
        train_pos=train_pos,
        val_pos=val_pos,
        normalizer=normalizer,
        objective=objective,
        frozen=frozen,
        groups=groups,
        target=target,
        split_ids=split_ids,
        seed=int(seed),
        transfer=transfer,
        device=device,
        n_params=n_params,
        n_trainable=n_trainable,
    )


def source_normalizer(pre: dict[str, Any], transfer: TransferConfig, target: Target) -> Normalizer:
    """The source checkpoint's own label normaliser, which a ``validate_source`` fine-tuning
    keeps so that the source's outputs mean what they meant (its epoch -1 is the source's own
    prediction). Needs a single-output regression source and target and ``reinit: none``."""
    from tlcgcnn.nn.normalize import normalizer_from_dict

    where = transfer.checkpoint or "<pretrained checkpoint>"
    src = pre.get("target") or {}
    if transfer.reinit != "none":
        raise ValueError(f"{where}: validate_source needs reinit: none, not {transfer.reinit!r}")
    if target.task != "regression" or target.n_out != 1:
        raise ValueError(f"{where}: validate_source needs a single-output regression target; {target.name} is not")
    norm = normalizer_from_dict(pre["normalizer"])
    if not isinstance(norm, Normalizer) or src.get("task", "regression") != "regression":
        raise ValueError(
            f"{where}: validate_source needs a single-output regression source, not a "
            f"{src.get('task', 'multitask')} one"
        )
    same = (src.get("property"), src.get("transform", "none")) == (target.property, target.transform)
    if not same:
        log.warning(
            "%s predicts %s (transform %s), the target is %s (transform %s): its outputs are a starting "
            "point, not the target's quantity",
            where,
            src.get("property"),
            src.get("transform", "none"),
            target.property,
            target.transform,
        )
    log.info("labels scaled with the source's normaliser (mean %.4g, std %.4g)", norm.mean, norm.std)
    return norm


def save_trained(
    prep: Prepared,
    result: TrainResult,
    train_cfg: TrainConfig,
    out_checkpoint: str | Path,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint of a fitted run (its model holding the best weights), written to
    ``out_checkpoint``; returns it."""
    model, target = prep.model, prep.target
    ckpt = {
        "format_version": CHECKPOINT_VERSION,
        "model_config": model.config.to_dict(),  # type: ignore[union-attr]
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalizer": prep.normalizer.to_dict(),
        "target": asdict(target),
        "split": {k: list(v) for k, v in prep.split_ids.items()},
        "seed": int(prep.seed),
        "train_config": asdict(train_cfg),
        "transfer": asdict(prep.transfer) if prep.transfer else None,
        "featurize": prep.data.featurize,
        "result": {
            "best_epoch": result.best_epoch,
            "best_val_mae": result.best_val_mae,
            "epochs_run": len(result.history["val_mae"]),
            "seconds": result.seconds,
            "n_params": prep.n_params,
            "n_trainable": prep.n_trainable,
            "device": str(prep.device),
            "hardware": processor(prep.device),
            "precision": result.precision,
            "runtime": result.runtime,
            **({"start_val_mae": result.start_val_mae} if result.start_val_mae is not None else {}),
        },
        "history": result.history,
        "meta": meta or {},
        "property_specs": user_specs([target.property, *(target.properties or [])]),
    }
    save_checkpoint(ckpt, out_checkpoint)
    log.info(
        "best val MAE %.4f at epoch %d after %.1f s -> %s",
        result.best_val_mae,
        result.best_epoch,
        result.seconds,
        out_checkpoint,
    )
    return ckpt


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
    resume_path: str | Path | None = None,
) -> dict[str, Any]:
    """Fit one model and write its checkpoint. ``split_ids`` holds 'train', 'val', 'test'.

    ``resume_path``: where the resumable training state lives while the run is going
    (see :func:`fit`); it is removed once the checkpoint is written."""
    prep = prepare(
        table_df=table_df,
        graph_dir=graph_dir,
        atom_table_path=atom_table_path,
        split_ids=split_ids,
        target=target,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        seed=seed,
        transfer=transfer,
    )
    result = fit(
        prep.model,
        prep.data,
        prep.y,
        prep.train_pos,
        prep.val_pos,
        prep.normalizer,
        train_cfg,
        seed,
        prep.frozen,
        desc=f"{target.name} seed {seed}",
        progress=progress,
        objective=prep.objective,
        state_path=resume_path,
        param_groups=prep.groups,
        score_start=prep.transfer is not None and prep.transfer.validate_source,
    )
    ckpt = save_trained(prep, result, train_cfg, out_checkpoint, meta)
    if resume_path is not None:
        Path(resume_path).unlink(missing_ok=True)
    return ckpt


def check_graphs(data: GraphSet, model_cfg: dict[str, Any], graph_dir: str | Path) -> None:
    """The graphs must be built for the model's Gaussian range: the same radius. Real
    neighbours beyond the range (found by radius growth in sparse cells) get near-zero edge
    features; they are counted in the log."""
    if not data.featurize or not data.featurize.get("params"):
        raise ValueError(
            f"{graph_dir}: the graph cache has no featurization parameters in its manifest; featurize again"
        )
    params = data.featurize["params"]
    model = ModelConfig.from_dict(model_cfg)  # the model's defaults, not a copy of them
    radius, step = float(model.radius), float(model.gaussian_step)
    if abs(float(params["radius"]) - radius) > 1e-9:
        raise ValueError(
            f"{graph_dir}: graphs were built with radius {params['radius']} Å "
            f"but the model's Gaussian expansion covers {radius} Å; set model radius = featurize radius"
        )
    pad = float(params["max_radius"])
    far = int(((data.nbr_dist > radius + 3 * step) & (data.nbr_dist <= pad)).sum())
    padded = int((data.nbr_dist > pad).sum())
    if far or padded:
        total = data.nbr_dist.numel()
        log.info(
            "graphs: %d of %d edges (%.3f %%) lie beyond the Gaussian range (radius grown), "
            "%d are padded self-loops (masked)",
            far,
            total,
            100 * far / total,
            padded,
        )


def check_same_featurization(
    pretrained: dict[str, Any], data: GraphSet, checkpoint: str | Path, graph_dir: str | Path
) -> None:
    """A pretrained model is fine-tuned only on graphs built the way it was trained on."""
    theirs = (pretrained.get("featurize") or {}).get("params")
    ours = (data.featurize or {}).get("params")
    if theirs is not None and ours is not None and theirs != ours:
        diff = ", ".join(
            f"{k}: {theirs.get(k)} (checkpoint) vs {ours.get(k)} (graphs)"
            for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)
        )
        raise ValueError(f"{checkpoint}: pretrained on graphs featurized differently from {graph_dir}: {diff}")


@dataclass(frozen=True)
class TrainingJob:
    """What :func:`run_training` resolved for one (size, seed): the label table, the split's
    ids, the target, how the source is reused and the checkpoint's provenance fields."""

    table_df: Any
    split_ids: dict[str, list[str]]
    target: Target
    transfer: TransferConfig | None
    meta: dict[str, Any]


def training_job(
    *,
    stage: str,
    table_path: str,
    split_path: str,
    target: TargetSpec,
    size: Size,
    seed: int,
    split_cfg: dict[str, Any],
    config: dict[str, Any] | None,
    mode: Mode | None = None,
    pretrained: str | None = None,
    exclude_ids: list[str] | None = None,
) -> TrainingJob:
    """The split of (size, seed), the source's reuse and the provenance of one run (see
    :func:`run_training` for the arguments)."""
    import pandas as pd

    from tlcgcnn.config import parse_size
    from tlcgcnn.data.split import pool_ids, train_val
    from tlcgcnn.report import provenance

    if pretrained and mode is None:
        raise ValueError(f"{pretrained}: a pretrained checkpoint needs the fine-tuning mode that says how to reuse it")
    props = list(dict.fromkeys([target.property, *(target.properties or [])]))
    df = pd.read_parquet(table_path, columns=["material_id", *props])
    sp = io.read_json(split_path)
    size_v = parse_size(size)
    train_pool = mode.train_pool if mode is not None else None
    pool = pool_ids(sp, train_pool)
    if train_pool == "all":
        log.info(
            "training pool: every subset (pool_all, %d materials; the %s pool holds %d)",
            len(pool),
            sp.get("subset"),
            len(sp["pool"]),
        )
    if exclude_ids:
        drop, n_pool = set(exclude_ids), len(pool)
        pool = [i for i in pool if i not in drop]
        log.info("%d of %d pool materials are fine-tuning test materials: left out", n_pool - len(pool), n_pool)
    tv = train_val(pool, size_v, int(seed), split_cfg["val_fraction"], split_cfg["val_min"])
    split_ids = {"train": tv.train, "val": tv.val, "test": list(sp["test"])}
    tr = None
    if pretrained and mode is not None:
        tr = TransferConfig(
            checkpoint=pretrained,
            freeze=int(mode.freeze),
            reinit=str(mode.reinit),
            backbone_lr_scale=float(mode.backbone_lr_scale),
            validate_source=bool(mode.validate_source),
        )
    prov = provenance.record(config, io.sha256_file(table_path))
    meta = {
        "stage": stage,
        "mode": mode.name if mode is not None else stage,
        "size": size_v,
        "pretrained": mode.pretrained if tr is not None and mode is not None else None,
        "config_sha256": prov["config_sha256"],
        "data_sha256": prov["data_sha256"],
        "git_commit": prov["code"]["git_commit"],
        "package_version": prov["code"]["package"],
        "torch_version": prov["torch"],
        **({"train_pool": train_pool} if train_pool and train_pool != "subset" else {}),
    }
    return TrainingJob(df, split_ids, target_from_spec(target), tr, meta)


def run_training(
    *,
    stage: str,
    table_path: str,
    split_path: str,
    graph_dir: str,
    atom_features_path: str,
    target: TargetSpec,
    size: Size,
    seed: int,
    model_config: dict[str, Any],
    train_config: TrainConfig,
    split_cfg: dict[str, Any],
    config: dict[str, Any] | None,
    out_checkpoint: str,
    mode: Mode | None = None,
    pretrained: str | None = None,
    progress: bool = True,
    exclude_ids: list[str] | None = None,
    resume_path: str | None = None,
) -> dict[str, Any]:
    """Workflow entry: resolve the split of (size, seed) and train one model.

    ``target`` and ``model_config`` (the architecture's plain config, ``kind`` choosing it)
    are complete (tlcgcnn.config resolves them); ``train_config`` carries the job's threads.
    ``mode``: the fine-tuning mode (None when pretraining): its ``train_pool: all`` draws from
    the split's ``pool_all`` (every subset's labelled materials but the test set) instead of
    its ``pool`` (:func:`tlcgcnn.data.split.pool_ids`), and with ``pretrained`` (the source
    checkpoint) its freeze, reinit and backbone_lr_scale say how the source is reused.
    ``exclude_ids`` are removed from the training pool first (pretraining leaves out the
    fixed test sets of the fine-tuning targets, so no test material is ever seen).
    ``resume_path``: the training loop's resumable state (continued if it exists)."""
    job = training_job(
        stage=stage,
        table_path=table_path,
        split_path=split_path,
        target=target,
        size=size,
        seed=seed,
        split_cfg=split_cfg,
        config=config,
        mode=mode,
        pretrained=pretrained,
        exclude_ids=exclude_ids,
    )
    return train(
        table_df=job.table_df,
        graph_dir=graph_dir,
        atom_table_path=atom_features_path,
        split_ids=job.split_ids,
        target=job.target,
        model_cfg=model_config,
        train_cfg=train_config,
        seed=int(seed),
        out_checkpoint=out_checkpoint,
        transfer=job.transfer,
        meta=job.meta,
        progress=progress,
        resume_path=resume_path,
    )


def exclude_ids(split_files: list[str]) -> list[str]:
    """Test ids of the given split files (the fine-tuning targets' fixed test sets)."""
    out: list[str] = []
    for path in split_files:
        out.extend(io.read_json(path)["test"])
    return sorted(set(out))
