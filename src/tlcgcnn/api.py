"""The Python API: load a trained model by name or path, predict structures, fine-tune.

.. code-block:: python

    import tlcgcnn

    model = tlcgcnn.load_model("mp2018-log_kvrh")   # a zoo name, a checkpoint, or a folder of seeds
    df = model.predict([structure, "my.cif", atoms])  # pymatgen Structures, ASE Atoms, paths
    run = tlcgcnn.finetune(pretrained="mp2018-ef", data="my_cifs/", label="my_modulus",
                           unit="GPa", transform="log10", workdir="my_run")

:func:`load_model` loads every seed of a model as one ensemble. :meth:`Model.predict`
returns one row per valid crystal: the prediction in the property's units (a log10 target
also as ``log10_<property>``), with several seeds their standard deviation
(``<column>_std``), and where the model carries a calibration (every published zoo model)
a 90 % interval (``<column>_lo90``, ``<column>_hi90``) fitted on its validation set
(:mod:`tlcgcnn.analysis.calibration`). Inputs that fail validation are listed with their reason in
``df.attrs["dropped"]``. ``tlcgcnn predict`` is this same call (:func:`tlcgcnn.predict.run`).

:func:`finetune` is ``tlcgcnn finetune``: it writes the run's configuration and runs the
repository's Snakemake workflow (scratch against transfer at each size and seed, paired
t-tests, learning curve), returning where the models and metrics are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.utils.layout import Layout

INTERVAL_LEVEL = 0.9
LO, HI = "_lo90", "_hi90"


@dataclass(slots=True)
class Model:
    """A trained model: the checkpoints of its seeds, used together as one ensemble.

    ``name``: the zoo name or the path it was loaded from; ``target``: what it predicts
    (:class:`tlcgcnn.data.targets.Target`); ``units``: each output column's units; ``card``: the
    model card (published models) or None; ``calibration``: per property, the 90 % interval
    calibration (:class:`tlcgcnn.analysis.calibration.Calibration`), or empty."""

    name: str
    paths: list[Path]
    loaded: list[Any]  # tlcgcnn.predict.LoadedModel
    card: dict[str, Any] | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> Any:
        return self.loaded[0].target

    @property
    def units(self) -> dict[str, str]:
        from tlcgcnn.predict import units_of

        return units_of(self.loaded)

    @property
    def seeds(self) -> int:
        return len(self.loaded)

    def __repr__(self) -> str:
        t = self.target
        what = ", ".join(f"{c} [{u or 'dimensionless'}]" for c, u in self.units.items())
        return (
            f"Model({self.name!r}: {t.task} {what}; "
            f"{self.seeds} seed(s){'; 90 % interval' if self.calibration else ''})"
        )

    def predict(
        self,
        structures: Any,
        *,
        device: str = "auto",
        batch_size: int = 512,
        threads: int = 1,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Predict crystals: a pymatgen ``Structure``, an ASE ``Atoms``, a path (structure
        file, folder, table) or a list of them. Returns one row per valid crystal (columns:
        ``material_id, input, formula, nsites``, the predictions, their spread and interval);
        ``.attrs["dropped"]`` lists every input left out, with its reason. Raises
        :class:`tlcgcnn.predict.PredictError` when no input is valid."""
        import torch

        from tlcgcnn.data.ingest import IngestOptions
        from tlcgcnn.predict import (
            STRUCTURE_OUT,
            PredictError,
            build_graphs,
            predict_frame,
            read_structures,
            strict_device,
        )

        dev = strict_device(device)
        items = structures if isinstance(structures, (list, tuple)) else [structures]
        old_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads))
        try:
            table, report = read_structures(items, IngestOptions(threads=threads), progress=progress)
            if len(table) == 0:
                err = PredictError(
                    f"no valid crystal among the inputs; {len(report)} dropped: "
                    + "; ".join(f"{r.material_id}: {r.reason} ({r.detail})" for r in report.head(5).itertuples())
                )
                err.dropped = report  # type: ignore[attr-defined]
                raise err
            graphs = build_graphs(table, self.loaded[0].params, threads=threads, progress=progress)
            preds = predict_frame(self.loaded, graphs, device=str(dev), batch_size=batch_size, progress=progress)
        finally:
            torch.set_num_threads(old_threads)
        preds = self._with_intervals(preds)
        out = pd.concat([table[STRUCTURE_OUT].reset_index(drop=True), preds], axis=1)
        out.attrs["dropped"] = report
        return out

    def predict_structure(self, structure: Any) -> float:
        """The prediction for one structure, in the property's units (a multi-task model: its
        first property; a classifier: the probability of the positive class)."""
        df = self.predict([structure])
        return float(df[next(iter(self.units))].iloc[0])

    def _with_intervals(self, preds: pd.DataFrame) -> pd.DataFrame:
        """Add the calibrated 90 % interval of each calibrated property: computed in the
        model's output space (log10 for a log10 target) and converted to the property's units."""
        from tlcgcnn.data.targets import inverse_transform

        t = self.target
        for prop, cal in self.calibration.items():
            out_col = prop if t.transform == "none" else f"{t.transform}_{prop}"
            if out_col not in preds.columns:
                continue
            std_col = f"{out_col}_std"
            std = preds[std_col].to_numpy() if std_col in preds.columns else None
            lo, hi = cal.interval(preds[out_col].to_numpy(), std)
            if t.transform != "none":
                preds[out_col + LO], preds[out_col + HI] = lo, hi
                lo, hi = inverse_transform(lo, t.transform), inverse_transform(hi, t.transform)
            preds[prop + LO], preds[prop + HI] = np.asarray(lo), np.asarray(hi)
        return preds


