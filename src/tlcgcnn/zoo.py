"""The model zoo by name: where published models are found, what each one is, and how a model
specification (a zoo name, a checkpoint file or a folder of seed checkpoints) becomes the
checkpoint files to load.

A published model is a folder ``<name>/`` holding ``model_s<seed>.pt`` and the model card
``card.json`` written by :mod:`tlcgcnn.report.cards`. Folders are looked up, in order, in
:func:`zoo_dirs`: the folder named by the environment variable ``TLCGCNN_ZOO``, the copy
inside the installed package (``tlcgcnn/_zoo``, present in a wheel built from the repository,
see ``setup.py``) and the repository's ``resources/pretrained`` (an editable install). On a
name found twice the first folder wins.

This module does not import torch: listing and resolving read JSON and file names only.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcgcnn.utils.layout import cell_runs, seed_number

ENV_VAR = "TLCGCNN_ZOO"
CARD = "card.json"
_ZOO_FILE = re.compile(r"^model_s(\d+)\.pt$")


class ZooError(ValueError):
    """An unknown model name, or a path that is no model; the message says which and why."""


def zoo_dirs() -> list[Path]:
    """The folders searched for published models, in order (only those that exist):
    ``$TLCGCNN_ZOO``, the package's ``_zoo`` copy, the repository's ``resources/pretrained``.
    ``TLCGCNN_ZOO`` naming something that is not a folder raises :class:`ZooError`."""
    import tlcgcnn

    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise ZooError(f"{ENV_VAR}={env}: not a folder (it should name a folder of published models)")
        out.append(p)
    package_copy = Path(tlcgcnn.__file__).resolve().parent / "_zoo"
    repository = Path(__file__).resolve().parents[2] / "resources" / "pretrained"
    for p in (package_copy, repository):
        if p.is_dir() and all(p.resolve() != q.resolve() for q in out):
            out.append(p)
    return out


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"{path}: unreadable model card ({type(exc).__name__}: {exc})") from None
    if not isinstance(card, dict):
        raise ZooError(f"{path}: not a model card (a JSON {type(card).__name__}, not an object)")
    return card


def _seed_files(folder: Path) -> list[Path]:
    """``model_s<seed>.pt`` of a zoo folder, or ``runs/s<seed>/model.pt`` of a fine-tuning
    cell, sorted by seed (empty if neither)."""
    zoo = sorted(
        ((int(m.group(1)), p) for p in folder.glob("model_s*.pt") if (m := _ZOO_FILE.match(p.name)) and p.is_file()),
        key=lambda t: t[0],
    )
    if zoo:
        return [p for _, p in zoo]
    runs = cell_runs(folder)
    cell = sorted(
        (
            (seed, d / "model.pt")
            for d in (runs.iterdir() if runs.is_dir() else ())
            if (seed := seed_number(d.name)) is not None and (d / "model.pt").is_file()
        ),
        key=lambda t: t[0],
    )
    return [p for _, p in cell]


@dataclass(frozen=True, slots=True)
class ZooModel:
    """One published model, as its card describes it.

    ``properties``: what it predicts (the canonical property names); ``unit``: the unit of
    the model's output as the card states it (``"eV/atom"``, or for a log10 target the output
    itself, ``"log10(k_vrh / GPa)"``; a multi-task model: one per property, comma-separated);
    ``train_size``: training crystals (of the first seed); ``test_mae``: the test MAE of the
    seeds' mean prediction (one seed: its own; a multi-task model: of its first property);
    ``test_metrics``: the card's test metrics (the ensemble's, or per property);
    ``calibration``: the card's ``calibration`` section (90 % intervals) or None."""

    name: str
    folder: Path
    files: tuple[Path, ...]
    properties: tuple[str, ...]
    unit: str
    label: str
    task: str
    train_size: int | None
    seeds: int
    test_mae: float | None
    test_metrics: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    licence: str | None = None
    data_source: str | None = None
    calibration: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    card: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def predicts(self) -> str:
        """The predicted properties, comma-separated."""
        return ", ".join(self.properties)

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The card's output descriptions (output name, unit, property unit, description)."""
        return list((self.card.get("predicts") or {}).get("outputs") or [])

    def coverage(self) -> dict[str, float]:
        """Measured test coverage of the 90 % interval, per property (empty: no calibration)."""
        test = (self.calibration or {}).get("test") or {}
        return {
            p: float(v["coverage"]) for p, v in test.items() if isinstance(v, Mapping) and v.get("coverage") is not None
        }

    @classmethod
    def from_folder(cls, folder: Path) -> ZooModel:
        """The model of a zoo folder (its ``card.json`` and ``model_s*.pt``)."""
        card_path = folder / CARD
        card = _read_card(card_path)
        try:
            t = card["predicts"]
            outputs = t.get("outputs") or []
            properties = tuple(t.get("properties") or [t["property"]])
        except (KeyError, TypeError) as exc:
            raise ZooError(f"{card_path}: not a model card (no 'predicts' entry with a property: {exc})") from None
        units = [str(o["output"]) if o.get("unit") != o.get("property_unit") else str(o.get("unit")) for o in outputs]
        listed = [folder / f for f in card.get("files") or []]
        files = tuple(listed) if listed and all(f.is_file() for f in listed) else tuple(_seed_files(folder))
        if not files:
            raise ZooError(f"{folder}: a model card but no model_s<seed>.pt checkpoint")
        test = card.get("test") or {}
        metrics: dict[str, Any] = test.get("ensemble") or test.get("per_property") or (test.get("per_seed") or [{}])[0]
        mae = (test.get("ensemble") or {}).get("mae", test.get("mae_mean"))
        training = card.get("training") or []
        data = card.get("data") or {}
        return cls(
            name=folder.name,
            folder=folder,
            files=files,
            properties=properties,
            unit=", ".join(units),
            label=str(card.get("label") or t.get("name") or folder.name),
            task=str(t.get("task", "regression")),
            train_size=int(training[0]["n_train"]) if training and training[0].get("n_train") is not None else None,
            seeds=len(files),
            test_mae=float(mae) if mae is not None else None,
            test_metrics=dict(metrics),
            licence=card.get("licence") or data.get("licence"),
            data_source=data.get("input"),
            calibration=card.get("calibration") or None,
            card=card,
        )


