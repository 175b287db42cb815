"""Model cards of published models (the model zoo, ``zoo:`` in the configuration).

:func:`publish` takes what the pipeline trained and evaluated for one published model (a
pretraining source, or the seeds of one fine-tuning cell) and writes its folder:

* ``model_s<seed>.pt``: the checkpoints (they load with ``torch.load(weights_only=True)``);
* ``card.json`` and ``card.md``: what it predicts and in what units, the data source and its
  sha256, the training size, the configuration and code version, the test metrics on the
  fixed test set (each seed and the seed ensemble), and how to use and fine-tune it;
* ``parity.png``: predicted vs true values on the fixed test set;
* ``training_curve.png``: each seed's training loss and validation score per epoch, its best
  epoch and the tail the convergence verdict looks at (:mod:`tlcgcnn.analysis.convergence`);
  the card's training table says whether each seed converged.

For ``mode: best`` the cell is chosen among several modes by the mean of the seeds' best
*validation* scores (never by the test set); the card lists the comparison.

:func:`calibrate` fits the model's 90 % prediction intervals (:mod:`tlcgcnn.analysis.calibration`)
on its validation crystals, measures their coverage on its test crystals and writes both
into the card (``card["calibration"]`` and an "Uncertainty" section of ``card.md``).
:func:`publish` calls it when given the run's structure table; published models are
(re)calibrated from a structure source with::

    python -m tlcgcnn.report.cards calibrate resources/pretrained/<name> --data mp2018_36737.csv.gz

and their training curves and convergence verdicts (re)drawn from their checkpoints alone with::

    python -m tlcgcnn.report.cards curves resources/pretrained/<name>
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis import calibration
from tlcgcnn.analysis.convergence import FLAT_GAIN, TAIL_FRACTION, Convergence, of_checkpoint
from tlcgcnn.analysis.metrics import regression_metrics
from tlcgcnn.data.properties import PROPERTIES, units_of
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

# the order of a CGCNN's options in card.md (card.json sorts its keys; a card re-rendered from it keeps this order)
CONFIG_ORDER = (
    "kind",
    "atom_fea_len",
    "n_conv",
    "h_fea_len",
    "n_h",
    "radius",
    "gaussian_step",
    "n_out",
    "orig_atom_fea_len",
)
# the data licence and citations a card states (card.json: data.licence)
DATA_LICENCE = (
    "Materials Project data, CC-BY 4.0 (cite A. Jain et al., APL Materials 1, 011002 (2013) and "
    "T. Xie and J. C. Grossman, PRL 120, 145301 (2018); see resources/mp2018/README.md)"
)
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
        out.append(
            {
                "property": p,
                "output": name,
                "unit": "log10 units" if t["transform"] == "log10" else unit,
                "property_unit": unit,
                "description": spec.description if spec else p,
            }
        )
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


@dataclass(frozen=True, slots=True)
class TrainingRun:
    """One seed's training history (``train_loss``, ``val_mae`` per epoch, as
    :func:`tlcgcnn.train.loop.fit` records it) and its :class:`Convergence`."""

    seed: int
    history: dict[str, list[float]]
    convergence: Convergence
    schedule: str | None = None  # the learning-rate schedule (train.schedule)


def training_runs(files: Sequence[str | Path]) -> list[TrainingRun]:
    """The training histories of checkpoints ``files`` (seed order kept); a checkpoint
    without a history (trained elsewhere) is left out."""
    import torch

    runs = []
    for f in files:
        ckpt = torch.load(f, map_location="cpu", weights_only=True)
        verdict = of_checkpoint(ckpt)
        if verdict is None:
            log.info("%s: no training history in the checkpoint; left out of the training curve", f)
            continue
        hist = {k: [float(v) for v in vals] for k, vals in ckpt["history"].items()}
        seed = int(ckpt.get("seed", len(runs)))
        runs.append(TrainingRun(seed, hist, verdict, (ckpt.get("train_config") or {}).get("schedule")))
    return runs


def score_label(target: Mapping[str, Any]) -> str:
    """The y label of a validation-score axis, with its unit (the figure-quality rule)."""
    if target["task"] == "classification":
        return "validation cross-entropy (dimensionless)"
    if target["task"] == "multitask":
        return "validation MAE, normalised, mean of properties (dimensionless)"
    out = target["outputs"][0]
    unit = out["unit"] if out["unit"] == out["property_unit"] else out["output"]  # log10(k_vrh / GPa)
    return f"validation MAE ({unit})"


def training_curves(runs: Sequence[TrainingRun], target: Mapping[str, Any], title: str, png: str | Path) -> None:
    """Training loss and validation score per epoch, a line per seed: the best epoch marked,
    the last :data:`~tlcgcnn.analysis.convergence.TAIL_FRACTION` of each run shaded (the
    part the convergence verdict looks at)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import quality

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        label = f"seed {run.seed}" if len(runs) <= quality.MAX_LEGEND_ENTRIES else None
        h, c = run.history, run.convergence
        epochs = np.arange(len(h["val_mae"]))
        if h.get("train_loss"):
            ax_loss.plot(epochs[: len(h["train_loss"])], h["train_loss"], color=colour, lw=1.0, label=label)
        ax_val.plot(epochs, h["val_mae"], color=colour, lw=1.0, label=label)
        ax_val.plot([c.best_epoch], [h["val_mae"][c.best_epoch]], "o", color=colour, ms=4)
        ax_val.axvspan(c.epochs_run - c.tail_epochs - 0.5, c.epochs_run - 0.5, color=colour, alpha=0.08, lw=0)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (dimensionless)")
    ax_loss.set_title("training loss (on standardised targets)", fontsize=9)
    ax_val.set_yscale("log")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel(score_label(target))
    ax_val.set_title(f"dot: best epoch; shaded: last {100 * TAIL_FRACTION:.0f} % of the epochs run", fontsize=9)
    if len(runs) <= quality.MAX_LEGEND_ENTRIES:
        ax_val.legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    quality.check(fig, Path(png).name)
    with io.atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    quality.check_png(png, Path(png).name)


