"""Graph neural network models sharing the :class:`tlcgcnn.nn.graphs.Batch` format.

``model.kind`` selects the convolution: ``cgcnn`` (edge-gated, Xie & Grossman 2018) or
``attention`` (softmax attention over neighbours). Multi-task models (MT-CGCNN) are either
kind with ``n_out`` > 1, one output per property.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlcgcnn.nn.attention import AttentionCGCNN, AttentionConfig
from tlcgcnn.nn.cgcnn import CGCNN, ModelConfig, count_parameters

KINDS = ("cgcnn", "attention")

__all__ = ["CGCNN", "KINDS", "AttentionCGCNN", "AttentionConfig", "ModelConfig", "build_model", "count_parameters"]


def build_model(config: ModelConfig | dict[str, Any], atom_table: torch.Tensor) -> nn.Module:
    """Build the model named by ``config['kind']`` (default cgcnn)."""
    if isinstance(config, AttentionConfig):
        return AttentionCGCNN(config, atom_table)
    if isinstance(config, ModelConfig):
        return CGCNN(config, atom_table)
    kind = config.get("kind", "cgcnn")
    if kind == "cgcnn":
        return CGCNN(ModelConfig.from_dict(config), atom_table)
    if kind == "attention":
        return AttentionCGCNN(AttentionConfig.from_dict(config), atom_table)
    raise ValueError(f"unknown model kind {kind!r}; choose from {KINDS}")
