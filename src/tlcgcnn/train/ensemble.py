"""Train the seeds of one cell as a single batched ensemble (``torch.func``).

K models of the same architecture are stacked parameter by parameter
(:func:`torch.func.stack_module_state`) and evaluated with one ``vmap`` over
:func:`torch.func.functional_call`: every layer runs once for all K members, as a batched
matmul, instead of K small launches. This pays off on a GPU, where one member alone leaves
most of the device idle; on a CPU it gains nothing (the work is the same, see
``benchmarks/README.md``).

:func:`fit_seeds` trains the seeds of a fine-tuning cell this way, as the finetune rule does
under ``train.ensemble: on`` (``auto``: on a GPU; :class:`tlcgcnn.train.finetune.GraphStrategy`):
each member keeps its own training and validation crystals, shuffling, normaliser, transfer,
early stopping and best weights, and each seed ends with the checkpoint it would have had
trained alone. Its batches are padded to one shape (:func:`tlcgcnn.nn.graphs.pad`, padding
masked out of messages, batch norm and pooling) and stacked. With SGD the result equals the
seeds trained one by one to float rounding; Adam, which turns rounding-level gradients into
full-size steps, ends as well but not digit for digit (``tests/train/test_seed_ensemble.py``).

:meth:`Ensemble.__call__` / :func:`train_step` run every member on the same batch.
BatchNorm runs in training mode per member: its batch statistics are computed over that
member's activations only and each member's running statistics are updated in its own slice
of the stacked buffers, so one ensemble step equals K separate steps
(``tests/train/test_perf_ensemble.py``). AdamW (and SGD) update each element independently,
so one optimizer over the stacked parameters is K independent optimizers.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from tlcgcnn.nn.graphs import Batch, pad
from tlcgcnn.utils import fileio as io

if TYPE_CHECKING:
    from tlcgcnn.train.loop import Prepared, TrainConfig, TrainResult

log = logging.getLogger(__name__)


@dataclass
class Ensemble:
    """K stacked members: ``params`` / ``buffers`` map names to tensors of shape [K, ...]."""

    template: nn.Module  # the architecture, on the 'meta' device (holds no weights)
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    training: bool = field(default=True)

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> Ensemble:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        params, buffers = stack_module_state(list(models))  # params: fresh leaves with grad
        template = copy.deepcopy(models[0]).to("meta")
        return cls(template, params, buffers)

    def __len__(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    def train(self, mode: bool = True) -> Ensemble:
        self.training = mode
        self.template.train(mode)
        return self

    def eval(self) -> Ensemble:
        return self.train(False)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self, batch: Batch) -> torch.Tensor:
        """Outputs of every member on ``batch``: [K, crystals, n_out]."""

        def member(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.template, (p, b), (batch,))

        return vmap(member, in_dims=(0, 0), randomness="different")(self.params, self.buffers)

    def call_stacked(self, tensors: dict[str, torch.Tensor], n: int, n_real: int) -> torch.Tensor:
        """Outputs of every member on its own batch: ``tensors`` are the members' padded
        batches stacked ([K, ...], :func:`stack_batches`) with ``n`` crystal rows of which the
        first ``n_real`` are real; returns [K, n, n_out]."""

        def member(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.template, (p, b), (Batch(n=n, n_real=n_real, **t),))

        return vmap(member, in_dims=(0, 0, 0), randomness="different")(self.params, self.buffers, tensors)

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s weights in the single model's ``state_dict`` layout (checkpoint format)."""
        keys = self.template.state_dict().keys()  # persistent entries only (no gauss.centers)
        stacked = {**self.params, **self.buffers}
        return {name: stacked[name][k].detach().clone() for name in keys}

    def member(self, k: int, build: Callable[[], nn.Module]) -> nn.Module:
        """A regular module holding member ``k`` (``build`` makes an instance of the architecture)."""
        model = build()
        model.load_state_dict(self.member_state_dict(k))
        return model


def ensemble_loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over members of each member's MSE: the gradient of member k is that of its own loss."""
    per_member = ((outputs.squeeze(-1) - target.unsqueeze(0)) ** 2).mean(dim=1)
    return per_member.sum()


