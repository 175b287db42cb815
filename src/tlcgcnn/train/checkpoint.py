"""The checkpoint format: weights, normaliser, model and featurization config, split ids,
history and provenance, stored so that ``torch.load(weights_only=True)`` reads it.

Loading checks what a user can get wrong and says so in one message that names the file:
a file that is not a checkpoint, a checkpoint of another format version, and (when the
caller says what it expects) another architecture or another atom-feature table. All of
these raise :class:`CheckpointError`, never a raw ``size mismatch`` from torch.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcgcnn.features.featurize import FORMAT_VERSION as FEATURIZE_VERSION
from tlcgcnn.features.featurize import FeaturizeParams
from tlcgcnn.nn import build_model
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_config", "state_dict", "normalizer", "target")


class CheckpointError(ValueError):
    """A file that cannot be used as the checkpoint asked for; the message names the file
    and what is wrong with it."""


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    model_config: dict[str, Any] | None = None,
    atom_table: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and check its format.

    With ``model_config`` and/or ``atom_table`` it is also checked against what the caller
    will use (see :func:`check_compatible`)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a plain pickle: refused below
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not ours
        raise CheckpointError(
            f"{p}: not a tlcgcnn checkpoint (torch.load with weights_only=True failed: {_load_failure(exc)})"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p}: not a tlcgcnn checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    if "format_version" not in ckpt:
        raise CheckpointError(
            f"{p}: not a tlcgcnn checkpoint (a dict without 'format_version'; its keys: {sorted(map(str, ckpt))[:10]})"
        )
    version = ckpt["format_version"]
    if version != CHECKPOINT_VERSION:
        written = (ckpt.get("meta") or {}).get("package_version") if isinstance(ckpt.get("meta"), dict) else None
        raise CheckpointError(
            f"{p}: checkpoint format version {version!r}, but this tlcgcnn reads version {CHECKPOINT_VERSION}"
            + (f" (it was written by tlcgcnn {written})" if written else "")
            + "; load it with the tlcgcnn version that wrote it, or retrain"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{p}: incomplete checkpoint (missing {missing})")
    if model_config is not None or atom_table is not None:
        check_compatible(ckpt, p, model_config=model_config, atom_table=atom_table)
    return ckpt


def _load_failure(exc: Exception) -> str:
    """Why torch.load refused the file, in the user's terms (torch's weights-only message
    is long and asks the reader to file an issue with torch: left out)."""
    if isinstance(exc, KeyError) or "invalid load key" in str(exc):
        return "the file is neither a torch zip archive nor a pickle"
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Weights only load failed", "Check the documentation"))]
    for k, ln in enumerate(lines):
        if "WeightsUnpickler error" in ln:
            detail = ln.split("WeightsUnpickler error:", 1)[1].strip() or (lines[k + 1] if k + 1 < len(lines) else "")
            return f"it holds objects other than tensors and plain values ({detail.split(' by default')[0][:200]})"
        if "Unsupported" in ln:
            return ln.split(" by default")[0][:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    with io.atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _full_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A model config with every default filled in (so that a partial config compares)."""
    from tlcgcnn.nn import AttentionConfig, ModelConfig

    kind = cfg.get("kind", "cgcnn")
    cls = AttentionConfig if kind == "attention" else ModelConfig
    try:
        return cls.from_dict(cfg).to_dict()
    except (TypeError, ValueError):
        return dict(cfg)


