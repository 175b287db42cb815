import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Every decision about the configuration is made by tlcgcnn.config (validation, defaults,
# the resolved runs); the helpers below only map wildcards to its answers.
SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from tlcgcnn.config import load as _load_config  # noqa: E402

try:
    CFG = _load_config(config, Path(workflow.basedir) / "config" / "schema")
except ValueError as err:
    raise WorkflowError(str(err)) from None

R = f"results/{CFG.name}"
TARGETS = CFG.target_names
PRETRAIN = CFG.pretrain_names
GROUP_SEEDS = CFG.group_seeds
GRAPHS = f"{R}/graphs/{CFG.graph_key()}"
ATOM_FEATURES = CFG.featurize.atom_features
TRAIN_THREADS = CFG.train.threads
DEVICE = CFG.train.device
SPLIT = CFG.split_settings()
FEATURIZE = CFG.featurize_settings()


wildcard_constraints:
    target="|".join(TARGETS) or "NONE",
    pretrain="|".join(PRETRAIN) or "NONE",
    split_name="|".join(CFG.split_names()) or "NONE",
    mode="|".join(sorted(CFG.modes)),
    size=r"\d+|all",


GNN_MODES = "|".join(CFG.gnn_modes) or "NONE"
BASELINE_MODES = "|".join(CFG.baseline_modes) or "NONE"


def ingest_input():
    src = CFG.dataset.source
    return CFG.dataset.path if src == "local" else f"{R}/raw/{src}.parquet"


def finetune_dir(target="{target}", size="{size}", mode="{mode}"):
    return f"{R}/finetune/{target}/n{size}/{mode}"


def finetune_metrics():
    return [
        f"{finetune_dir(c.target.name, c.size, c.mode.name)}/metrics.json"
        for c in CFG.cells()
    ]


def target_splits():
    return [f"{R}/splits/{t}.split.json" for t in TARGETS]


# --------------------------------------------------------------------------- wildcards -> config
def pretrain_params(wildcards):
    return CFG.pretrain_source(wildcards.pretrain).as_params()


def cell_params(wildcards):
    return CFG.cell(wildcards.target, wildcards.size, wildcards.mode).as_params()


def pretrained_input(wildcards):
    source = CFG.modes[wildcards.mode].pretrained
    return [f"{R}/pretrain/{source}/model.pt"] if source else []


def split_spec(wildcards):
    return CFG.split_spec(wildcards.split_name)


def target_labels():
    return CFG.target_labels()


FIGURES = [
    "ef_eg_density",
    "subset_scaling",
    "improvement",
    "freeze_heatmap",
    "multitask",
    "pretrain_size",
    "models",
]


def paper_targets():
    """Everything of the papers' study (configs with finetune.group_seeds: true)."""
    figs = [f"{R}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    figs += expand(
        f"{R}/figures/learning_curve_{{t}}.{{ext}}",
        t=sorted(TARGETS),
        ext=("png", "pdf"),
    )
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
    return figs + tables + [f"{R}/stats/ef_eg_correlation.json"]


def all_targets():
    if GROUP_SEEDS:
        return [
            f"{R}/figures/learning_curve.png",
            f"{R}/figures/learning_curve.pdf",
            f"{R}/stats/ttests.csv",
            *expand(f"{R}/pretrain/{{p}}/metrics.json", p=sorted(PRETRAIN)),
            *paper_targets(),
        ]
    return [
        f"{R}/figures/learning_curve.png",
        f"{R}/figures/learning_curve.pdf",
        f"{R}/stats/ttests.csv",
        *expand(f"{R}/pretrain/{{p}}/metrics.json", p=sorted(PRETRAIN)),
    ]


# --------------------------------------------------------------------------- execution
# (see docs/slurm.md) Workstation: `--cores N` and optionally --workflow-profile profiles/local.
# Cluster: --executor slurm --workflow-profile profiles/slurm, which sets partitions, GPUs,
# memory and run times per rule; the rules below only declare what holds everywhere.
GPUS_PER_TRAIN_JOB = CFG.resources.gpus_per_train_job


def data_threads():
    """Threads of the parallel data-preparation rules (ingest, featurize): every core
    given with --cores N (workflow.cores, documented for this use). Cluster executors give
    no core count; there the rules get config resources.cluster_data_threads."""
    try:
        return workflow.cores
    except WorkflowError:
        return CFG.resources.cluster_data_threads


def _check_profile_env():
    """profiles/slurm reads partitions and account from TLCGCNN_SLURM_* environment
    variables. An unset one would reach sbatch as a literal '$TLCGCNN_...' string and fail
    late and obscurely, so stop here with the fix in the message. (Snakemake has no public
    API for the active profile's resources: this reads workflow.resource_settings.)"""
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
