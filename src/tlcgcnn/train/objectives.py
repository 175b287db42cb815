"""Losses and validation scores of the three tasks (regression, classification, multi-task)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tlcgcnn.nn.normalize import MultiNormalizer, Normalizer


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

    def val_score(
        self, raw: torch.Tensor, y_norm: torch.Tensor, y: torch.Tensor, normalizer: Normalizer | MultiNormalizer
    ) -> float:
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
