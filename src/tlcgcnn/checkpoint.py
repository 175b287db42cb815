"""The checkpoint format: weights, normaliser, model and featurization config, split ids,
history and provenance, stored so that ``torch.load(weights_only=True)`` reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcgcnn import io
from tlcgcnn.models import build_model

CHECKPOINT_VERSION = 1


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