def load_model(spec: str | Path | Sequence[str | Path]) -> Model:
    """A model by zoo name (``tlcgcnn models`` lists them), checkpoint file, folder of seed
    checkpoints (a zoo folder, or a fine-tuning cell's ``results/.../n<size>/<mode>``), or a
    list of checkpoint files; every seed becomes one member of the ensemble. Raises
    :class:`tlcgcnn.zoo.ZooError` for an unknown name and
    :class:`tlcgcnn.train.checkpoint.CheckpointError` for a file that is not a usable checkpoint."""
    from tlcgcnn import zoo
    from tlcgcnn.analysis import calibration
    from tlcgcnn.predict import load_models

    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    paths = [p for s in specs for p in zoo.resolve(s)]
    loaded = load_models(paths)
    card = zoo.card_for(paths[0])
    cal: dict[str, Any] = {}
    if card and card.get("calibration") and len(paths) == len(card.get("files", paths)):
        cal = {p: calibration.Calibration.from_dict(d) for p, d in card["calibration"].get("outputs", {}).items()}
    name = str(specs[0]) if len(specs) == 1 else ", ".join(map(str, specs))
    return Model(name=name, paths=paths, loaded=loaded, card=card, calibration=cal)


def list_models() -> list[Any]:
    """The published models (:class:`tlcgcnn.zoo.ZooModel`): name, what they predict with
    units, training size, test MAE, seeds and interval coverage."""
    from tlcgcnn import zoo

    return zoo.list_models()


@dataclass(frozen=True, slots=True)
class FinetuneResult:
    """Where a finished :func:`finetune` run put its results."""

    workdir: Path
    config: Path
    results: Path
    target: str
    returncode: int

    @property
    def layout(self) -> Layout:
        """Every path of the run's results folder (:class:`tlcgcnn.utils.layout.Layout`)."""
        return Layout(self.results)

    @property
    def ttests(self) -> pd.DataFrame:
        """Paired t-tests of every mode against scratch (``stats/ttests.csv``)."""
        return pd.read_csv(self.layout.stats("ttests.csv"))

    @property
    def metrics(self) -> pd.DataFrame:
        """Test metrics of every (size, mode, seed) run (``stats/metrics.csv``)."""
        return pd.read_csv(self.layout.stats("metrics.csv"))

    def cell(self, size: int | str, mode: str) -> Path:
        """The folder of one (size, mode) cell: give it to :func:`load_model`."""
        return self.layout.cell_dir(self.target, size, mode)


def finetune(
    *,
    pretrained: str | Path,
    data: str | Path,
    label: str,
    unit: str | None = None,
    transform: str = "none",
    task: str = "regression",
    valid_range: tuple[float | None, float | None] | None = None,
    labels: str | Path | None = None,
    workdir: str | Path | None = None,
    cores: int = 1,
    **kwargs: Any,
) -> FinetuneResult:
    """Fine-tune ``pretrained`` (a zoo name or checkpoint) on your structures and labels,
    exactly as ``tlcgcnn finetune`` does. ``label``: the label column (any name; a built-in
    property name keeps its units and valid range); ``unit``, ``task`` (regression or
    classification) and ``valid_range`` (low, high) declare a new one. Other keywords as the
    CLI options: sizes, seeds, modes, subset, name, train (overrides), external, dry_run.
    Raises :class:`tlcgcnn.cli.runner.RunnerError` when the run fails."""
    from tlcgcnn.cli import runner

    outcome = runner.run(
        pretrained=pretrained,
        data=data,
        prop=label,
        unit=unit,
        transform=transform,
        task=task,
        valid_range=valid_range,
        labels=labels,
        workdir=workdir,
        cores=cores,
        **kwargs,
    )
    if outcome.returncode != 0:
        raise runner.RunnerError(
            f"the Snakemake run failed (exit status {outcome.returncode}); its log: {outcome.workdir}"
        )
    return FinetuneResult(
        workdir=outcome.workdir,
        config=outcome.workdir / "config.yaml",
        results=outcome.results,
        target=outcome.target,
        returncode=outcome.returncode,
    )
