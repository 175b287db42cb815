"""Model cards of published models (the model zoo, ``zoo:`` in the configuration).

:func:`publish` takes what the pipeline trained and evaluated for one published model (a
pretraining source, or the seeds of one fine-tuning cell) and writes its folder:

* ``model_s<seed>.pt``: the checkpoints (they load with ``torch.load(weights_only=True)``);
* ``card.json`` and ``card.md``: what it predicts and in what units, the data source and its
  sha256, the training size, the configuration and code version, the test metrics on the
  fixed test set (each seed and the seed ensemble), and how to use and fine-tune it;
* ``parity.png``: predicted vs true values on the fixed test set.

For ``mode: best`` the cell is chosen among several modes by the mean of the seeds' best
*validation* scores (never by the test set); the card lists the comparison.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn import io
from tlcgcnn.metrics import regression_metrics
from tlcgcnn.properties import PROPERTIES, units_of

log = logging.getLogger(__name__)

CARD_METRICS = ("mae", "rmse", "r2", "pearson_r", "spearman_rho", "mae_original_units", "roc_auc", "accuracy", "n_test")


class CardError(ValueError):
    """Inputs from which no card can be written (the message names the file)."""


def _records(path: str | Path) -> list[dict[str, Any]]:
    data = io.read_json(path)
    recs = data if isinstance(data, list) else [data]
    if not recs:
        raise CardError(f"{path}: no run records")
    return recs


def choose(candidates: Mapping[str, str | Path]) -> tuple[str, list[dict[str, Any]]]:
    """(mode, its per-seed validation scores) for each candidate's metrics file: the lowest
    mean best validation score wins (ties: the first in the given order)."""
    table = []
    for mode, path in candidates.items():
        recs = _records(path)
        scores = [r.get("best_val_mae") for r in recs]
        if any(s is None for s in scores):
            raise CardError(f"{path}: a record without best_val_mae (not a graph-model cell)")
        table.append({"mode": mode, "mean_best_val": float(np.mean(scores)), "seeds": len(recs)})
    best = min(table, key=lambda r: r["mean_best_val"])
    return str(best["mode"]), table


def _target_text(t: Mapping[str, Any]) -> dict[str, Any]:
    props = list(t["properties"])
    out = []
    for p in props:
        spec = PROPERTIES.get(p)
        unit = units_of(p) or "dimensionless"
        name = f"log10({p} / {unit})" if t["transform"] == "log10" else p
        out.append({"property": p, "output": name, "unit": "log10 units" if t["transform"] == "log10" else unit, "property_unit": unit, "description": spec.description if spec else p})
    return {**t, "outputs": out}


def _ensemble(preds: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per material (a single model's predictions pass through)."""
    value_cols = [c for c in preds.columns if c.startswith(("y_true", "y_pred"))]
    if "seed" not in preds.columns:
        return preds[["material_id", *value_cols]]
    return preds.groupby("material_id", sort=False)[value_cols].mean().reset_index()


