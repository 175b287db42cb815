"""Target transforms and normalisers, fitted on a training split only.

* transform: ``none`` or ``log10`` (e.g. bulk modulus, as in the TL-CGCNN paper);
* normaliser ``zscore``: (y - mean) / std;
* normaliser ``tanh``: the Hampel tanh-estimator 0.5 (tanh(c (y - mean) / std) + 1), which
  maps source and target properties onto the same bounded scale (c = 0.5 here, so that
  ordinary values stay on the near-linear part of tanh).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from tlcgcnn.data.targets import TRANSFORMS, inverse_transform, transform

KINDS = ("zscore", "tanh")
__all__ = [
    "KINDS",
    "TRANSFORMS",
    "MultiNormalizer",
    "Normalizer",
    "inverse_transform",
    "normalizer_from_dict",
    "transform",
]


@dataclass
class Normalizer:
    kind: str
    mean: float
    std: float
    scale: float = 0.5

    @classmethod
    def fit(cls, y: np.ndarray, kind: str = "zscore") -> Normalizer:
        if kind not in KINDS:
            raise ValueError(f"unknown normaliser {kind!r}; choose from {KINDS}")
        y = np.asarray(y, dtype=np.float64)
        if y.size == 0 or not np.isfinite(y).all():
            raise ValueError("normaliser needs at least one finite value")
        std = float(y.std())
        return cls(kind, float(y.mean()), std if std > 1e-12 else 1.0)

    def norm(self, y: torch.Tensor) -> torch.Tensor:
        z = (y - self.mean) / self.std
        if self.kind == "tanh":
            return 0.5 * (torch.tanh(self.scale * z) + 1.0)
        return z

    def denorm(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "tanh":
            u = torch.clamp(2.0 * y - 1.0, -1.0 + 1e-6, 1.0 - 1e-6)
            y = torch.atanh(u) / self.scale
        return y * self.std + self.mean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(str(d["kind"]), float(d["mean"]), float(d["std"]), float(d.get("scale", 0.5)))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"invalid normaliser {self}")


@dataclass
class MultiNormalizer:
    """One :class:`Normalizer` per column of a multi-task target matrix; NaN (a missing
    label) passes through unchanged. Each column is fitted on its own labelled values."""

    parts: list[Normalizer]

    @classmethod
    def fit(cls, y: np.ndarray, kind: str = "zscore") -> MultiNormalizer:
        y = np.asarray(y, dtype=np.float64)
        return cls([Normalizer.fit(col[~np.isnan(col)], kind) for col in y.T])

    def norm(self, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.norm(y[:, i]) for i, p in enumerate(self.parts)], dim=1)

    def denorm(self, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.denorm(y[:, i]) for i, p in enumerate(self.parts)], dim=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "multi", "parts": [p.to_dict() for p in self.parts]}


def normalizer_from_dict(d: dict[str, Any]) -> Normalizer | MultiNormalizer:
    """Load either normaliser from a checkpoint dict."""
    if d.get("kind") == "multi":
        return MultiNormalizer([Normalizer.from_dict(p) for p in d["parts"]])
    return Normalizer.from_dict(d)
