"""A checkpoint's plain fields (target, model config, featurization, split sizes, metadata)
read without torch.

The workflow resolves a ``pretrain`` entry that names a checkpoint file when Snakemake
parses the DAG (:mod:`tlcgcnn.config`), and that parse must stay light and torch-free. A
checkpoint written by :func:`tlcgcnn.train.checkpoint.save_checkpoint` is a ``torch.save`` zip
archive whose ``data.pkl`` holds plain Python values plus tensors; this module unpickles it
with every tensor replaced by a :class:`TensorStub` (its storage is never read). Only the
globals a ``weights_only`` checkpoint may hold are accepted, so reading stays as safe as
``torch.load(weights_only=True)``. Loading the weights themselves is
:func:`tlcgcnn.train.checkpoint.load_checkpoint`'s work (with torch).
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

CHECKPOINT_VERSION = 1  # equal to tlcgcnn.train.checkpoint.CHECKPOINT_VERSION (tests check it)


class CheckpointInfoError(ValueError):
    """A file that is not a readable tlcgcnn checkpoint; the message names the file."""


class TensorStub:
    """Stands for a tensor (or a storage type) of the archive; its data is not read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<tensor>"


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" or module.startswith("torch."):
            return TensorStub  # _rebuild_tensor_v2, FloatStorage, ...: the tensor's data is not needed
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> Any:  # a tensor's storage record
        return None


def read(path: str | Path) -> dict[str, Any]:
    """Every field of the checkpoint at ``path`` (tensors as :class:`TensorStub`), its format
    version checked. Raises :class:`CheckpointInfoError` naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointInfoError(f"{p}: no such checkpoint file")
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise CheckpointInfoError(f"{p}: not a tlcgcnn checkpoint (a zip archive without data.pkl)")
            with zf.open(names[0]) as fh:
                ckpt = _Unpickler(fh, encoding="utf-8").load()
    except CheckpointInfoError:
        raise
    except (
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        TypeError,
        ValueError,
    ) as exc:
        raise CheckpointInfoError(
            f"{p}: not a tlcgcnn checkpoint (written by torch.save as a zip archive): "
            f"{str(exc)[:200] or type(exc).__name__}"
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointInfoError(f"{p}: not a tlcgcnn checkpoint (no format_version)")
    if ckpt["format_version"] != CHECKPOINT_VERSION:
        raise CheckpointInfoError(
            f"{p}: checkpoint format version {ckpt['format_version']!r}, "
            f"but this tlcgcnn reads version {CHECKPOINT_VERSION}"
        )
    missing = [k for k in ("model_config", "target", "split") if k not in ckpt]
    if missing:
        raise CheckpointInfoError(f"{p}: incomplete checkpoint (missing {missing})")
    return ckpt


def summary(path: str | Path) -> dict[str, Any]:
    """What the workflow needs to know about a checkpoint used as a pretraining source:
    its target, model config, featurization parameters (None if not recorded), training
    size (the configured size, else the number of training materials), seed and the number
    of its training materials."""
    ckpt = read(path)
    meta = ckpt.get("meta") or {}
    split = ckpt.get("split") or {}
    n_train = len(split.get("train") or [])
    feat = ckpt.get("featurize") or {}
    return {
        "target": dict(ckpt["target"]),
        "model_config": dict(ckpt["model_config"]),
        "featurize": dict(feat.get("params")) if feat.get("params") else None,
        "featurize_format": feat.get("format_version"),
        "size": meta.get("size") if meta.get("size") is not None else n_train,
        "seed": int(ckpt.get("seed", 0)),
        "n_train": n_train,
    }