def train_step(
    ens: Ensemble, batch: Batch, target: torch.Tensor, opt: torch.optim.Optimizer, amp: bool = False
) -> torch.Tensor:
    """One optimizer step of every member on ``batch``; returns the per-member losses [K]."""
    ens.train()
    with torch.autocast(device_type=target.device.type, dtype=torch.bfloat16, enabled=amp):
        out = ens(batch).float()
    per_member = ((out.squeeze(-1) - target.unsqueeze(0)) ** 2).mean(dim=1)
    opt.zero_grad(set_to_none=True)
    per_member.sum().backward()
    opt.step()
    return per_member.detach()


@torch.no_grad()
def predict(ens: Ensemble, batches: Sequence[Batch] | Callable[[], list[Batch]]) -> torch.Tensor:
    """Evaluation-mode outputs of every member, concatenated over ``batches``: [K, n, n_out]."""
    ens.eval()
    items = batches() if callable(batches) else batches
    return torch.cat([ens(b) for b in items], dim=1)


# --------------------------------------------------------------------------- the seeds of a cell

# the tensors of a Batch, stacked member by member for a vmapped step
BATCH_TENSORS = ("z", "nbr_idx", "nbr_dist", "crystal", "counts", "edge_mask", "atom_mask")


def stack_batches(batches: Sequence[Batch], pad_distance: float | None) -> tuple[dict[str, torch.Tensor], int, int]:
    """The members' own batches, each padded to one shape (:func:`tlcgcnn.nn.graphs.pad`:
    padding atoms are masked out of messages, batch norm and pooling) and stacked: [K, ...]
    tensors, the crystal rows of the padded batch and its real crystals (the first rows)."""
    n_real = batches[0].n
    if any(b.n != n_real for b in batches):
        raise ValueError(f"the members' batches hold {[b.n for b in batches]} crystals: they must hold the same")
    atoms = max(int(b.z.numel()) for b in batches) + 1
    padded = [pad(b, atoms, n_real + 1, pad_distance) for b in batches]
    return {k: torch.stack([getattr(b, k) for b in padded]) for k in BATCH_TENSORS}, n_real + 1, n_real


def _named(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(m)] for m in modules]


@dataclass
class _Member:
    """One seed's bookkeeping in :func:`fit_seeds` (what :func:`tlcgcnn.train.loop.fit` keeps for its run)."""

    best_val: float = float("inf")
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    history: dict[str, list[float]] = field(
        default_factory=lambda: {"train_loss": [], "val_mae": [], "elapsed_s": [], "lr": []}
    )
    stopped_at: int | None = None
    seconds: float = 0.0
    start_val: float | None = None


