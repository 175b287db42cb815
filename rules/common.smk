import os
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../config/schema/config.schema.yaml")
validate(config["dataset"], schema="../config/schema/download.schema.yaml")

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

# Jobs inherit LD_PRELOAD=tcmalloc when it is installed (faster CPU training; see
# src/tlcgcnn/allocator.py). TLCGCNN_TCMALLOC=0 turns it off, or names the library.
from tlcgcnn.allocator import preload as _preload_tcmalloc  # noqa: E402

_preload_tcmalloc(os.environ)

R = f"results/{config['name']}"
FT = config["finetune"]
PRETRAIN = {p["name"]: p for p in config.get("pretrain", [])}
TARGETS = {t["name"]: t for t in FT["targets"]}
MODES = FT["modes"]
# the atom feature table: a user's (featurize.atom_features) or the one shipped in the package
ATOM_FEATURES = (
    config["featurize"]["atom_features"] or f"{SRC}/tlcgcnn/data/atom_features.csv"
)
MODEL = {**config["model"], "radius": config["featurize"]["radius"]}
MODEL_VARIANTS = config.get("model_variants", {})
GROUP_SEEDS = FT.get("group_seeds", False)
GNN_MODES = sorted(m for m, s in MODES.items() if not s.get("estimator"))
BASELINE_MODES = sorted(m for m, s in MODES.items() if s.get("estimator"))


def model_for(variant=None):
    """Model config of a named variant (config model_variants) or the base model."""
    if variant is None:
        return MODEL
    return {**MODEL, **MODEL_VARIANTS[variant]}


def _check_config():
    clash = set(PRETRAIN) & set(TARGETS)
    if clash:
        raise ValueError(
            f"config: names {sorted(clash)} are used both as a pretrain and a finetune target name"
        )
    for mode, spec in MODES.items():
        pre = spec.get("pretrained")
        if pre is not None and pre not in PRETRAIN:
            raise ValueError(
                f"config: finetune.modes.{mode}.pretrained = {pre!r} is not a pretrain name "
                f"(known: {sorted(PRETRAIN)})"
            )
    for mode, spec in MODES.items():
        if spec.get("model") is not None and spec["model"] not in MODEL_VARIANTS:
            raise ValueError(
                f"config: finetune.modes.{mode}.model = {spec['model']!r} is not in model_variants"
            )
        pre = spec.get("pretrained")
        if pre and PRETRAIN[pre].get("model") != spec.get("model"):
            raise ValueError(
                f"config: mode {mode} uses model {spec.get('model')!r} but its pretrained "
                f"{pre!r} uses {PRETRAIN[pre].get('model')!r}"
            )
        if spec.get("estimator") and (pre or spec.get("model")):
            raise ValueError(
                f"config: baseline mode {mode} cannot have pretrained / model"
            )
    for name, p in PRETRAIN.items():
        props = p.get("properties")
        if props and props[0] != p["property"]:
            raise ValueError(
                f"config: pretrain {name}: properties must start with property"
            )
        if p.get("model") is not None and p["model"] not in MODEL_VARIANTS:
            raise ValueError(
                f"config: pretrain {name}: model {p['model']!r} not in model_variants"
            )
    for name, t in TARGETS.items():
        unknown = set(t.get("modes") or []) - set(MODES)
        if unknown:
            raise ValueError(f"config: target {name}: unknown modes {sorted(unknown)}")
        if not GROUP_SEEDS and (t.get("modes") or t.get("sizes") or BASELINE_MODES):
            raise ValueError(
                "config: per-target modes / sizes and baseline modes need finetune.group_seeds: true"
            )
    if FT["baseline"] not in MODES:
        raise ValueError(
            f"config: finetune.baseline {FT['baseline']!r} is not one of the modes {sorted(MODES)}"
        )


_check_config()


wildcard_constraints:
    target="|".join(sorted(TARGETS)) or "NONE",
    pretrain="|".join(sorted(PRETRAIN)) or "NONE",
    split_name="[A-Za-z0-9_.-]+",
    mode="|".join(sorted(MODES)),
    size=r"\d+|all",
    seed=r"\d+",


