"""The study's figures as a registry: one drawing function per figure, registered by name
with the inputs it reads, its report caption and category, and when the config requests it.

The workflow has one rule for all of them (``rules/figures.smk``): the wildcard ``figure``
is a file stem, :func:`resolve` maps it to its entry (``learning_curve_<target>`` is the
per-target entry ``target_curve``), :func:`input_paths` names its inputs, :func:`draw` draws
it, and :func:`requested` lists the stems the ``all`` target asks for. Every question about
the configuration takes the typed :class:`tlcgcnn.config.Config` (:mod:`.needs`). Every
figure is written through :func:`.style.save`, which applies the figure-quality guard
(:mod:`.quality`: axis labels with units, at most 8 legend entries, at most 3,000 px a side);
:mod:`.series` groups modes by source family and picks a family's mode on validation data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlcgcnn.config import Config
from tlcgcnn.report.figures import needs

# draw(inputs read, target labels, target of a per-target figure or None, png, pdf)
Draw = Callable[[Mapping[str, Any], Mapping[str, str], Any, Any, Any], None]


def _read_table(path: str | Path) -> Any:
    from tlcgcnn.analysis.stats import read_table

    return read_table(path)


def _read_tests(path: str | Path) -> Any:
    """ttests.csv with one test per (target, size, mode): the repeated tests of the modes
    selected on validation data (their own Holm family) are left out."""
    from tlcgcnn.analysis.stats import mode_tests, read_table

    return mode_tests(read_table(path))


def _read_parquet(path: str | Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def _read_json(path: str | Path) -> Any:
    from tlcgcnn.utils import fileio as io

    return io.read_json(path)


# input name -> (path below the run's results folder, reader)
INPUTS: dict[str, tuple[str, Callable[[str | Path], Any]]] = {
    "metrics": ("stats/metrics.csv", _read_table),
    "tests": ("stats/ttests.csv", _read_tests),
    "protocol": ("stats/protocol.csv", _read_table),
    "models": ("stats/models.csv", _read_table),
    "pretrain": ("stats/pretrain.csv", _read_table),
    "table": ("data/structures.parquet", _read_parquet),
    "corr": ("stats/ef_eg_correlation.json", _read_json),
    "external": ("stats/external.csv", _read_table),
    "external_predictions": ("stats/external_predictions.parquet", _read_parquet),
    "multitask": ("stats/multitask.csv", _read_table),
    "roc": ("stats/roc.csv", _read_table),
}


@dataclass(frozen=True)
class Figure:
    """A registered figure. ``stem`` names its files (``{target}`` in it makes one figure per
    fine-tuning target); ``caption`` is the stem of its ``report/*.rst`` file; ``when`` says
    whether a config requests it (the predicate's docstring says what it needs)."""

    name: str
    stem: str
    inputs: tuple[str, ...]
    caption: str
    category: str
    when: Callable[[Config], bool]
    draw: Draw

    @property
    def per_target(self) -> bool:
        return "{target}" in self.stem

    def stems(self, targets: list[str]) -> list[str]:
        return [self.stem.format(target=t) for t in targets] if self.per_target else [self.stem]


def _always(config: Config) -> bool:
    """Every run: the pooled learning curve reads only the fields every record has."""
    return True


def _every_target(config: Config) -> bool:
    """Every fine-tuning target gets its own curve."""
    return True


def _paper(predicate: Callable[[Config], bool]) -> Callable[[Config], bool]:
    def when(config: Config) -> bool:
        return needs.records_describe_modes(config) and predicate(config)

    when.__doc__ = f"{needs.records_describe_modes.__doc__}\nAnd: {predicate.__doc__}"
    return when


def _draw_learning_curve(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.curves import learning_curve

    learning_curve(d["metrics"], d["tests"], png, pdf, labels=labels)


def _draw_target_curve(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.curves import target_curve

    assert target is not None
    target_curve(d["metrics"], d["tests"], target, labels.get(target, target), png, pdf)


def _draw_subset_scaling(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.curves import subset_scaling

    subset_scaling(d["pretrain"], png, pdf)


def _draw_pretrain_size(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.curves import pretrain_size

    pretrain_size(d["metrics"], dict(labels), png, pdf)


def _draw_ef_eg_density(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.data import ef_eg_density

    ef_eg_density(d["table"], d["corr"], png, pdf)


def _draw_improvement(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.transfer import improvement

    improvement(d["metrics"], d["tests"], dict(labels), png, pdf)


def _draw_freeze_heatmap(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.transfer import freeze_heatmap

    freeze_heatmap(d["metrics"], d["tests"], dict(labels), png, pdf)


def _draw_protocol(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.transfer import protocol_sensitivity

    protocol_sensitivity(d["protocol"], d["metrics"], dict(labels), png, pdf)


def _draw_multitask(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.transfer import multitask_bars

    multitask_bars(d["metrics"], d["tests"], dict(labels), png, pdf)


def _draw_multitask_sources(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.curves import multitask_sources

    multitask_sources(d["multitask"], png, pdf)


def _draw_models(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.models import model_comparison

    model_comparison(d["models"], dict(labels), png, pdf)


def _draw_roc(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.curves import _reference_mode
    from tlcgcnn.report.figures.roc import roc_curves

    reference = _reference_mode(d["metrics"], d["tests"]) if len(d["metrics"]) else None
    roc_curves(d["roc"], d["metrics"], reference, dict(labels), png, pdf)


def _draw_external_parity(
    d: Mapping[str, Any], labels: Mapping[str, str], target: str | None, png: str | Path, pdf: str | Path
) -> None:
    from tlcgcnn.report.figures.external import external_parity

    external_parity(d["external"], d["external_predictions"], dict(labels), png, pdf)


REGISTRY: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure(
            "learning_curve",
            "learning_curve",
            ("metrics", "tests"),
            "learning_curve",
            "Learning curves",
            _always,
            _draw_learning_curve,
        ),
        Figure(
            "target_curve",
            "learning_curve_{target}",
            ("metrics", "tests"),
            "target_curve",
            "Learning curves",
            _paper(_every_target),
            _draw_target_curve,
        ),
        Figure(
            "ef_eg_density",
            "ef_eg_density",
            ("table", "corr"),
            "ef_eg_density",
            "Data",
            _paper(needs.has_ef_and_eg),
            _draw_ef_eg_density,
        ),
        Figure(
            "subset_scaling",
            "subset_scaling",
            ("pretrain",),
            "subset_scaling",
            "Learning curves",
            _paper(needs.has_subset_scaling),
            _draw_subset_scaling,
        ),
        Figure(
            "improvement",
            "improvement",
            ("metrics", "tests"),
            "improvement",
            "Transfer learning",
            _paper(needs.has_transfer),
            _draw_improvement,
        ),
        Figure(
            "freeze_heatmap",
            "freeze_heatmap",
            ("metrics", "tests"),
            "freeze_heatmap",
            "Transfer learning",
            _paper(needs.has_scheme_comparison),
            _draw_freeze_heatmap,
        ),
        Figure(
            "protocol_sensitivity",
            "protocol_sensitivity",
            ("protocol", "metrics"),
            "protocol_sensitivity",
            "Transfer learning",
            _paper(needs.has_protocol_choice),
            _draw_protocol,
        ),
        Figure(
            "multitask",
            "multitask",
            ("metrics", "tests"),
            "multitask",
            "Transfer learning",
            _paper(needs.has_multitask_comparison),
            _draw_multitask,
        ),
        Figure(
            "multitask_sources",
            "multitask_sources",
            ("multitask",),
            "multitask_sources",
            "Learning curves",
            needs.has_multitask_pairs,
            _draw_multitask_sources,
        ),
        Figure(
            "pretrain_size",
            "pretrain_size",
            ("metrics",),
            "pretrain_size",
            "Transfer learning",
            _paper(needs.has_pretrain_size_sweep),
            _draw_pretrain_size,
        ),
        Figure("models", "models", ("models",), "models", "Models", _paper(needs.has_model_comparison), _draw_models),
        Figure(
            "roc",
            "roc",
            ("roc", "metrics", "tests"),
            "roc",
            "Statistics",
            needs.has_classification,
            _draw_roc,
        ),
        Figure(
            "external_parity",
            "external_parity",
            ("external", "external_predictions"),
            "external_parity",
            "External sets",
            needs.has_external,
            _draw_external_parity,
        ),
    )
}


def resolve(stem: str) -> tuple[Figure, str | None]:
    """The registry entry of a figure file stem, and its target for a per-target figure."""
    for f in REGISTRY.values():
        if not f.per_target and f.stem == stem:
            return f, None
    for f in REGISTRY.values():
        if f.per_target:
            m = re.fullmatch(re.escape(f.stem).replace(re.escape("{target}"), "(?P<target>.+)"), stem)
            if m:
                return f, m.group("target")
    known = ", ".join(f.stem for f in REGISTRY.values())
    raise KeyError(f"no registered figure has the file name {stem!r} (known: {known})")


def stems(config: Config) -> list[str]:
    """Every figure stem that can be built for this config (requested or not)."""
    return [s for f in REGISTRY.values() for s in f.stems(needs.targets(config))]


def stem_pattern(config: Config) -> str:
    """Regular expression of :func:`stems` (the rule's wildcard constraint)."""
    return "|".join(re.escape(s) for s in sorted(stems(config), key=len, reverse=True))


def requested(config: Config) -> list[str]:
    """The figure stems the ``all`` target asks for: those whose entry's ``when`` holds."""
    return [s for f in REGISTRY.values() if f.when(config) for s in f.stems(needs.targets(config))]


def input_paths(stem: str, results: str) -> dict[str, str]:
    """Input name → file of a figure, below the run's results folder ``results``."""
    fig, _ = resolve(stem)
    return {name: f"{results}/{INPUTS[name][0]}" for name in fig.inputs}


def category(stem: str) -> str:
    return resolve(stem)[0].category


def subcategory(stem: str) -> str | None:
    """The target of a per-target figure (its report subcategory), else None."""
    return resolve(stem)[1]


def caption(stem: str, report_dir: str | Path) -> str:
    """The report caption text of a figure (``report/<caption>.rst``)."""
    path = Path(report_dir) / f"{resolve(stem)[0].caption}.rst"
    if not path.is_file():
        raise FileNotFoundError(f"caption of figure {stem!r} not found: {path}")
    return path.read_text(encoding="utf-8").strip()


def draw(
    stem: str,
    inputs: Mapping[str, str | Path],
    png: str | Path,
    pdf: str | Path,
    target_labels: Mapping[str, str] | None = None,
) -> None:
    """Read a figure's inputs and draw it to ``png`` and ``pdf``."""
    fig, target = resolve(stem)
    missing = [n for n in fig.inputs if n not in inputs]
    if missing:
        raise KeyError(f"figure {stem!r} needs inputs {missing} (given: {sorted(inputs)})")
    data = {n: INPUTS[n][1](inputs[n]) for n in fig.inputs}
    fig.draw(data, dict(target_labels or {}), target, png, pdf)