def fit_seeds(
    preps: Sequence[Prepared],
    cfg: TrainConfig,
    *,
    state_path: str | Path | None = None,
    progress: bool = True,
    desc: str = "seeds",
) -> list[TrainResult]:
    """Fit the runs ``preps`` (the seeds of one cell, :func:`tlcgcnn.train.loop.prepare`: same
    architecture, training size and transfer, each its own initial weights, training and
    validation crystals and normaliser) as one vmapped ensemble: each step runs every member
    on its own batch (its own shuffling generator, seeded as :func:`~tlcgcnn.train.loop.fit`
    seeds it; the batches padded to one shape), one optimizer updates the stacked weights
    (element-wise, so K independent optimizers), and each member is validated, keeps its best
    weights and stops early on its own, as ``fit`` does for one run. The ensemble trains until
    every member has stopped or the epochs run out; a member that stopped is still carried
    along (its results are fixed). Leaves each prep's model holding its best weights. With
    ``validate_source`` in the runs' transfer, each member's starting weights compete as
    epoch -1, as ``fit``'s ``score_start`` has them.

    Precision: bf16 autocast with ``amp: bf16``, else fp32 (``auto`` included); not compiled.
    A result's ``seconds`` is the ensemble's wall time when that seed stopped (the seeds share it).
    With ``state_path`` a resumable state of the whole ensemble is written every
    ``cfg.checkpoint_every`` epochs and resumed from (its seeds must be these)."""
    from tqdm.auto import tqdm

    from tlcgcnn.train.loop import (
        NonFiniteError,
        TrainResult,
        _batch_positions,
        lr_factor,
        make_optimizer,
        validation_score,
    )
    from tlcgcnn.train.transfer import set_train_mode

    if len(preps) < 2:
        raise ValueError("a seed ensemble needs at least two runs")
    first, k = preps[0], len(preps)
    sizes = {(int(p.train_pos.numel()), int(p.val_pos.numel())) for p in preps}
    if len(sizes) > 1:
        raise ValueError(f"the runs of a seed ensemble need equal training and validation sizes, not {sorted(sizes)}")
    dev = first.device
    amp = "bf16" if cfg.amp == "bf16" else "none"
    seeds = [int(p.seed) for p in preps]
    ens = Ensemble.from_models([p.model for p in preps])
    names = [n for n, _ in first.model.named_parameters()]
    frozen = {n for n, p in first.model.named_parameters() if not p.requires_grad}
    for n in frozen:
        ens.params[n].requires_grad_(False)
    frozen_modules = [ens.template.get_submodule(n) for n in _named(first.model, first.frozen)]
    if first.groups:
        by_id = {id(p): n for n, p in first.model.named_parameters()}
        groups: list[Any] = [
            {
                **{k2: v for k2, v in g.items() if k2 != "params"},
                "params": [ens.params[by_id[id(p)]] for p in g["params"]],
            }
            for g in first.groups
        ]
    else:
        groups = [ens.params[n] for n in names if n not in frozen]
    opt = make_optimizer(groups, cfg, dev)
    base_lrs = [float(g["lr"]) for g in opt.param_groups]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    y_norm = [p.y if p.objective.task == "classification" else p.normalizer.norm(p.y) for p in preps]
    members = [_Member(best_state=ens.member_state_dict(i)) for i in range(k)]
    start, elapsed0 = 0, 0.0
    if state_path is not None and Path(state_path).exists():
        st = torch.load(state_path, map_location=dev, weights_only=True)
        if st.get("seeds") != seeds or st.get("epochs") != cfg.epochs:
            raise ValueError(
                f"{state_path}: ensemble state of seeds {st.get('seeds')} / {st.get('epochs')} epochs, "
                f"not {seeds} / {cfg.epochs}; delete it to start over"
            )
        with torch.no_grad():
            for n, t in st["params"].items():
                ens.params[n].copy_(t)
            for n, t in st["buffers"].items():
                ens.buffers[n].copy_(t)
        opt.load_state_dict(st["optimizer"])
        for g, s in zip(gens, st["generators"], strict=True):
            g.set_state(s)
        torch.set_rng_state(st["torch_rng"])
        members = [
            _Member(
                best_val=float(m["best_val"]),
                best_epoch=int(m["best_epoch"]),
                best_state=m["best_state"],
                history={h: list(v) for h, v in m["history"].items()},
                stopped_at=None if m["stopped_at"] < 0 else int(m["stopped_at"]),
                seconds=float(m["seconds"]),
                start_val=m.get("start_val"),
            )
            for m in st["members"]
        ]
        start = int(st["epoch"]) + 1
        elapsed0 = float(st["elapsed_s"])
        log.info("%s: resumed the ensemble of seeds %s from %s after epoch %d", desc, seeds, state_path, start - 1)
    if start == 0 and first.transfer is not None and first.transfer.validate_source:
        for i, (p, m) in enumerate(zip(preps, members, strict=True)):
            where = f"of the starting weights, seed {seeds[i]}"
            val = validation_score(
                p.model, p.data, p.val_pos, p.y, y_norm[i], p.normalizer, p.objective, cfg, amp, desc, where
            )
            m.start_val, m.best_val, m.best_epoch = val, val, -1
    n_steps = max(1, math.ceil(first.train_pos.numel() / cfg.batch_size))
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.epochs), desc=desc, unit="epoch", disable=not progress, initial=start, total=cfg.epochs)
    factor = lr_factor(cfg, float(start))
    for epoch in bar:
        if all(m.stopped_at is not None for m in members):
            break
        ens.train()
        set_train_mode(ens.template, frozen_modules)
        plans = [_batch_positions(p.train_pos, cfg.batch_size, g) for p, g in zip(preps, gens, strict=True)]
        totals, count = torch.zeros(k, dtype=torch.float64), 0
        for step in range(len(plans[0])):
            pos = [plan[step] for plan in plans]
            if pos[0].numel() < 2:  # BatchNorm needs two samples
                continue
            factor = lr_factor(cfg, epoch + step / n_steps)
            for group, base_lr in zip(opt.param_groups, base_lrs, strict=True):
                group["lr"] = base_lr * factor
            tensors, rows, n_real = stack_batches(
                [p.data.batch(b) for p, b in zip(preps, pos, strict=True)], first.data.pad_distance
            )
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                out = ens.call_stacked(tensors, rows, n_real)[:, :n_real].float()
            losses = torch.stack([p.objective.loss(out[i], y_norm[i][pos[i]]) for i, p in enumerate(preps)])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            values = losses.detach().double().cpu()
            for i, m in enumerate(members):
                if m.stopped_at is None and not math.isfinite(float(values[i])):
                    raise NonFiniteError(
                        f"{desc}: non-finite training loss ({float(values[i])}) at epoch {epoch}, step {step}, "
                        f"seed {seeds[i]}; lower train.lr or check the labels"
                    )
            totals += values * pos[0].numel()
            count += pos[0].numel()
        elapsed = elapsed0 + time.perf_counter() - t0
        for i, (p, m) in enumerate(zip(preps, members, strict=True)):
            if m.stopped_at is not None:
                continue
            p.model.load_state_dict(ens.member_state_dict(i))
            where = f"at epoch {epoch}, seed {seeds[i]}"
            val = validation_score(
                p.model, p.data, p.val_pos, p.y, y_norm[i], p.normalizer, p.objective, cfg, amp, desc, where
            )
            m.history["train_loss"].append(float(totals[i]) / max(count, 1))
            m.history["val_mae"].append(val)
            m.history["elapsed_s"].append(elapsed)
            m.history["lr"].append(cfg.lr * factor)
            if val < m.best_val:
                m.best_val, m.best_epoch = val, epoch
                m.best_state = ens.member_state_dict(i)
            if epoch - m.best_epoch >= cfg.patience:
                m.stopped_at, m.seconds = epoch, elapsed
                log.info(
                    "%s: seed %d early stop at epoch %d (best %d, val %.4f)",
                    desc,
                    seeds[i],
                    epoch,
                    m.best_epoch,
                    m.best_val,
                )
        live = [m for m in members if m.stopped_at is None]
        bar.set_postfix(training=f"{len(live)}/{k}", best=f"{min(m.best_val for m in members):.4f}")
        done = not live
        if state_path is not None and cfg.checkpoint_every > 0 and ((epoch + 1) % cfg.checkpoint_every == 0 or done):
            state = {
                "seeds": seeds,
                "epochs": cfg.epochs,
                "epoch": epoch,
                "elapsed_s": elapsed,
                "params": {n: t.detach() for n, t in ens.params.items()},
                "buffers": dict(ens.buffers),
                "optimizer": opt.state_dict(),
                "generators": [g.get_state() for g in gens],
                "torch_rng": torch.get_rng_state(),
                "members": [
                    {
                        "best_val": m.best_val,
                        "best_epoch": m.best_epoch,
                        "best_state": m.best_state,
                        "history": m.history,
                        "stopped_at": -1 if m.stopped_at is None else m.stopped_at,
                        "seconds": m.seconds,
                        **({"start_val": m.start_val} if m.start_val is not None else {}),
                    }
                    for m in members
                ],
            }
            with io.atomic_path(state_path) as tmp:
                torch.save(state, tmp)
        if done:
            break
    bar.close()
    total = elapsed0 + time.perf_counter() - t0
    runtime = {"amp": amp, "compile": "none", "reason": f"seed ensemble of {k} (one vmapped model)", "ensemble": str(k)}
    results = []
    for p, m in zip(preps, members, strict=True):
        p.model.load_state_dict(m.best_state)
        results.append(
            TrainResult(
                best_epoch=m.best_epoch,
                best_val_mae=m.best_val,
                history=m.history,
                seconds=m.seconds if m.stopped_at is not None else total,
                precision="bf16" if amp == "bf16" else "fp32",
                runtime=runtime,
                start_val_mae=m.start_val,
            )
        )
    return results