def featurize_key():
    """Hash of the featurization parameters: names the graph cache folder."""
    params = {
        k: config["featurize"][k]
        for k in ("radius", "max_neighbors", "radius_growth", "max_radius")
    }
    blob = json.dumps({"format": 1, **params}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


GRAPHS = f"{R}/graphs/{featurize_key()}"


def isolation_graphs():
    """The graph folder under featurize.isolated: drop (split_subsets leaves out the crystals
    its isolated.csv lists), else nothing: the splits then do not wait for featurize."""
    return GRAPHS if config["featurize"]["isolated"] == "drop" else []


def ingest_input():
    src = config["dataset"].get("source", "local")
    if src == "local":
        return config["dataset"]["path"]
    return f"{R}/raw/{src}.parquet"


def split_spec(name):
    """Property / subset of a split: a finetune target or a pretrain entry."""
    return TARGETS[name] if name in TARGETS else PRETRAIN[name]


TARGET_KEYS = ("name", "property", "transform", "subset", "task")


def target_spec(name):
    """The fields of a finetune target that change its runs (not label / modes / sizes, so
    that editing those does not re-run finished cells)."""
    return {k: v for k, v in TARGETS[name].items() if k in TARGET_KEYS}


def split_key(name):
    """The fields that define a split file (property and subset)."""
    return {
        k: v for k, v in split_spec(name).items() if k in ("name", "property", "subset")
    }


def required_properties():
    props = [t["property"] for t in TARGETS.values()]
    props += [p["property"] for p in PRETRAIN.values()]
    props += [q for p in PRETRAIN.values() for q in p.get("properties") or []]
    return sorted(set(props))


def train_config(overrides=None):
    cfg = dict(config["train"])
    cfg.update(overrides or {})
    return cfg


def finetune_dir(target="{target}", size="{size}", mode="{mode}", seed="{seed}"):
    return f"{R}/finetune/{target}/n{size}/{mode}/s{seed}"


def pretrained_input(wildcards):
    pre = MODES[wildcards.mode].get("pretrained")
    return [f"{R}/pretrain/{pre}/model.pt"] if pre else []


def finetune_metrics():
    if GROUP_SEEDS:
        return cell_metrics()
    return expand(
        f"{finetune_dir()}/metrics.json",
        target=sorted(TARGETS),
        size=FT["sizes"],
        mode=sorted(MODES),
        seed=FT["seeds"],
    )


def target_sizes(target):
    return TARGETS[target].get("sizes") or FT["sizes"]


def target_modes(target):
    return TARGETS[target].get("modes") or sorted(MODES)


def seeds_for(size):
    """Seeds of a training size: finetune.seeds, or seeds_large from large_from on."""
    large = FT.get("large_from")
    if (
        large is not None
        and FT.get("seeds_large")
        and (size == "all" or int(size) >= large)
    ):
        return FT["seeds_large"]
    return FT["seeds"]


def cell_dir(target="{target}", size="{size}", mode="{mode}"):
    return f"{R}/cells/{target}/n{size}/{mode}"


def cell_metrics():
    return [
        f"{cell_dir(t, n, m)}/metrics.json"
        for t in sorted(TARGETS)
        for n in target_sizes(t)
        for m in target_modes(t)
    ]


def target_labels():
    return {t: spec.get("label", t) for t, spec in TARGETS.items()}


# figures: the registry in src/tlcgcnn/figures answers; these map the {figure} wildcard
from tlcgcnn import figures as figure_registry  # noqa: E402

FIGURE_STEMS = figure_registry.stem_pattern(config)


def figure_files():
    """PNG and PDF of every figure the config requests (figure_registry.requested says
    which: a figure only where the config has what it needs)."""
    return [
        f"{R}/figures/{s}.{ext}"
        for s in figure_registry.requested(config)
        for ext in ("png", "pdf")
    ]


def figure_inputs(wildcards):
    """Input name -> file of the figure named by the wildcard."""
    return figure_registry.input_paths(wildcards.figure, R)


def figure_category(wildcards):
    return figure_registry.category(wildcards.figure)


def figure_subcategory(wildcards):
    """The target of a per-target figure; None (no subcategory) for the others."""
    return figure_registry.subcategory(wildcards.figure)


def figure_caption(wildcards):
    """Caption text of the figure (report/<caption>.rst), shown via report/figure.rst."""
    return figure_registry.caption(wildcards.figure, f"{workflow.basedir}/report")


def paper_targets():
    """The summary tables of the papers' study (configs with finetune.group_seeds: true)."""
    tables = [
        f"{R}/stats/{n}.csv"
        for n in (
            "best_transfer",
            "improvement",
            "spearman",
            "classification",
            "models",
            "pretrain",
        )
    ]
    return tables + [f"{R}/stats/ef_eg_correlation.json"]


def all_targets():
    common = [
        *figure_files(),
        f"{R}/stats/ttests.csv",
        *expand(f"{R}/pretrain/{{p}}/metrics.json", p=sorted(PRETRAIN)),
    ]
    return common + paper_targets() if GROUP_SEEDS else common


# --------------------------------------------------------------------------- execution
# (see docs/slurm.md) Workstation: `--cores N` and optionally --workflow-profile profiles/local.
# Cluster: --executor slurm --workflow-profile profiles/slurm, which sets partitions, GPUs,
# memory and run times per rule; the rules below only declare what holds everywhere.
GPUS_PER_TRAIN_JOB = config["resources"]["gpus_per_train_job"]


def data_threads():
    """Threads of the parallel data-preparation rules (ingest, featurize): every core
    given with --cores N. Cluster executors give no core count; there the rules get
    config resources.cluster_data_threads (profiles/slurm may raise it with set-threads).
    """
    try:
        return workflow.cores
    except WorkflowError:
        return config["resources"]["cluster_data_threads"]


def _check_profile_env():
    """profiles/slurm reads partitions and account from TLCGCNN_SLURM_* environment
    variables. An unset one would reach sbatch as a literal '$TLCGCNN_...' string and fail
    late and obscurely, so stop here with the fix in the message."""
    rs = workflow.resource_settings
    raws = [getattr(v, "raw", v) for v in (rs.default_resources or {}).values()]
    for overrides in (rs.overwrite_resources or {}).values():
        raws += [getattr(v, "raw", v) for v in overrides.values()]
    names = {
        m
        for raw in raws
        if isinstance(raw, str)
        for m in re.findall(r"\$\{?(TLCGCNN_[A-Za-z0-9_]+)", raw)
    }
    missing = sorted(n for n in names if n not in os.environ)
    if missing:
        raise WorkflowError(
            f"the workflow profile reads {', '.join(missing)} from the environment, but "
            f"{'it is' if len(missing) == 1 else 'they are'} not set. Export before running, e.g.\n"
            "  export TLCGCNN_SLURM_PARTITION=<cpu-partition>   # sinfo lists partitions\n"
            "  export TLCGCNN_SLURM_GPU_PARTITION=<gpu-partition>\n"
            "  export TLCGCNN_SLURM_ACCOUNT=<account>   # or empty: SLURM's default account\n"
            "See docs/slurm.md."
        )


_check_profile_env()
