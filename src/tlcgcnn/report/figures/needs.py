"""What each figure needs from the configuration: pure functions of the typed
:class:`tlcgcnn.config.Config` (defaults filled, sources resolved).

A figure is requested (in the ``all`` target) only where the config will give it something
to draw; each predicate below mirrors the selection its figure makes from the run records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tlcgcnn.analysis.multitask import source_pairs
from tlcgcnn.config import Config, PretrainSource
from tlcgcnn.report.figures.labels import scheme_key, source_label


@dataclass(frozen=True)
class ModeUse:
    """One mode as run on one target (the fields the figures select by)."""

    target: str
    mode: str
    family: str  # scratch, transfer (frozen features included) or baseline
    model_kind: str  # cgcnn / attention, or the estimator of a baseline / frozen-features mode
    source: str | None  # pretraining source label (property and subset), transfer only
    subset: str | None
    multitask: bool
    pretrain_size: float | None  # "all" counts as infinitely large
    scheme: tuple[int, int] | None


def records_describe_modes(config: Config) -> bool:
    """The run records carry the mode fields (family, model kind, pretraining source, freeze,
    reinit) that every figure except the pooled learning curve reads: today only the
    seed-grouped cells (``finetune.group_seeds: true``) write them."""
    return config.group_seeds


def targets(config: Config) -> list[str]:
    """The fine-tuning targets, in the config's order (the per-target figures follow it)."""
    return config.target_names_as_listed


def _size(value: Any) -> float:
    return math.inf if value == "all" or value is None else float(value)


def _properties(source: PretrainSource) -> list[str]:
    return list(source.target.properties or [source.target.property])


def mode_uses(config: Config) -> list[ModeUse]:
    """Every (target, mode) the config runs, with what the figures need to know about it.
    A trained pretraining source is its property (or properties), subset and size; a
    ``checkpoint:`` source counts as its name alone (whole data set, size unknown), so a
    multi-task checkpoint does not request the multi-task figure (the figures the published
    runs with checkpoint sources, e.g. config/paper-cpu.yaml, were made with)."""
    out = []
    for t in targets(config):
        for name in config.target_modes(t):
            mode = config.modes[name]
            pre = config.pretrain_source(mode.pretrained) if mode.pretrained else None
            if mode.estimator:  # with a pretrained source: frozen features, a transfer mode
                family, kind = ("transfer" if pre else "baseline"), mode.estimator
            else:
                family, kind = ("transfer" if pre else "scratch"), str(config.model_config(mode.model)["kind"])
            props = [] if pre is None else [pre.name] if pre.checkpoint else _properties(pre)
            subset = None if pre is None else "all" if pre.checkpoint else pre.target.subset
            out.append(
                ModeUse(
                    target=t,
                    mode=name,
                    family=family,
                    model_kind=kind,
                    source=source_label("+".join(props), subset) if pre else None,
                    subset=subset,
                    multitask=len(props) > 1,
                    pretrain_size=(math.inf if pre.checkpoint else _size(pre.size)) if pre else None,
                    scheme=scheme_key(mode.freeze, mode.reinit, mode.features, mode.estimator) if pre else None,
                )
            )
    return out


def _compared(config: Config) -> list[ModeUse]:
    """Modes of targets that also run the baseline mode (the paired tests need it)."""
    base = config.baseline
    uses = mode_uses(config)
    with_base = {u.target for u in uses if u.mode == base}
    return [u for u in uses if u.target in with_base and u.mode != base]


def _largest_per_source(uses: list[ModeUse]) -> list[ModeUse]:
    """Transfer modes from the largest pretraining set of their source (the figures compare
    schemes and sources there; the size sweep is its own figure)."""
    largest: dict[str, float] = {}
    for u in uses:
        if u.family == "transfer" and u.source is not None and u.pretrain_size is not None:
            largest[u.source] = max(largest.get(u.source, -math.inf), u.pretrain_size)
    return [u for u in uses if u.family == "transfer" and u.source is not None and u.pretrain_size == largest[u.source]]


def has_transfer(config: Config) -> bool:
    """Improvement figure: some target runs a transfer mode and the baseline."""
    return any(u.family == "transfer" for u in _compared(config))


