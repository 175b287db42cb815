"""What a model learns: target definitions, label transforms and label matrices.

Torch-free, so that the scikit-learn baselines and the statistics never import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tlcgcnn.config import TargetSpec

TRANSFORMS = ("none", "log10")


def transform(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "none":
        return np.asarray(y, dtype=np.float64)
    if kind == "log10":
        y = np.asarray(y, dtype=np.float64)
        if (y <= 0).any():
            raise ValueError("log10 transform needs positive values")
        return np.log10(y)
    raise ValueError(f"unknown transform {kind!r}; choose from {TRANSFORMS}")


def inverse_transform(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "none":
        return np.asarray(y, dtype=np.float64)
    if kind == "log10":
        return np.power(10.0, np.asarray(y, dtype=np.float64))
    raise ValueError(f"unknown transform {kind!r}; choose from {TRANSFORMS}")


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


def labels(table_df: Any, ids: list[str], target: Target) -> np.ndarray:
    """Labels of ``ids``: a vector, or for a multi-task target a [n, properties] matrix in
    which NaN marks a missing label (only the first property must be present). Always a
    writable copy (the GPU machine's newer pandas handed out a read-only view, and torch warned)."""
    indexed = table_df.set_index("material_id")
    if target.task == "multitask" and target.properties:
        mat = np.column_stack(
            [indexed.loc[ids, p].to_numpy(dtype=np.float64, na_value=np.nan, copy=True) for p in target.properties]
        )
        if np.isnan(mat[:, 0]).any():
            raise ValueError(
                f"{int(np.isnan(mat[:, 0]).sum())} of the selected materials have no {target.properties[0]} label"
            )
        out = np.full_like(mat, np.nan)
        ok = ~np.isnan(mat)
        for j in range(mat.shape[1]):
            out[ok[:, j], j] = transform(mat[ok[:, j], j], target.transform)
        return out
    col = indexed.loc[ids, target.property].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    if target.task == "classification":
        if np.isnan(col).any():
            raise ValueError(f"{int(np.isnan(col).sum())} of the selected materials have no {target.property} label")
        return col
    if np.isnan(col).any():
        raise ValueError(f"{int(np.isnan(col).sum())} of the selected materials have no {target.property} label")
    return transform(col, target.transform)


def target_from_spec(spec: TargetSpec | Mapping[str, Any]) -> Target:
    """Target of a config entry (pretrain or finetune target): a resolved
    :class:`tlcgcnn.config.TargetSpec` or its plain values."""
    if not isinstance(spec, Mapping):
        spec = spec.as_dict()
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