def add_training(card: dict[str, Any], folder: Path) -> None:
    """Each seed's convergence verdict into ``card["training"]`` and its training curves into
    ``folder/training_curve.png``, from the folder's checkpoints."""
    runs = {r.seed: r for r in training_runs([folder / f for f in card["files"]])}
    for row in card["training"]:
        run = runs.get(int(row["seed"]))
        row["converged"] = run.convergence.converged if run else None
        row["convergence"] = run.convergence.text() if run else None
        row["schedule"] = run.schedule if run else None
    if runs:
        name = f"{card['name']}: {card['label']}"
        training_curves(list(runs.values()), card["predicts"], name, folder / "training_curve.png")


def publish(
    model: Mapping[str, Any],
    *,
    metrics: Mapping[str, str | Path],
    predictions: Mapping[str, str | Path],
    ingest_summary: str | Path,
    out_dir: str | Path,
    config_name: str,
    target_label: str | None = None,
    structures: str | Path | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Write the folder of one published model (see the module docstring).

    ``model`` is :meth:`tlcgcnn.config.Config.zoo_model`'s answer; ``metrics`` and
    ``predictions`` map each candidate (the pretraining source's name, or each mode) to its
    ``metrics.json`` / ``predictions.parquet``; ``ingest_summary`` is the run's
    ``ingest_summary.json`` (the raw input file and its sha256). With ``structures`` (the
    run's canonical ``structures.parquet``) the card carries the calibrated 90 % intervals
    (:func:`fit_calibration`); without, it has none."""
    from tlcgcnn.train.checkpoint import describe_checkpoint

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
                test["ensemble"]["mae_original_units"] = float(
                    np.abs(ens[f"y_pred_{target['property']}"] - ens[orig]).mean()
                )
        else:
            test["per_property"] = {
                p: {
                    k.removesuffix(f"_{p}"): v
                    for k, v in recs[0].items()
                    if k.endswith(f"_{p}") and k.removesuffix(f"_{p}") in CARD_METRICS
                }
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
            "licence": DATA_LICENCE,
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
    if structures is not None:
        files_out = [out / f for f in files]
        section = fit_calibration(files_out, read_structures(structures, needed_ids(files_out)), threads=threads)
        if section is not None:
            section["data"] = {"structures": Path(structures).name}
            section["data"].update({k: card["data"][k] for k in ("input", "input_sha256")})
            card["calibration"] = section
    parity(ens, target["outputs"], f"{model['name']}: {card['label']} (fixed test set)", out / "parity.png")
    add_training(card, out)
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


def _in_order(by_prop: Mapping[str, Any], order: list[str]) -> list[tuple[str, Any]]:
    """Items of a per-property mapping in the target's order (card.json sorts its keys)."""
    return sorted(by_prop.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def markdown(card: Mapping[str, Any], folder: str | Path) -> str:
    """card.json as a readable card."""
    t, d, test, code = card["predicts"], card["data"], card["test"], card["code"]
    folder = Path(folder).as_posix()
    outs = "\n".join(
        f"- `{o['output']}` in {o['unit']}: {o['description']}"
        + (f" (property unit {o['property_unit']})" if o["unit"] != o["property_unit"] else "")
        for o in t["outputs"]
    )
    tr = card["training"]
    train_rows = "\n".join(
        f"| {r['seed']} | {r['n_train']:,} | {r['n_val']:,} | {r['epochs_run']} | {r['best_epoch']} | "
        f"{_fmt(r['best_val_score'])} | {r.get('convergence') or '–'} | {_fmt(r['train_seconds'])} | "
        f"{r['device'] or '–'}, {r['precision'] or '–'} |"
        for r in tr
    )
    curve = ""
    if (Path(folder) / "training_curve.png").is_file() or any(r.get("convergence") for r in tr):
        curve = (
            "\n\nConverged: the run stopped early, or its best validation score improved by less than "
            f"{100 * FLAT_GAIN:.0f} % over its last {100 * TAIL_FRACTION:.0f} % of epochs "
            "(`tlcgcnn.analysis.convergence`)."
            + (
                " Under the cosine schedule the learning rate decays to zero at the last epoch, so a flat "
                "end is what the schedule makes: it says the run finished its schedule, not that a longer "
                "one could not have gone lower."
                if any(
                    r.get("schedule") == "cosine" and not str(r.get("convergence", "")).startswith("yes (stopped")
                    for r in tr
                )
                else ""
            )
            + "\n\n![training curve](training_curve.png)"
        )
    keys = [k for k in CARD_METRICS if k != "n_test" and any(k in s for s in test["per_seed"])]
    test_rows = "\n".join(
        f"| {s['seed']} | " + " | ".join(_fmt(s.get(k)) for k in keys) + " |" for s in test["per_seed"]
    )
    ens = test.get("ensemble")
    if ens:
        test_rows += "\n| mean of seeds' predictions | " + " | ".join(_fmt(ens.get(k)) for k in keys) + " |"
    headline = f"Test MAE {_fmt(test.get('mae_mean'))}" + (
        f" ± {_fmt(test['mae_std'])} (std over {len(test['per_seed'])} seeds)"
        if test.get("mae_std") is not None
        else ""
    )
    if ens:
        headline += f"; the mean of the seeds' predictions: MAE {_fmt(ens['mae'])}"
    per_prop = ""
    if test.get("per_property"):
        ordered = _in_order(test["per_property"], t["properties"])
        per_prop = "\n\nPer property (seed 0): " + "; ".join(f"`{p}` MAE {_fmt(m.get('mae'))}" for p, m in ordered)
    units_note = ""
    if "mae_original_units" in keys:
        units_note = f"\nmae_original_units: the MAE after undoing the log10, in {t['outputs'][0]['property_unit']}.\n"
    compared = ""
    if card.get("compared"):
        rows = "\n".join(f"| {c['mode']} | {_fmt(c['mean_best_val'])} | {c['seeds']} |" for c in card["compared"])
        compared = (
            "\n\nChosen among the target's transfer modes by the mean best validation score "
            "(`mode: best`; the test set plays no part):\n\n"
            f"| mode | mean best validation score | seeds |\n|---|---|---|\n{rows}\n"
        )
    transfer = "trained from scratch"
    if card.get("transfer"):
        x = card["transfer"]
        transfer = (
            f"fine-tuned from the pretraining source `{x.get('pretrained')}` "
            f"(freeze {x.get('freeze')}, reinit {x.get('reinit')})"
        )
    models = " ".join(f"--model {folder}/{f}" for f in card["files"])
    mc = card["model"]["config"]
    order = [*(k for k in CONFIG_ORDER if k in mc), *(k for k in mc if k not in CONFIG_ORDER)]
    cfg = ", ".join(f"{k}={mc[k]}" for k in order)
    return f"""# {card["name"]}: {card["label"]}

{headline} on the fixed test set ({test["n_test"]:,} materials, held out from training and validation).

## What it predicts

{outs}

Task {t["task"]}; materials: {t["subset"]}. Mode: {card.get("mode") or "pretraining source"}; {transfer}.

## Data

- input: `{d["input"]}` ({_fmt(d["rows_in"])} rows, {_fmt(d["rows_kept"])} kept by ingest), sha256 `{d["input_sha256"]}`
- canonical structure table sha256 `{d["structures_sha256"]}`
- {d.get("licence") or DATA_LICENCE}

## Training

| seed | train | validation | epochs | best epoch | best validation score | converged | seconds | device, precision |
|---|---|---|---|---|---|---|---|---|
{train_rows}

Validation score: {tr[0]["best_val_score_is"]}.{curve}{compared}

## Test (fixed test set)

| seed | {" | ".join(keys)} |
|---|{"---|" * len(keys)}
{test_rows}{per_prop}
{units_note}
![parity](parity.png)
{uncertainty_markdown(card)}
## Model and code

- {cfg}; {card["model"]["n_params"]:,} parameters
- featurization: {card["featurization"].get("params", card["featurization"])}
- tlcgcnn {code.get("package_version")}, git {code.get("git_commit")}, config `{code["config_name"]}` \
(sha256 {code.get("config_sha256")}), torch {code.get("torch_version")}

## Use

Predict (the seeds together give a mean and a standard deviation):

```
tlcgcnn predict {models} my_cifs/ -o predictions.csv
tlcgcnn info {folder}/{card["files"][0]}
```

Fine-tune it, or start a comparison from it, as a pretraining source of any configuration:

```yaml
pretrain:
  - {{name: {card["name"].replace("-", "_")}, checkpoint: {folder}/{card["files"][0]}}}
finetune:
  modes:
    from_{card["name"].replace("-", "_")}: {{pretrained: {card["name"].replace("-", "_")}}}
```

The graphs must be built with the featurization above (the pipeline checks it).
"""


# --------------------------------------------------------------------------- calibration

CALIBRATION_NOTE = (
    "outside data may be covered less: the interval is calibrated on crystals like the training data (not "
    "another chemistry, structure type or database), and early stopping on the same validation set makes it "
    "slightly optimistic"
)


def _predict_module() -> Any:
    """:mod:`tlcgcnn.predict`, imported by name. The model_card rule runs only its model loading,
    graph building and forward pass (numpy, scipy, torch: envs/cards.yaml); the module's top level
    also binds the structure parsers of :mod:`tlcgcnn.data.ingest` (gemmi, pymatgen), which the static
    import check of tests/workflow/test_envs.py would charge to the rule although it never calls them (its
    run-time check imports the module without them)."""
    import importlib

    return importlib.import_module("tlcgcnn.predict")


def _load(files: list[Path]) -> list[Any]:
    return _predict_module().load_models(files)


def needed_ids(files: list[Path]) -> set[str]:
    """The validation and test ids of the checkpoints (what a calibration predicts)."""
    from tlcgcnn.train.checkpoint import load_checkpoint

    ids: set[str] = set()
    for f in files:
        split = load_checkpoint(f).get("split") or {}
        ids |= {str(i) for i in split.get("val", [])} | {str(i) for i in split.get("test", [])}
    return ids


def read_structures(path: str | Path, ids: set[str] | None = None) -> pd.DataFrame:
    """Rows of a canonical structure table (``structures.parquet``), only ``ids`` if given."""
    filters = [("material_id", "in", sorted(ids))] if ids else None
    try:
        return pd.read_parquet(path, filters=filters)
    except (OSError, ValueError) as exc:
        raise CardError(f"{path}: cannot read the structure table ({exc})") from None


def _splits(models: list[Any]) -> tuple[list[list[str]], list[str], bool]:
    """(each seed's validation ids, the common test ids, whether the seeds share one validation
    set); the seeds' test sets must be the same crystals."""
    vals, tests = [], []
    for lm in models:
        split = lm.ckpt.get("split") or {}
        if not split.get("val") or not split.get("test"):
            raise CardError(f"{lm.path}: the checkpoint records no validation or test ids; it cannot be calibrated")
        vals.append([str(i) for i in split["val"]])
        tests.append([str(i) for i in split["test"]])
    for lm, t in zip(models[1:], tests[1:], strict=True):
        if set(t) != set(tests[0]):
            raise CardError(
                f"{lm.path}: its test set ({len(t)} crystals) is not the test set of {models[0].path} "
                f"({len(tests[0])}); seeds of one model must share their test set"
            )
    shared = all(set(v) == set(vals[0]) for v in vals[1:])
    return vals, tests[0], shared


def _rows(structures: pd.DataFrame, ids: list[str], what: str, where: Path) -> pd.DataFrame:
    """The rows of ``ids`` in that order; :class:`CardError` naming the model folder if any is missing."""
    by_id = structures.assign(material_id=structures["material_id"].astype(str)).drop_duplicates("material_id")
    by_id = by_id.set_index("material_id", drop=False)
    missing = [i for i in ids if i not in by_id.index]
    if missing:
        raise CardError(
            f"{where}: the structure table lacks {len(missing)} of the {len(ids)} {what} crystals "
            f"(e.g. {', '.join(missing[:3])}); "
            "give the table the model was trained on"
        )
    return by_id.loc[ids].reset_index(drop=True)


def _predict(models: list[Any], rows: pd.DataFrame, threads: int, device: str) -> pd.DataFrame:
    pm = _predict_module()
    graphs = pm.build_graphs(rows, models[0].params, threads=threads, progress=False)
    return pm.predict_frame(models, graphs, device=device, progress=False)


def _labels(rows: pd.DataFrame, target: Any, what: str, where: Path) -> np.ndarray:
    """Labels in the model's output space (log10 for a log10 target), [n, properties]."""
    from tlcgcnn.data.targets import labels

    props = list(target.properties) if target.task == "multitask" and target.properties else [target.property]
    absent = [p for p in props if p not in rows.columns]
    if absent:
        raise CardError(
            f"{where}: the structure table has no column {absent} of the model's target; "
            "give the table it was trained on"
        )
    try:
        y = labels(rows, rows["material_id"].astype(str).tolist(), target)
    except ValueError as exc:
        raise CardError(f"{where}: {what} labels: {exc}") from None
    return np.asarray(y, dtype=np.float64).reshape(len(rows), -1)


def fit_calibration(
    files: list[Path],
    structures: pd.DataFrame,
    *,
    level: float = calibration.LEVEL,
    threads: int = 1,
    device: str = "cpu",
) -> dict[str, Any] | None:
    """The ``calibration`` section of a card for the seeds ``files`` (None for a classifier).

    The checkpoints' own split ids say which crystals are validation and test; their
    structures and labels come from ``structures`` (the canonical table the model was trained
    on). Predictions are in the model's output space (``log10_<property>`` for a log10
    target), the ensemble's mean (and std) over the seeds as :func:`tlcgcnn.predict.predict_frame`
    computes them.

    Validation set of an ensemble: where every seed was validated on the same crystals (and
    none trained on them) the ensemble's mean and std there are honest, and the scaled method is
    fitted. The pipeline's fine-tuning cells instead draw each seed's validation set from the
    pool with the seed (mp2018-log_kvrh: 171 per seed, 1 crystal common to all three; the other
    seeds trained on the rest), so the crystals common to all seeds' validation sets are far
    too few and an ensemble prediction on any other validation crystal has seen its label.
    There each seed's model predicts its own validation set and the residuals of all seeds are
    pooled (n = seeds × validation size); no honest spread exists, so the binned (or absolute)
    method is fitted and applied to the ensemble mean, which is at least as accurate as one seed.
    Coverage is measured on the test crystals, which every seed held out."""
    where = Path(files[0]).parent
    models = _load(files)
    target = models[0].target
    if target.task == "classification":
        return None
    vals, test_ids, shared = _splits(models)
    props = list(target.properties) if target.task == "multitask" and target.properties else [target.property]
    cols = [p if target.transform == "none" else f"{target.transform}_{p}" for p in props]
    k = len(models)
    if shared or k == 1:
        rows = _rows(structures, vals[0], "validation", where)
        pf = _predict(models, rows, threads, device)
        y_val = _labels(rows, target, "validation", where)
        m_val = np.column_stack([pf[c].to_numpy(float) for c in cols])
        s_val = np.column_stack([pf[f"{c}_std"].to_numpy(float) for c in cols]) if k >= 2 else None
        shared_text = "the seeds' mean prediction on their shared validation set"
        scores = shared_text if k >= 2 else "the model on its validation set"
        n_crystals = len(rows)
    else:
        ys, ms = [], []
        for lm, ids in zip(models, vals, strict=True):
            rows = _rows(structures, ids, f"validation ({Path(lm.path).name})", where)
            pf = _predict([lm], rows, threads, device)
            ys.append(_labels(rows, target, "validation", where))
            ms.append(np.column_stack([pf[c].to_numpy(float) for c in cols]))
        y_val, m_val, s_val = np.vstack(ys), np.vstack(ms), None
        scores = "each seed's model on its own validation set, pooled (the seeds were validated on different crystals)"
        n_crystals = len(set().union(*map(set, vals)))
    rows = _rows(structures, test_ids, "test", where)
    pf = _predict(models, rows, threads, device)
    y_test = _labels(rows, target, "test", where)
    outputs, test = {}, {}
    for j, (p, c) in enumerate(zip(props, cols, strict=True)):
        cal = calibration.fit(y_val[:, j], m_val[:, j], None if s_val is None else s_val[:, j], level=level)
        mean = pf[c].to_numpy(float)
        std = pf[f"{c}_std"].to_numpy(float) if f"{c}_std" in pf.columns else None
        ok = np.isfinite(y_test[:, j])
        width = cal.half_width(mean[ok], None if std is None else std[ok])
        outputs[p] = cal.to_dict()
        test[p] = {
            "n": int(ok.sum()),
            "coverage": calibration.coverage(cal, y_test[:, j], mean, std),
            "mean_half_width": float(np.mean(width)) if len(width) else None,
        }
        log.info(
            "%s: %s 90 %% interval, q %.4g on %d validation scores; test coverage %.3f (n %d)",
            where.name,
            cal.method,
            cal.q,
            cal.n_val,
            test[p]["coverage"],
            test[p]["n"],
        )
    return {
        "level": level,
        "space": {p: c for p, c in zip(props, cols, strict=True)},
        "outputs": outputs,
        "validation": {"n": outputs[props[0]]["n_val"], "crystals": n_crystals, "seeds": k, "scores": scores},
        "test": test,
        "note": CALIBRATION_NOTE,
    }


def _display_folder(folder: Path) -> str:
    """The folder as card.md names it: relative to the working directory where it lies below it."""
    try:
        return folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def calibrate(
    folder: str | Path,
    structures_table: str | Path | pd.DataFrame,
    *,
    threads: int = 1,
    device: str = "cpu",
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """(Re)calibrate the published model in ``folder``: fit its 90 % intervals on its
    validation crystals, measure their coverage on its test crystals (:func:`fit_calibration`)
    and write them into its ``card.json`` and ``card.md``. ``structures_table``: the canonical
    table (a DataFrame, or a ``structures.parquet`` path) holding those crystals and their
    labels; ``data``: where it came from, recorded in the card. Returns the card's
    ``calibration`` section (empty for a classifier, whose card gets none)."""
    out = Path(folder)
    card_path = out / "card.json"
    if not card_path.is_file():
        raise CardError(f"{out}: no card.json (not a published model folder)")
    card = io.read_json(card_path)
    files = [out / f for f in card.get("files") or []]
    if not files or not all(f.is_file() for f in files):
        raise CardError(f"{card_path}: lists checkpoints {card.get('files')} that are not all in {out}")
    if isinstance(structures_table, pd.DataFrame):
        structures, source = structures_table, {}
    else:
        structures = read_structures(structures_table, needed_ids(files))
        source = {"structures": Path(structures_table).name}
    section = fit_calibration(files, structures, threads=threads, device=device)
    if section is None:
        card.pop("calibration", None)
    else:
        section["data"] = {**source, **(data or {})}
        card["calibration"] = section
    io.write_json(card_path, card)
    io.write_text(out / "card.md", markdown(card, _display_folder(out)))
    return section or {}


def _half_widths(c: Mapping[str, Any], unit: str) -> str:
    """A calibration's half-width in words."""
    if c["method"] == "binned":
        qs = [q for q in c.get("bin_q") or [] if q is not None]
        return f"{_fmt(min(qs))}–{_fmt(max(qs))} {unit} by predicted value" if qs else "unbounded"
    if c["method"] == "scaled":
        return f"{_fmt(c['q'])} × (the seeds' std + {_fmt(c['s0'])} {unit})"
    return f"{_fmt(c['q'])} {unit}" if c["q"] is not None else "unbounded"


def _method_text(c: Mapping[str, Any]) -> str:
    if c["method"] == "binned":
        return (
            f"split-conformal per bin of the predicted value ({len(c.get('bin_q') or [])} bins cut at the validation "
            "predictions' quantiles; Mondrian), so that a set with more large (or small) predicted values than the "
            "validation set is covered as well"
        )
    if c["method"] == "scaled":
        return "split-conformal, the half-width proportional to the seeds' spread plus the median validation spread"
    return "split-conformal, one half-width for every prediction"


def uncertainty_markdown(card: Mapping[str, Any]) -> str:
    """The "Uncertainty" section of card.md ("" for a card without calibration)."""
    cal = card.get("calibration")
    if not cal:
        return ""
    t = card["predicts"]
    outs = {o["property"]: o for o in t["outputs"]}
    v = cal["validation"]
    level = round(100 * cal["level"])
    fitted = f"{v['crystals']:,} validation crystals"
    if v["n"] != v["crystals"] or v["seeds"] > 1:
        fitted += f" ({v['n']:,} residuals of {v['seeds']} seeds)"
    lines = []
    for p, test in _in_order(cal["test"], t["properties"]):
        o, c = outs.get(p, {"output": p, "unit": ""}), cal["outputs"][p]
        lines.append(
            f"- `{o['output']}`: {level} % interval, coverage on the {test['n']:,} test crystals: "
            f"{100 * test['coverage']:.1f} %; fitted on {fitted}; half-width {_half_widths(c, o['unit'])} "
            f"(mean {_fmt(test.get('mean_half_width'))} on test)"
        )
    how = "; ".join(sorted({_method_text(c) for c in cal["outputs"].values()}))
    back = ""
    if t.get("transform", "none") != "none":
        unit = t["outputs"][0]["property_unit"]
        back = f" The interval is fitted in {t['transform']} units; its bounds convert back to {unit}."
    return f"""
## Uncertainty

{chr(10).join(lines)}

Method: {how}. Validation residuals: {v["scores"]}.{back}
Outside data may be covered less: crystals unlike the training data (another chemistry, structure
type or database), and early stopping on the same validation set makes its residuals slightly optimistic.
`tlcgcnn.load_model("{card["name"]}").predict(...)` adds the bounds as `<column>_lo{level}`, `<column>_hi{level}`.
"""


# --------------------------------------------------------------------------- command line


def _structures_from(path: Path, ids: set[str], threads: int) -> pd.DataFrame:
    """The crystals ``ids`` of a structure source: a canonical ``structures.parquet``, or a raw
    table / CIF folder that is ingested (only its rows with those ids are parsed)."""
    import importlib

    # Imported by name: the model_card rule, whose env (envs/cards.yaml) has no structure parsers,
    # imports this module but never runs this command; tests/workflow/test_envs.py follows static imports
    # from the module's top level, which calls main() under ``__main__``.
    ingest = importlib.import_module("tlcgcnn.data.ingest")
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        if {"lattice", "frac_coords", "atomic_numbers"} <= set(pq.read_schema(path).names):
            return read_structures(path, ids)
    raw = ingest.read_input(path)
    id_col = ingest.pick_column(raw.columns, None, ingest.ID_COLUMNS, "id", str(path))
    keep = raw[id_col].astype("string").str.strip().isin(ids).fillna(False).to_numpy(bool)
    if not keep.any():
        raise CardError(f"{path}: none of the model's {len(ids)} validation and test crystals is in it")
    options = ingest.IngestOptions(threads=threads)
    structures, _, summary = ingest.ingest_frame(raw[keep], options, path=str(path), progress=False)
    log.info("%s: %d of %d rows needed, %d kept by ingest", path, int(keep.sum()), len(raw), summary["rows_kept"])
    return structures


def main(argv: list[str] | None = None) -> int:
    """``python -m tlcgcnn.report.cards calibrate FOLDER... --data PATH`` and
    ``python -m tlcgcnn.report.cards curves FOLDER...``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tlcgcnn.report.cards", description="Model cards of published models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "calibrate",
        help="fit the 90 %% intervals of published models on their validation crystals and write them into their cards",
    )
    c.add_argument("folders", nargs="+", type=Path, help="published model folders (card.json, model_s<seed>.pt)")
    c.add_argument(
        "--data",
        required=True,
        type=Path,
        help="the structures the models were trained on: the raw table (mp2018_36737.csv.gz) or structures.parquet",
    )
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--device", default="cpu")
    k = sub.add_parser(
        "curves",
        help="draw the training curves of published models and write each seed's convergence into their cards",
    )
    k.add_argument("folders", nargs="+", type=Path, help="published model folders (card.json, model_s<seed>.pt)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "curves":
        for folder in args.folders:
            if not (folder / "card.json").is_file():
                parser.error(f"{folder}: no card.json (not a published model folder)")
            card = io.read_json(folder / "card.json")
            add_training(card, folder)
            io.write_json(folder / "card.json", card)
            io.write_text(folder / "card.md", markdown(card, folder))
            for row in card["training"]:
                print(f"{folder.name} seed {row['seed']}: converged {row['convergence'] or 'unknown (no history)'}")
        return 0
    import torch

    torch.set_num_threads(max(1, args.threads))
    if not args.data.exists():
        parser.error(f"--data {args.data}: no such file or folder")
    sha = io.sha256_file(args.data) if args.data.is_file() else None
    for folder in args.folders:
        card_path = folder / "card.json"
        if not card_path.is_file():
            parser.error(f"{folder}: no card.json (not a published model folder)")
        card = io.read_json(card_path)
        files = [folder / f for f in card.get("files") or []]
        expected = (card.get("data") or {}).get("input_sha256")
        if sha and expected and sha != expected:
            log.warning("%s: sha256 %s differs from the card's training input %s", args.data, sha, expected)
        structures = _structures_from(args.data, needed_ids(files), args.threads)
        data = {"input": args.data.name, "input_sha256": sha, "matches_training_input": bool(sha and sha == expected)}
        section = calibrate(folder, structures, threads=args.threads, device=args.device, data=data)
        for p, t in (section.get("test") or {}).items():
            m = section["outputs"][p]
            print(
                f"{folder.name} {p}: {m['method']}, validation n {m['n_val']}, test n {t['n']}, "
                f"coverage {100 * t['coverage']:.1f} %"
            )
        if not section:
            print(f"{folder.name}: a classifier; no interval calibration")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