def has_scheme_comparison(config: Config) -> bool:
    """Freeze heatmap: some target runs more than one transfer scheme (layers frozen /
    re-initialised) from the largest pretraining set of a source, beside the baseline."""
    kept = _largest_per_source(_compared(config))
    return any(len({u.scheme for u in kept if u.target == t}) > 1 for t in {u.target for u in kept})


def has_protocol_choice(config: Config) -> bool:
    """Protocol figure: some target is fine-tuned in two or more ways (transfer modes) from
    one pretraining source: the choice stats/protocol.csv makes on validation data."""
    for t in targets(config):
        sources = [config.modes[m].pretrained for m in config.target_modes(t)]
        sources = [s for s in sources if s]
        if len(sources) > len(set(sources)):
            return True
    return False


def has_multitask_comparison(config: Config) -> bool:
    """Multi-task figure: all-layers-fine-tuned modes from a multi-task source and from at
    least one other source (whole data set, largest pretraining set), beside the baseline."""
    kept = [u for u in _largest_per_source(_compared(config)) if u.scheme == (0, 0) and u.subset == "all"]
    return any(u.multitask for u in kept) and len({u.source for u in kept}) > 1


def has_multitask_pairs(config: Config) -> bool:
    """Multi-task vs single-task sources figure: a multi-task pretraining source and a
    single-task source of one of its properties share a split (tlcgcnn.analysis.multitask.source_pairs;
    stats/multitask.csv then has rows). Needs no fine-tuning records."""
    return bool(source_pairs(config))


def has_pretrain_size_sweep(config: Config) -> bool:
    """Pretraining-size figure: one target is fine-tuned the same way (one scheme) from
    sources of one property pretrained on sets of several sizes (a `checkpoint:` source does
    not count here; the figure places it by its records)."""
    sizes: dict[tuple[str, str | None, tuple[int, int] | None], set[float]] = {}
    for u in mode_uses(config):
        if u.family == "transfer" and u.pretrain_size is not None:
            sizes.setdefault((u.target, u.source, u.scheme), set()).add(u.pretrain_size)
    return any(len(s) > 1 for s in sizes.values())


def has_model_comparison(config: Config) -> bool:
    """Model figure: some target is trained from scratch with both CGCNN and the attention
    convolution."""
    kinds: dict[str, set[str]] = {}
    for u in mode_uses(config):
        if u.family == "scratch":
            kinds.setdefault(u.target, set()).add(u.model_kind)
    return any({"cgcnn", "attention"} <= k for k in kinds.values())


def required_properties(config: Config) -> set[str]:
    """The properties the run learns: its targets' and its trained sources' (not those of a
    `checkpoint:` source, whose labels are another data set's)."""
    props = {config.target(t).property for t in config.target_names}
    for n in config.trained_pretrain_names:
        spec = config.pretrain_source(n).target
        props |= {spec.property, *(spec.properties or [])}
    return props


def has_ef_and_eg(config: Config) -> bool:
    """Density figure: the run reads both formation energy and the PBE band gap."""
    return {"formation_energy_per_atom", "band_gap"} <= required_properties(config)


def has_subset_scaling(config: Config, prop: str = "formation_energy_per_atom") -> bool:
    """Subset-scaling figure: single-task pretraining runs of ΔEf at two or more sizes of one
    subset (a learning curve needs two points)."""
    sizes: dict[str, set[float]] = {}
    for n in config.trained_pretrain_names:  # stats/pretrain.csv: trained sources only
        s = config.pretrain_source(n)
        if s.target.property == prop and not s.target.properties:
            sizes.setdefault(s.target.subset, set()).add(_size(s.size))
    return any(len(s) > 1 for s in sizes.values())


def has_classification(config: Config) -> bool:
    """ROC-curve figure: some fine-tuning target is a classification target (``task:
    classification``, e.g. is_metal); stats/roc.csv then has its cells' curves. Needs no
    pretraining source."""
    return any(config.target(t).task == "classification" for t in config.target_names)


def has_external(config: Config) -> bool:
    """Parity figure of the outside labelled sets: the config has ``external`` entries (each
    serves at least one fine-tuning target: tlcgcnn.config refuses one that serves none)."""
    return bool(config.external_names)