def _folders(dirs: Iterable[Path]) -> Iterable[Path]:
    for d in dirs:
        for sub in sorted(d.iterdir()):
            if sub.is_dir() and (sub / CARD).is_file():
                yield sub


def list_models(dirs: Sequence[Path] | None = None) -> list[ZooModel]:
    """Every published model of ``dirs`` (default :func:`zoo_dirs`), sorted by name; on a
    name found twice the first folder wins."""
    seen: dict[str, ZooModel] = {}
    for folder in _folders(zoo_dirs() if dirs is None else dirs):
        if folder.name not in seen:
            seen[folder.name] = ZooModel.from_folder(folder)
    return [seen[k] for k in sorted(seen)]


def _known(models: Sequence[ZooModel] | None = None) -> str:
    names = [m.name for m in (list_models() if models is None else models)]
    return ", ".join(names) if names else f"none (no published model in {ENV_VAR}, the package or resources/pretrained)"


def get(name: str) -> ZooModel:
    """The published model called ``name``; :class:`ZooError` (listing the known names) if none."""
    models = list_models()
    for m in models:
        if m.name == name:
            return m
    raise ZooError(f"{name}: no published model of that name; known names: {_known(models)}")


def resolve(spec: str | Path) -> list[Path]:
    """The checkpoint files of a model specification: a zoo name; a checkpoint file (any
    existing file is passed on as it is: the checkpoint loader says what is wrong with one that
    is not a checkpoint); a zoo folder (``model_s*.pt``) or a fine-tuning cell folder
    (``runs/s*/model.pt``, e.g. ``results/<run>/finetune/<target>/n<size>/<mode>``), sorted by
    seed. Anything else raises :class:`ZooError` listing the known names."""
    p = Path(spec).expanduser()
    if p.is_file():  # any file: the checkpoint loader says what is wrong with one that is not a checkpoint
        return [p]
    if p.is_dir():
        files = _seed_files(p)
        if files:
            return files
        raise ZooError(
            f"{spec}: a folder without model_s<seed>.pt or runs/s<seed>/model.pt, so not a model folder; "
            f"known names: {_known()}"
        )
    if p.suffix == ".pt":
        raise ZooError(f"{spec}: no such checkpoint file")
    models = list_models()
    for m in models:
        if m.name == str(spec):
            return list(m.files)
    raise ZooError(f"{spec}: not a model name, checkpoint file or model folder; known names: {_known(models)}")


def card_for(path: str | Path) -> dict[str, Any] | None:
    """The model card (``card.json``) beside a checkpoint, or None where there is none."""
    card = Path(path).parent / CARD
    return _read_card(card) if card.is_file() else None


# --------------------------------------------------------------------------- the table


def _g(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def _row(m: ZooModel) -> list[str]:
    outs = m.outputs
    if outs:
        predicts = ", ".join(
            o["output"] if o.get("unit") != o.get("property_unit") else f"{o['property']} [{o.get('unit')}]"
            for o in outs
        )
        out_units = [str(o.get("unit") or "") for o in outs]
    else:
        predicts, out_units = m.predicts, [""] * len(m.properties)
    per_prop = m.test_metrics if m.task == "multitask" else {}
    if per_prop and all(isinstance(per_prop.get(p), Mapping) for p in m.properties):
        pairs = zip(m.properties, out_units, strict=False)
        mae = " / ".join(f"{_g(per_prop[p].get('mae'))} {u}".strip() for p, u in pairs)
    else:
        mae = f"{_g(m.test_mae)} {out_units[0] if out_units else ''}".strip()
    cov = m.coverage()
    test_n = [((m.calibration or {}).get("test") or {}).get(p, {}).get("n") for p in m.properties]
    if cov:
        coverage = " / ".join(f"{100 * cov[p]:.1f}" if p in cov else "–" for p in m.properties) + " %"
        if test_n[0]:
            coverage += f" (n = {int(test_n[0]):,})"
    else:
        coverage = "–"
    return [
        m.name,
        predicts,
        f"{m.train_size:,}" if m.train_size is not None else "–",
        mae,
        str(m.seeds),
        coverage,
    ]


def format_table(models: Sequence[ZooModel]) -> str:
    """The published models as the text ``tlcgcnn models`` prints: name, what it predicts
    (units), training size, test MAE (of the seeds' mean prediction), seeds, and the measured
    coverage of the calibrated 90 % interval on the test set."""
    header = ["name", "predicts", "train", "test MAE", "seeds", "90 % interval coverage (test)"]
    rows = [header, *(_row(m) for m in models)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 4}
    lines = []
    for k, r in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not models:
        lines.append(f"(no published model found in {ENV_VAR}, the package's _zoo or resources/pretrained)")
    return "\n".join(lines)
