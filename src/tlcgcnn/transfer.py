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
    everything that is not frozen (the layer-freezing study)."""

    checkpoint: str | None = None
    freeze: int = 0
    reinit: str = "none"



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
    the fine-tuning model's, else :class:`tlcgcnn.checkpoint.CheckpointError` names the
    checkpoint file (``tcfg.checkpoint``) and each difference."""
    from tlcgcnn.checkpoint import check_compatible

    check_compatible(
        pretrained,
        tcfg.checkpoint or "<pretrained checkpoint>",
        model_config=model.config.to_dict(),  # type: ignore[union-attr]
        atom_table=model.atom_table,  # type: ignore[arg-type]
        ignore=("n_out",),
        table_name="the fine-tuning model's atom-feature table",
    )
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


