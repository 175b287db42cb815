"""Transfer modes: load a pretrained checkpoint into a model, re-initialise and freeze layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass
class TransferConfig:
    """How a pretrained model is reused. ``freeze`` = number of conv layers frozen together
    with the embedding (0: nothing frozen). ``reinit``: 'none' keeps every pretrained weight,
    'head' re-initialises the layers after the convolutions, 'unfrozen' re-initialises
    everything that is not frozen (the layer-freezing study). ``backbone_lr_scale``: the
    trained parameters that keep pretrained values learn at ``lr * backbone_lr_scale``,
    re-initialised ones at ``lr`` (discriminative fine-tuning; see :func:`param_groups`).
    ``validate_source``: the labels are scaled with the source's normaliser and the source as
    it is competes on validation with every fine-tuned epoch (:func:`tlcgcnn.train.loop.fit`,
    ``score_start``); needs ``reinit: none`` and a single-output regression source."""

    checkpoint: str | None = None
    freeze: int = 0
    reinit: str = "none"
    backbone_lr_scale: float = 1.0
    validate_source: bool = False


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
    """Load pretrained weights, re-initialise and freeze as configured; returns frozen modules.

    The pretrained architecture (all but the output width) and atom-feature table must equal
    the fine-tuning model's, else :class:`tlcgcnn.train.checkpoint.CheckpointError` names the
    checkpoint file (``tcfg.checkpoint``) and each difference. The output layers may differ
    (:data:`tlcgcnn.config.HEAD_KEYS`: the output width, task-specific heads or one shared
    output layer): a layer the fine-tuning model does not share with the source in name and
    shape starts from its fresh initialisation, e.g. a single-output model fine-tuned from a
    multi-task source with ``task_heads`` keeps the shared layers and the first task's head
    when it has task heads itself, else gets a new output layer."""
    from tlcgcnn.config import HEAD_KEYS
    from tlcgcnn.train.checkpoint import check_compatible

    check_compatible(
        pretrained,
        tcfg.checkpoint or "<pretrained checkpoint>",
        model_config=model.config.to_dict(),  # type: ignore[union-attr]
        atom_table=model.atom_table,  # type: ignore[arg-type]
        ignore=HEAD_KEYS,
        table_name="the fine-tuning model's atom-feature table",
    )
    state = dict(pretrained["state_dict"])
    own = model.state_dict()
    for key in list(state):  # a head of another width (multi-task source) is not loaded
        if key in own and state[key].shape != own[key].shape:
            state.pop(key)
    model.load_state_dict(state, strict=False)
    frozen = frozen_modules(model, tcfg.freeze)
    for m in _reinit_modules(model, frozen, tcfg.reinit):
        _reset(m)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def _reinit_modules(model: nn.Module, frozen: list[nn.Module], reinit: str) -> list[nn.Module]:
    """The modules a transfer mode re-initialises after loading the pretrained weights."""
    if reinit == "head":
        return list(model.head_modules())  # type: ignore[operator]
    if reinit == "unfrozen":
        keep = {id(p) for m in frozen for p in m.parameters()}
        return [m for m in [*model.convs, *model.head_modules()] if not any(id(p) in keep for p in m.parameters())]  # type: ignore[misc]
    if reinit != "none":
        raise ValueError(f"unknown reinit {reinit!r}; choose none, head or unfrozen")
    return []


def pretrained_parameter_names(model: nn.Module, pretrained: dict[str, Any], tcfg: TransferConfig) -> set[str]:
    """Names of the parameters that hold pretrained values after :func:`apply_transfer`:
    loaded from the checkpoint (same shape) and not re-initialised."""
    state = pretrained["state_dict"]
    params = dict(model.named_parameters())
    reset = {
        id(p) for m in _reinit_modules(model, frozen_modules(model, tcfg.freeze), tcfg.reinit) for p in m.parameters()
    }
    return {
        n for n, p in params.items() if n in state and tuple(state[n].shape) == tuple(p.shape) and id(p) not in reset
    }


def param_groups(
    model: nn.Module, pretrained_names: set[str], lr: float, backbone_lr_scale: float
) -> list[dict[str, Any]]:
    """Optimizer parameter groups of the trainable parameters: those named in
    ``pretrained_names`` at ``lr * backbone_lr_scale`` (group ``pretrained``), the others
    (re-initialised or new) at ``lr`` (group ``new``); empty groups are left out, and a
    scale of 1 gives the single group of a plain optimizer. The training loop's schedule
    multiplies each group's own starting lr."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if backbone_lr_scale == 1.0:
        return [{"name": "all", "params": [p for _, p in trainable], "lr": lr}]
    groups = [
        {
            "name": "pretrained",
            "params": [p for n, p in trainable if n in pretrained_names],
            "lr": lr * backbone_lr_scale,
        },
        {"name": "new", "params": [p for n, p in trainable if n not in pretrained_names], "lr": lr},
    ]
    return [g for g in groups if g["params"]]


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Training mode, except frozen layers keep BatchNorm running statistics fixed."""
    model.train()
    for m in frozen:
        m.eval()