def config_differences(stored: dict[str, Any], expected: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: <stored> in the checkpoint vs <expected> expected`` for each differing key."""
    a, b = _full_config(stored), _full_config(expected)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ignore:
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            out.append(f"{key}: {va!r} in the checkpoint vs {vb!r} expected")
    return out


def check_compatible(
    ckpt: dict[str, Any],
    path: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    atom_table: torch.Tensor | None = None,
    ignore: tuple[str, ...] = (),
    table_name: str = "the atom-feature table in use",
) -> None:
    """Raise :class:`CheckpointError` when the checkpoint's architecture (``model_config``,
    keys in ``ignore`` left out, e.g. ``n_out`` for a new head) or its atom-feature table
    differs from the expected one. The message names the file and every difference."""
    problems: list[str] = []
    if model_config is not None:
        diff = config_differences(ckpt["model_config"], model_config, ignore)
        if diff:
            problems.append("the architecture does not match (" + "; ".join(diff) + ")")
    if atom_table is not None:
        stored = ckpt["state_dict"].get("atom_table")
        if stored is None:
            problems.append("no atom-feature table stored in the checkpoint")
        else:
            stored = stored.detach().cpu().float()
            given = atom_table.detach().cpu().float()
            if stored.shape != given.shape:
                problems.append(
                    f"the atom-feature table does not match "
                    f"(shape {list(stored.shape)} in the checkpoint vs {list(given.shape)} in {table_name})"
                )
            elif not torch.equal(stored, given):
                rows = torch.nonzero((stored != given).any(dim=1)).flatten()
                z = ", ".join(
                    str(int(r)) for r in rows[:5]
                )  # row Z holds element Z + (", ..." if len(rows) > 5 else "")
                problems.append(
                    f"the atom-feature table does not match "
                    f"({len(rows)} of {stored.shape[0]} element rows differ from {table_name}, Z = {z})"
                )
    if problems:
        raise CheckpointError(f"{path}: incompatible checkpoint: " + "; ".join(problems))


def featurize_params(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> FeaturizeParams:
    """The graph parameters the checkpoint's model was trained with.

    Checkpoints written before these were stored hold no ``featurize`` entry: the defaults
    of :class:`FeaturizeParams` (the pipeline's defaults) are assumed, with a warning."""
    feat = ckpt.get("featurize")
    if not feat:
        params = FeaturizeParams()
        msg = f"{path}: the checkpoint does not record its featurization parameters; assuming the defaults {params}"
        warnings.warn(msg, stacklevel=2)
        return params
    version = feat.get("format_version")
    if version != FEATURIZE_VERSION:
        raise CheckpointError(
            f"{path}: its graphs were built with featurization format {version!r}; "
            f"this tlcgcnn builds format {FEATURIZE_VERSION}"
        )
    try:
        return FeaturizeParams(**feat["params"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable featurization parameters {feat.get('params')!r} ({exc})") from None


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> nn.Module:
    """The model of a checkpoint, with its weights (and its own atom-feature table)."""
    try:
        table = ckpt["state_dict"]["atom_table"]
        model = build_model(ckpt["model_config"], table)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: its weights do not fit its own model config {ckpt.get('model_config')} ({first[:300]})"
        ) from None
    return model


TEST_METRIC_KEYS = (
    "mae",
    "rmse",
    "r2",
    "pearson_r",
    "spearman_rho",
    "mae_original_units",
    "roc_auc",
    "accuracy",
    "log_loss",
    "brier",
    "n_test",
)
VAL_SCORE = {
    "regression": "validation MAE in target units",
    "classification": "validation binary cross-entropy",
    "multitask": "validation MAE on the normalised scale, mean over the properties",
}


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """What a checkpoint is: target and units, training data, featurization, model,
    metrics (test metrics from a ``metrics.json`` next to it, if any), code and transfer."""
    from dataclasses import asdict

    from tlcgcnn.data.properties import register_specs, units_of

    ckpt = load_checkpoint(path)
    register_specs(ckpt.get("property_specs"))
    t = ckpt["target"]
    meta = ckpt.get("meta") or {}
    result = ckpt.get("result") or {}
    split = ckpt.get("split") or {}
    props = list(t.get("properties") or [t["property"]])
    model = model_from_checkpoint(ckpt, path)
    feat = ckpt.get("featurize")
    if feat:
        featurization: dict[str, Any] = {"recorded": True, **feat}
    else:
        featurization = {"recorded": False, "assumed": asdict(FeaturizeParams())}
    metrics_path = Path(path).with_name("metrics.json")
    test = None
    card_path = Path(path).with_name("card.json")
    if metrics_path.is_file():
        rec = io.read_json(metrics_path)
        test = {k: rec[k] for k in TEST_METRIC_KEYS if k in rec}
    elif card_path.is_file():  # a published model: its card holds the test metrics
        metrics_path = card_path
        test = card_test_metrics(io.read_json(card_path), ckpt.get("seed"))
    transfer = ckpt.get("transfer")
    from tlcgcnn.analysis.convergence import of_checkpoint

    verdict = of_checkpoint(ckpt)
    return {
        "file": str(path),
        "format_version": ckpt["format_version"],
        "target": {
            "name": t.get("name"),
            "property": t["property"],
            "properties": props,
            "units": {p: units_of(p) for p in props},
            "transform": t.get("transform", "none"),
            "task": t.get("task", "regression"),
            "subset": t.get("subset", "all"),
        },
        "training_data": {
            "data_sha256": meta.get("data_sha256"),
            "n_train": len(split.get("train", [])),
            "n_val": len(split.get("val", [])),
            "n_test": len(split.get("test", [])),
            "size": meta.get("size"),
            "seed": ckpt.get("seed"),
            "stage": meta.get("stage"),
            "mode": meta.get("mode"),
        },
        "featurization": featurization,
        "model": {
            "config": ckpt["model_config"],
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "n_trainable": result.get("n_trainable"),
        },
        "metrics": {
            "best_val_score": result.get("best_val_mae"),
            "best_val_score_is": VAL_SCORE.get(t.get("task", "regression"), "validation score"),
            "best_epoch": result.get("best_epoch"),
            "epochs_run": result.get("epochs_run"),
            "converged": verdict.text() if verdict else None,  # tlcgcnn.analysis.convergence (None: no history)
            "train_seconds": result.get("seconds"),
            "test": test,
            "test_metrics_file": str(metrics_path) if test is not None else None,
        },
        "code": {
            "package_version": meta.get("package_version"),
            "git_commit": meta.get("git_commit"),
            "config_sha256": meta.get("config_sha256"),
        },
        "torch_version": meta.get("torch_version"),
        "transfer": {**transfer, "pretrained": meta.get("pretrained")} if transfer else None,
    }


def card_test_metrics(card: dict[str, Any], seed: int | None) -> dict[str, Any] | None:
    """A model card's test metrics for one seed's checkpoint (a multi-task model: per
    property, flattened as ``<property>.<metric>``), with the seed ensemble's MAE beside."""
    test = card.get("test") or {}
    out: dict[str, Any] = {}
    per_seed = [r for r in test.get("per_seed") or [] if r.get("seed") == seed]
    if per_seed:
        out = {k: per_seed[0][k] for k in TEST_METRIC_KEYS if k in per_seed[0]}
    for prop, rec in (test.get("per_property") or {}).items():
        out.update({f"{prop}.{k}": v for k, v in rec.items() if k in TEST_METRIC_KEYS})
    ens = test.get("ensemble") or {}
    if ens.get("mae") is not None and len(test.get("per_seed") or []) > 1:
        out["ensemble_mae"] = ens["mae"]
    if not out and ens:
        out = {k: ens[k] for k in TEST_METRIC_KEYS if k in ens}
    return out or None


def format_description(d: dict[str, Any]) -> str:
    """:func:`describe_checkpoint` as readable text."""
    t, data, feat, model, m = d["target"], d["training_data"], d["featurization"], d["model"], d["metrics"]
    units = ", ".join(f"{p} [{u or 'dimensionless'}]" for p, u in t["units"].items())
    lines = [
        f"checkpoint      {d['file']} (format {d['format_version']})",
        f"target          {t['name']}: {units}; transform {t['transform']}; task {t['task']}; subset {t['subset']}",
        f"training data   sha256 {data['data_sha256'] or 'not recorded'}; "
        f"{data['n_train']} train / {data['n_val']} val / {data['n_test']} test"
        + (f"; size {data['size']}" if data["size"] is not None else "")
        + f"; seed {data['seed']}"
        + (f"; stage {data['stage']}, mode {data['mode']}" if data["stage"] else ""),
    ]
    if feat["recorded"]:
        lines.append(f"featurization   {feat['params']} (format {feat.get('format_version')}, key {feat.get('key')})")
    else:
        lines.append(f"featurization   not recorded; predict assumes the defaults {feat['assumed']}")
    cfg = ", ".join(f"{k}={v}" for k, v in model["config"].items())
    lines.append(
        f"model           {cfg}; {model['n_params']:,} parameters"
        + (f" ({model['n_trainable']:,} trained)" if model["n_trainable"] is not None else "")
    )
    if m["best_val_score"] is not None:
        lines.append(
            f"validation      best {m['best_val_score']:.6g} ({m['best_val_score_is']}) "
            f"at epoch {m['best_epoch']} of {m['epochs_run']}"
            + (f"; converged {m['converged']}" if m.get("converged") else "")
        )
    if m["test"]:
        lines.append(
            "test            "
            + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in m["test"].items())
            + f" (from {m['test_metrics_file']})"
        )
    else:
        lines.append("test            no metrics.json or card.json next to the checkpoint")
    c = d["code"]
    lines.append(
        f"code            tlcgcnn {c['package_version'] or '?'}, git {c['git_commit'] or '?'}, "
        f"config sha256 {c['config_sha256'] or '?'}; torch {d['torch_version'] or '?'}"
    )
    tr = d["transfer"]
    if tr:
        scale = tr.get("backbone_lr_scale", 1.0)
        lr = f"; pretrained layers at {scale:g}× lr" if scale != 1.0 else ""
        kept = "; the source as it is competed on validation (epoch -1)" if tr.get("validate_source") else ""
        lines.append(
            f"transfer        from {tr.get('checkpoint')} (pretrained {tr.get('pretrained')}); "
            f"freeze {tr.get('freeze')}, reinit {tr.get('reinit')}{lr}{kept}"
        )
    else:
        lines.append("transfer        none (trained from scratch)")
    return "\n".join(lines)
