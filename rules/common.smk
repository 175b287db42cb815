import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Every decision about the configuration is made by tlcgcnn.config (validation, defaults,
# the resolved runs); the helpers below only map wildcards to its answers. The raw `config`
# is read once, by _load_config: the package functions below get the typed CFG.
SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from tlcgcnn.data import inputs as tlinputs  # noqa: E402
from tlcgcnn.utils import fileio as tlio  # noqa: E402
from tlcgcnn.utils.layout import Layout  # noqa: E402
from tlcgcnn.config import load as _load_config  # noqa: E402

try:
    CFG = _load_config(config, Path(workflow.basedir) / "config" / "schema")
except ValueError as err:
    raise WorkflowError(str(err)) from None

# every path below results/<name>/ comes from the Layout (tlcgcnn.utils.layout); R is its root
L = Layout.for_config(CFG.name)
R = str(L.root)
TARGETS = CFG.target_names
# a `checkpoint:` or `backbone:` source has no pretraining job
PRETRAIN = CFG.trained_pretrain_names
BACKBONES = CFG.backbone_names  # each embeds the table once (rules/backbones.smk)
EXTERNAL = CFG.external_names
GROUP_SEEDS = CFG.group_seeds
GRAPHS = str(L.graphs(CFG.graph_key()))
# the atom feature table: a user's (featurize.atom_features) or the one shipped in the package
ATOM_FEATURES = (
    CFG.featurize.atom_features or f"{SRC}/tlcgcnn/features/atom_features.csv"
)
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
    external="|".join(EXTERNAL) or "NONE",
    backbone="|".join(re.escape(b) for b in BACKBONES) or "NONE",


GNN_MODES = "|".join(CFG.gnn_modes) or "NONE"
BASELINE_MODES = "|".join(CFG.baseline_modes) or "NONE"
FROZEN_MODES = "|".join(CFG.frozen_modes) or "NONE"
READOUT_MODES = "|".join(CFG.readout_modes) or "NONE"


# the backbones each embedding rule serves, by the package that holds their weights (one env each)
def _backbones_of(package):
    from tlcgcnn.features import backbones

    names = [b for b in BACKBONES if backbones.get(b).package == package]
    return "|".join(re.escape(b) for b in names) or "NONE"


CHGNET_BACKBONES = _backbones_of("chgnet")
SEVENN_BACKBONES = _backbones_of("sevenn")


def isolation_graphs():
    """The graph folder under featurize.isolated: drop (split_subsets leaves out the crystals
    its isolated.csv lists), else nothing: the splits then do not wait for featurize."""
    return GRAPHS if CFG.featurize.isolated == "drop" else []


def test_ids_input():
    """The split.test_ids file (the fixed test materials), when the config names one."""
    return CFG.split.test_ids or []


def ingest_input():
    """The dataset: a file or a folder (and a folder's labels file). A local input is
    compared by content (ingest's data_sha256 param), not by mtime: a shared, read-only copy
    that is mounted again with a new mtime must not make every finished job of a long run
    stale."""
    src = CFG.dataset.source
    if src != "local":
        return str(L.raw(src))
    files = [CFG.dataset.path, *([CFG.dataset.labels] if CFG.dataset.labels else [])]
    return [ancient(f) for f in files]


def local_data_sha256():
    """sha256 of the local dataset: a file's bytes, or a folder's sorted file names and
    contents (tlcgcnn.data.inputs.input_sha256); None for a download, whose file Snakemake made,
    or an input that does not exist (the ingest job then says so)."""
    if CFG.dataset.source != "local" or not os.path.exists(CFG.dataset.path):
        return None
    digests = [tlinputs.input_sha256(CFG.dataset.path)]
    if CFG.dataset.labels and os.path.isfile(CFG.dataset.labels):
        digests.append(tlio.sha256_file(CFG.dataset.labels))
    return ",".join(digests)


# a fine-tuning cell's wildcards, in the Layout's argument order: L.cell_metrics(*CELL)
CELL = ("{target}", "{size}", "{mode}")


def finetune_metrics():
    return [
        str(L.cell_metrics(c.target.name, c.size, c.mode.name)) for c in CFG.cells()
    ]


def target_splits():
    """Split files of the targets whose test sets pretraining leaves out: those with a mode
    that starts from a pretrained source (a target of scratch and descriptor-baseline modes
    only cannot leak a test material through a source, and adding one does not make every
    pretraining job stale)."""
    return [str(L.split(t)) for t in CFG.transfer_target_names]


def pretrain_metrics():
    """Test metrics of every trained pretraining source, sorted by name."""
    return [str(L.pretrain_metrics(p)) for p in sorted(PRETRAIN)]


# --------------------------------------------------------------------------- wildcards -> config
def pretrain_params(wildcards):
    return CFG.pretrain_source(wildcards.pretrain).as_params()


def cell_params(wildcards):
    return CFG.cell(wildcards.target, wildcards.size, wildcards.mode).as_params()


def pretrained_input(wildcards):
    """The source model of a transfer mode: the pretraining job's, or a `checkpoint:` file."""
    source = CFG.modes[wildcards.mode].pretrained
    if not source:
        return []
    return [CFG.pretrained_checkpoint(source) or str(L.pretrain_model(source))]


def source_checkpoint(wildcards):
    """The one source model a frozen-features mode embeds with (rules/frozen.smk)."""
    return pretrained_input(wildcards)[0]


def frozen_source_inputs(wildcards):
    """What a frozen-features cell embeds with (rules/frozen.smk): its source's checkpoint
    and the graph cache, or for a `backbone:` source the backbone's embeddings of the table
    and their info (rules/backbones.smk)."""
    backbone = CFG.pretrained_backbone(CFG.modes[wildcards.mode].pretrained)
    if backbone:
        return {
            "embeddings": str(L.backbone_embeddings(backbone)),
            "embeddings_info": str(L.backbone_info(backbone)),
        }
    return {"graphs": GRAPHS, "pretrained": source_checkpoint(wildcards)}


def frozen_gpus(wildcards):
    """GPUs of a frozen-features cell: none where it reads a backbone's embeddings (no
    network runs in it), else those of a training job."""
    backbone = CFG.pretrained_backbone(CFG.modes[wildcards.mode].pretrained)
    return 0 if backbone else GPUS_PER_TRAIN_JOB


def backbone_spec(wildcards):
    """The backbone's package, pinned version and weights (a param: pinning another version
    makes the embedding job run again; its cache keeps vectors per package version)."""
    from tlcgcnn.features import backbones

    return backbones.get(wildcards.backbone).as_dict()


def readout_atom_cache(wildcards):
    """The per-atom features cache of the backbone a read-out mode fine-tunes (shared by the
    run's read-out cells; not an output: a re-run keeps it)."""
    backbone = CFG.pretrained_backbone(CFG.modes[wildcards.mode].pretrained)
    return str(L.backbone_atom_cache(backbone))


def backbone_cache(wildcards):
    """The backbone's cache of vectors computed before (not an output: a re-run keeps it)."""
    return str(L.backbone_cache(wildcards.backbone))


def external_path(wildcards):
    return CFG.external_set(wildcards.external).path


def external_dataset(wildcards):
    return CFG.external_ingest_settings(wildcards.external)


def external_required(wildcards):
    return [CFG.external_set(wildcards.external).property]


def external_cell_metrics(wildcards):
    """metrics.json of every graph-model cell of the target (they name the seed models)."""
    return [
        str(L.cell_metrics(c.target.name, c.size, c.mode.name))
        for c in CFG.external_cells(wildcards.target)
    ]


def external_files(name):
    """One file per (external set, target) evaluation: metrics.json or predictions.parquet."""
    return [str(L.external_eval(e, t) / name) for e, t in CFG.external_pairs()]


def split_spec(wildcards):
    return CFG.split_spec(wildcards.split_name)


def target_labels():
    return CFG.target_labels()


# published models (rules/zoo.smk): config.zoo_model answers
def zoo_folders():
    """The folders of the published models (rules/zoo.smk); none without zoo.models."""
    return [f"{CFG.zoo.dir}/{n}" for n in CFG.zoo_names]


def zoo_candidates(name):
    """Result folder of each candidate of a published model: the source, or each mode."""
    m = CFG.zoo_model(name)
    if m["kind"] == "pretrain":
        return {m["pretrain"]: str(L.pretrain_dir(m["pretrain"]))}
    return {mode: str(L.cell_dir(m["target"], m["size"], mode)) for mode in m["modes"]}


def zoo_inputs(wildcards):
    c = zoo_candidates(wildcards.zoo_model)
    return {
        "summary": str(L.ingest_summary()),
        "metrics": [f"{d}/metrics.json" for d in c.values()],
        "predictions": [f"{d}/predictions.parquet" for d in c.values()],
    }


def zoo_label(m):
    return CFG.target_label(m["target"]) if m["kind"] == "finetune" else m["pretrain"]


def zoo_params(wildcards):
    c = zoo_candidates(wildcards.zoo_model)
    m = CFG.zoo_model(wildcards.zoo_model)
    return {
        "model": m,
        "metrics": {k: f"{d}/metrics.json" for k, d in c.items()},
        "predictions": {k: f"{d}/predictions.parquet" for k, d in c.items()},
        "label": zoo_label(m),
        "config_name": CFG.name,
    }


# MT-CGCNN's multi-task vs single-task comparison (tlcgcnn.analysis.multitask): the pairs of trained
# pretraining sources that share a split; stats/multitask.csv only where the config has some
from tlcgcnn.analysis.multitask import source_pairs as _source_pairs  # noqa: E402

MT_PAIRS = _source_pairs(CFG)


def multitask_pairs():
    """The pairs as plain dicts (the rule's params)."""
    return [p.as_dict() for p in MT_PAIRS]


def multitask_sources():
    """Every source of a pair, sorted: the order of multitask_predictions()."""
    return sorted({s for p in MT_PAIRS for s in (p.mt_source, p.st_source)})


def multitask_predictions():
    return [str(L.pretrain_predictions(s)) for s in multitask_sources()]


def multitask_files():
    """stats/multitask.csv where the config pairs sources, else nothing."""
    return [str(L.stats("multitask.csv"))] if MT_PAIRS else []


# figures: the registry in src/tlcgcnn/figures answers; these map the {figure} wildcard
from tlcgcnn.report import figures as figure_registry  # noqa: E402


# MT-CGCNN's ROC curves (tlcgcnn.analysis.roc): stats/roc.csv only where the config has a
# classification target
def roc_cells():
    """Target, size and mode of every cell of a classification target (the rule's params,
    in the order of roc_predictions())."""
    return [
        {"target": c.target.name, "size": c.size, "mode": c.mode.name}
        for c in CFG.cells()
        if c.target.task == "classification"
    ]


def roc_predictions():
    return [
        str(L.cell_predictions(c["target"], c["size"], c["mode"])) for c in roc_cells()
    ]


def roc_files():
    """stats/roc.csv where the config has a classification target, else nothing."""
    has = figure_registry.needs.has_classification(CFG)
    return [str(L.stats("roc.csv"))] if has else []


FIGURE_STEMS = figure_registry.stem_pattern(CFG)


def figure_files():
    """PNG and PDF of every figure the config requests (figure_registry.requested says
    which: a figure only where the config has what it needs)."""
    return [
        str(L.figure(s, ext))
        for s in figure_registry.requested(CFG)
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


PAPER_TABLES = (
    "best_transfer",
    "improvement",
    "spearman",
    "classification",
    "models",
    "pretrain",
)


def paper_targets():
    """The summary tables of the papers' study (configs with finetune.group_seeds: true)."""
    tables = [str(L.stats(f"{n}.csv")) for n in PAPER_TABLES]
    return tables + [str(L.stats("ef_eg_correlation.json"))]


# published results (rules/report.smk): <report.dir>/<name>/, built only when asked for
PUB = f"{CFG.report.dir}/{CFG.name}"


def stats_tables():
    """Stem of every stats/*.csv table the config produces (the report publishes them)."""
    names = ["metrics", "ttests", "protocol", *(["external"] if EXTERNAL else [])]
    names = names + list(PAPER_TABLES) if GROUP_SEEDS else names
    names = names + (["multitask"] if MT_PAIRS else [])
    return names + [Path(f).stem for f in roc_files()]


def correlation_files():
    """stats/ef_eg_correlation.json (the ΔEf–Eg Pearson r) where the config makes it."""
    return [str(L.stats("ef_eg_correlation.json"))] if GROUP_SEEDS else []


def published_files():
    """Tables and figures of the published folder, each a copy of the run's file."""
    tables = [f"{PUB}/tables/{t}.csv" for t in stats_tables()]
    tables += [f"{PUB}/tables/{Path(f).name}" for f in correlation_files()]
    figures = [f"{PUB}/figures/{s}.png" for s in figure_registry.requested(CFG)]
    return {"tables": tables, "figures": figures}


def published_source(wildcards):
    """The run's file a published table or figure copies."""
    kind, name = wildcards.published.split("/", 1)
    return str(L.stats(name) if kind == "tables" else L.figures_dir() / name)


def report_params():
    """Plain values for tlcgcnn.report.publish.publish (see its docstring)."""
    stems = figure_registry.requested(CFG)
    return {
        "config": CFG.as_dict(),
        "config_sha256": CFG.sha256(),
        "configfiles": [os.path.relpath(f) for f in workflow.configfiles],
        "baseline": CFG.baseline,
        "baseline_modes": CFG.baseline_modes,
        "frozen_modes": CFG.frozen_modes,
        "readout_modes": CFG.readout_modes,
        "claims": CFG.claims(),
        "labels": CFG.target_labels(),
        "captions": {
            s: figure_registry.caption(s, f"{workflow.basedir}/report") for s in stems
        },
        "results": R,
        "repo": str(workflow.basedir),
        "report_dir": CFG.report.dir,
    }


def all_targets():
    common = [
        *figure_files(),
        str(L.stats("ttests.csv")),
        *pretrain_metrics(),
        *([str(L.stats("external.csv"))] if EXTERNAL else []),
        *multitask_files(),
        *roc_files(),
        *zoo_folders(),
    ]
    return common + paper_targets() if GROUP_SEEDS else common


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