def parity(preds: pd.DataFrame, outputs: list[dict[str, Any]], title: str, png: str | Path) -> None:
    """Predicted (seed mean) vs true on the test set, one panel per output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    multi = len(outputs) > 1
    fig, axes = plt.subplots(1, len(outputs), figsize=(3.6 * len(outputs), 3.6), squeeze=False)
    for ax, out in zip(axes[0], outputs, strict=True):
        tcol, pcol = (f"y_true_{out['property']}", f"y_pred_{out['property']}") if multi else ("y_true", "y_pred")
        d = preds[[tcol, pcol]].dropna()
        x, y = d[tcol].to_numpy(float), d[pcol].to_numpy(float)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, zorder=1)
        ax.scatter(x, y, s=6, alpha=0.5, lw=0, zorder=2)
        mae = float(np.abs(y - x).mean())
        unit = f" ({out['unit']})" if out["unit"] == out["property_unit"] else ""  # a log10 output names its unit
        ax.set_xlabel(f"true {out['output']}{unit}")
        ax.set_ylabel(f"predicted {out['output']}{unit}")
        ax.set_title(f"MAE {mae:.4g}, n = {len(d)}", fontsize=9)
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with io.atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def publish(
    model: Mapping[str, Any],
    *,
    metrics: Mapping[str, str | Path],
    predictions: Mapping[str, str | Path],
    ingest_summary: str | Path,
    out_dir: str | Path,
    config_name: str,
    target_label: str | None = None,
) -> dict[str, Any]:
    """Write the folder of one published model (see the module docstring).

    ``model`` is :meth:`tlcgcnn.config.Config.zoo_model`'s answer; ``metrics`` and
    ``predictions`` map each candidate (the pretraining source's name, or each mode) to its
    ``metrics.json`` / ``predictions.parquet``; ``ingest_summary`` is the run's
    ``ingest_summary.json`` (the raw input file and its sha256)."""
    from tlcgcnn.checkpoint import describe_checkpoint

    out = Path(out_dir)
    if model["kind"] == "finetune" and len(metrics) > 1:
        mode, comparison = choose(metrics)
    else:
        mode, comparison = next(iter(metrics)), None
    recs = sorted(_records(metrics[mode]), key=lambda r: r["seed"])
    preds = pd.read_parquet(predictions[mode])
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model_s*.pt"):
        old.unlink()
    files, seeds = [], []
    for r in recs:
        src = Path(r["checkpoint"])
        if not src.is_file():
            raise CardError(f"{metrics[mode]}: checkpoint {src} of seed {r['seed']} does not exist")
        dst = out / f"model_s{int(r['seed'])}.pt"
        with io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        files.append(dst.name)
        seeds.append(describe_checkpoint(dst))
    first = seeds[0]
    target = _target_text(first["target"])
    ens = _ensemble(preds)
    summary = io.read_json(ingest_summary)
    test = {
        "n_test": int(recs[0].get("n_test", len(ens))),
        "per_seed": [{"seed": int(r["seed"]), **{k: r[k] for k in CARD_METRICS if k in r}} for r in recs],
    }
    if target["task"] in ("regression", "multitask"):
        maes = [float(r["mae"]) for r in recs]
        test["mae_mean"] = float(np.mean(maes))
        test["mae_std"] = float(np.std(maes, ddof=1)) if len(maes) > 1 else None
        if target["task"] == "regression":
            test["ensemble"] = regression_metrics(ens["y_true"].to_numpy(float), ens["y_pred"].to_numpy(float))
            orig = f"y_true_{target['property']}"
            if orig in ens.columns:
                test["ensemble"]["mae_original_units"] = float(np.abs(ens[f"y_pred_{target['property']}"] - ens[orig]).mean())
        else:
            test["per_property"] = {
                p: {k.removesuffix(f"_{p}"): v for k, v in recs[0].items() if k.endswith(f"_{p}") and k.removesuffix(f"_{p}") in CARD_METRICS}
                for p in target["properties"]
            }
    first_ckpt_meta = recs[0]
    card = {
        "name": model["name"],
        "kind": model["kind"],
        "label": target_label or target["name"],
        "predicts": target,
        "files": files,
        "data": {
            "input": Path(str(summary.get("input", ""))).name,
            "input_sha256": summary.get("input_sha256"),
            "rows_in": summary.get("rows_in"),
            "rows_kept": summary.get("rows_kept"),
            "structures_sha256": first["training_data"]["data_sha256"],
        },
        "training": [
            {
                "seed": s["training_data"]["seed"],
                "n_train": s["training_data"]["n_train"],
                "n_val": s["training_data"]["n_val"],
                "size": s["training_data"]["size"],
                "epochs_run": s["metrics"]["epochs_run"],
                "best_epoch": s["metrics"]["best_epoch"],
                "best_val_score": s["metrics"]["best_val_score"],
                "best_val_score_is": s["metrics"]["best_val_score_is"],
                "train_seconds": s["metrics"]["train_seconds"],
                "device": r.get("device"),
                "precision": r.get("precision"),
            }
            for s, r in zip(seeds, recs, strict=True)
        ],
        "test": test,
        "mode": mode if model["kind"] == "finetune" else None,
        "choice": model.get("choice"),
        "compared": comparison,
        "transfer": first["transfer"],
        "model": first["model"],
        "featurization": first["featurization"],
        "code": {**first["code"], "config_name": config_name, "torch_version": first["torch_version"]},
        "source_metrics": {"stage": first_ckpt_meta.get("stage"), "mode": first_ckpt_meta.get("mode")},
    }
    parity(ens, target["outputs"], f"{model['name']}: {card['label']} (fixed test set)", out / "parity.png")
    io.write_json(out / "card.json", card)
    io.write_text(out / "card.md", markdown(card, out))
    log.info("%s: %d checkpoint(s), test MAE %s -> %s", model["name"], len(files), test.get("mae_mean"), out)
    return card


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(card: Mapping[str, Any], folder: str | Path) -> str:
    """card.json as a readable card."""
    t, d, test, code = card["predicts"], card["data"], card["test"], card["code"]
    folder = Path(folder).as_posix()
    outs = "\n".join(f"- `{o['output']}` in {o['unit']}: {o['description']}" + (f" (property unit {o['property_unit']})" if o["unit"] != o["property_unit"] else "") for o in t["outputs"])
    tr = card["training"]
    train_rows = "\n".join(
        f"| {r['seed']} | {r['n_train']:,} | {r['n_val']:,} | {r['epochs_run']} | {r['best_epoch']} | {_fmt(r['best_val_score'])} | {_fmt(r['train_seconds'])} | {r['device'] or '–'}, {r['precision'] or '–'} |"
        for r in tr
    )
    keys = [k for k in CARD_METRICS if k != "n_test" and any(k in s for s in test["per_seed"])]
    test_rows = "\n".join(f"| {s['seed']} | " + " | ".join(_fmt(s.get(k)) for k in keys) + " |" for s in test["per_seed"])
    ens = test.get("ensemble")
    if ens:
        test_rows += "\n| mean of seeds' predictions | " + " | ".join(_fmt(ens.get(k)) for k in keys) + " |"
    headline = f"Test MAE {_fmt(test.get('mae_mean'))}" + (f" ± {_fmt(test['mae_std'])} (std over {len(test['per_seed'])} seeds)" if test.get("mae_std") is not None else "")
    if ens:
        headline += f"; the mean of the seeds' predictions: MAE {_fmt(ens['mae'])}"
    per_prop = ""
    if test.get("per_property"):
        per_prop = "\n\nPer property (seed 0): " + "; ".join(f"`{p}` MAE {_fmt(m.get('mae'))}" for p, m in test["per_property"].items())
    units_note = ""
    if "mae_original_units" in keys:
        units_note = f"\nmae_original_units: the MAE after undoing the log10, in {t['outputs'][0]['property_unit']}.\n"
    compared = ""
    if card.get("compared"):
        rows = "\n".join(f"| {c['mode']} | {_fmt(c['mean_best_val'])} | {c['seeds']} |" for c in card["compared"])
        compared = f"\n\nChosen among the target's transfer modes by the mean best validation score (`mode: best`; the test set plays no part):\n\n| mode | mean best validation score | seeds |\n|---|---|---|\n{rows}\n"
    transfer = "trained from scratch"
    if card.get("transfer"):
        x = card["transfer"]
        transfer = f"fine-tuned from the pretraining source `{x.get('pretrained')}` (freeze {x.get('freeze')}, reinit {x.get('reinit')})"
    models = " ".join(f"--model {folder}/{f}" for f in card["files"])
    cfg = ", ".join(f"{k}={v}" for k, v in card["model"]["config"].items())
    return f"""# {card['name']}: {card['label']}

{headline} on the fixed test set ({test['n_test']:,} materials, held out from training and validation).

## What it predicts

{outs}

Task {t['task']}; materials: {t['subset']}. Mode: {card.get('mode') or 'pretraining source'}; {transfer}.

## Data

- input: `{d['input']}` ({_fmt(d['rows_in'])} rows, {_fmt(d['rows_kept'])} kept by ingest), sha256 `{d['input_sha256']}`
- canonical structure table sha256 `{d['structures_sha256']}`
- Materials Project data, CC-BY 4.0 (cite A. Jain et al., APL Materials 1, 011002 (2013) and T. Xie and J. C. Grossman, PRL 120, 145301 (2018); see resources/mp2018/README.md)

## Training

| seed | train | validation | epochs | best epoch | best validation score | seconds | device, precision |
|---|---|---|---|---|---|---|---|
{train_rows}

Validation score: {tr[0]['best_val_score_is']}.{compared}

## Test (fixed test set)

| seed | {' | '.join(keys)} |
|---|{'---|' * len(keys)}
{test_rows}{per_prop}
{units_note}
![parity](parity.png)

## Model and code

- {cfg}; {card['model']['n_params']:,} parameters
- featurization: {card['featurization'].get('params', card['featurization'])}
- tlcgcnn {code.get('package_version')}, git {code.get('git_commit')}, config `{code['config_name']}` (sha256 {code.get('config_sha256')}), torch {code.get('torch_version')}

## Use

Predict (the seeds together give a mean and a standard deviation):

```
tlcgcnn predict {models} my_cifs/ -o predictions.csv
tlcgcnn info {folder}/{card['files'][0]}
```

Fine-tune it, or start a comparison from it, as a pretraining source of any configuration:

```yaml
pretrain:
  - {{name: {card['name'].replace('-', '_')}, checkpoint: {folder}/{card['files'][0]}}}
finetune:
  modes:
    from_{card['name'].replace('-', '_')}: {{pretrained: {card['name'].replace('-', '_')}}}
```

The graphs must be built with the featurization above (the pipeline checks it).
"""
