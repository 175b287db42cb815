"""Where a run's results live: one :class:`Layout` for the rules (``rules/*.smk``), the CLI
(:mod:`tlcgcnn.cli.runner`), the Python API (:mod:`tlcgcnn.api`), the progress report
(:mod:`tlcgcnn.report.progress`), the model zoo and the config's ``embedded_input``.

A run named ``<name>`` writes below ``results/<name>/`` (:meth:`Layout.for_config`)::

    raw/<source>.parquet                      downloaded table (and .manifest.json, .work/)
    data/structures.parquet                   the ingested table (dropped.csv, ingest_summary.json,
                                              descriptors.parquet beside it)
    splits/subsets.json                       subset membership of every crystal
    splits/<split>.split.json                 one split per target or pretraining source
    graphs/<key>/                             the graph cache of one set of featurization parameters
    pretrain/<source>/                        model.pt, metrics.json, predictions.parquet
    backbones/<backbone>/                     a universal potential's crystal vectors of the table:
                                              embeddings.parquet, embeddings.json, cache.parquet
    finetune/<target>/n<size>/<mode>/         one cell: metrics.json, predictions.parquet and
                                              runs/s<seed>/ (model.pt, metrics.json, ...) per seed
    external/<set>/                           an outside set: its own data/ and graphs/, overlap.parquet,
                                              <target>/metrics.json and predictions.parquet
    stats/<table>                             statistics tables
    figures/<stem>.<ext>                      figures
    logs/...  benchmarks/...                  each job's log and timing (a cell's and a source's
                                              mirror their folders: logs/finetune/<target>/n<size>/<mode>.log)

Every method takes plain strings, so Snakemake wildcards work as arguments: ``cell_metrics(
"{target}", "{size}", "{mode}")`` is the finetune rules' output pattern. Methods return
:class:`pathlib.Path`; Snakemake takes them as inputs and outputs as they are (``str()`` gives
the same string the rules always wrote, so finished runs stay valid).

Imports nothing of the package (the workflow parses it before anything else)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: the folder below a working directory that holds one results folder per run name
RESULTS = "results"
#: a cell's seed folders, below it: runs/s<seed>/
RUNS = "runs"
_SEED = re.compile(r"^s(\d+)$")


def cell_runs(cell: Path | str) -> Path:
    """The folder of a fine-tuning cell's seed folders (``<cell>/runs``): kept outside the
    rule's declared outputs, so a killed cell started again reuses its finished seeds."""
    return Path(cell) / RUNS


def cell_seed(cell: Path | str, seed: int | str) -> Path:
    """One seed's folder of a fine-tuning cell (``<cell>/runs/s<seed>``): its ``model.pt``,
    ``metrics.json``, predictions and training state."""
    return cell_runs(cell) / f"s{seed}"


def seed_number(folder_name: str) -> int | None:
    """The seed a folder below ``runs/`` is named for (``s3`` → 3), None for any other name."""
    m = _SEED.match(folder_name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class Layout:
    """The paths below one run's results folder ``root`` (normally ``results/<name>``; the
    progress report and the CLI take any folder)."""

    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def for_config(cls, name: str, workdir: Path | str | None = None) -> Layout:
        """The results folder of the run named ``name``: ``results/<name>`` (below ``workdir``
        where given: Snakemake's working directory; relative to it otherwise)."""
        return cls(Path(RESULTS, name) if workdir is None else Path(workdir, RESULTS, name))

    # ------------------------------------------------------------------ data
    def raw(self, source: str) -> Path:
        """A download's table (``raw/<source>.parquet``; rules/download.smk)."""
        return self.root / "raw" / f"{source}.parquet"

    def raw_manifest(self, source: str) -> Path:
        """A download's manifest (what was fetched, when, from which release)."""
        return self.root / "raw" / f"{source}.manifest.json"

    def raw_work(self, source: str) -> Path:
        """A download's partial files, resumed by a re-run (``raw/<source>.work``)."""
        return self.root / "raw" / f"{source}.work"

    def table(self) -> Path:
        """The ingested structure table every later step reads (``data/structures.parquet``)."""
        return self.root / "data" / "structures.parquet"

    def dropped(self) -> Path:
        """The crystals ingest dropped, with the reason (``data/dropped.csv``)."""
        return self.root / "data" / "dropped.csv"

    def ingest_summary(self) -> Path:
        """Ingest's counts and settings (``data/ingest_summary.json``)."""
        return self.root / "data" / "ingest_summary.json"

    def descriptors(self) -> Path:
        """Composition and structure descriptors of every crystal, the baselines' features
        (``data/descriptors.parquet``)."""
        return self.root / "data" / "descriptors.parquet"

    def subsets(self) -> Path:
        """Subset membership of every crystal (``splits/subsets.json``)."""
        return self.root / "splits" / "subsets.json"

    def split(self, name: str) -> Path:
        """The train/validation/test split of a target or pretraining source
        (``splits/<name>.split.json``)."""
        return self.root / "splits" / f"{name}.split.json"

    def graphs(self, key: str) -> Path:
        """The graph cache of one set of featurization parameters (``graphs/<key>/``; the key
        is :meth:`tlcgcnn.config.Config.graph_key`)."""
        return self.root / "graphs" / key

    # ------------------------------------------------------------------ pretraining
    def pretrain_dir(self, source: str) -> Path:
        """A pretraining source's folder (``pretrain/<source>/``)."""
        return self.root / "pretrain" / source

    def pretrain_model(self, source: str) -> Path:
        """A pretrained source model, the start of its transfer modes (``model.pt``)."""
        return self.pretrain_dir(source) / "model.pt"

    def pretrain_metrics(self, source: str) -> Path:
        """A source model's test metrics (``metrics.json``)."""
        return self.pretrain_dir(source) / "metrics.json"

    def pretrain_predictions(self, source: str) -> Path:
        """A source model's test predictions (``predictions.parquet``)."""
        return self.pretrain_dir(source) / "predictions.parquet"

    # ------------------------------------------------------------------ backbones
    def backbone_dir(self, backbone: str) -> Path:
        """A backbone source's folder (``backbones/<backbone>/``, e.g. ``chgnet-0.3.0``)."""
        return self.root / "backbones" / backbone

    def backbone_atom_cache(self, backbone: str) -> Path:
        """The backbone's per-atom features computed for the run's read-out cells
        (``atoms_cache.parquet``; not an output: kept across runs)."""
        return self.backbone_dir(backbone) / "atoms_cache.parquet"

    def backbone_embeddings(self, backbone: str) -> Path:
        """The backbone's crystal vector of every crystal of the table (``embeddings.parquet``:
        material_id, f0, f1, ...; rules/backbones.smk)."""
        return self.backbone_dir(backbone) / "embeddings.parquet"

    def backbone_info(self, backbone: str) -> Path:
        """What the embedding job did (``embeddings.json``: backbone, package version, licence,
        counts, device, seconds)."""
        return self.backbone_dir(backbone) / "embeddings.json"

    def backbone_cache(self, backbone: str) -> Path:
        """Vectors computed before, keyed by (structure hash, backbone, package version)
        (``cache.parquet``): not a rule output, so a re-run keeps it and embeds new crystals only."""
        return self.backbone_dir(backbone) / "cache.parquet"

    # ------------------------------------------------------------------ fine-tuning cells
    def cell_dir(self, target: str, size: int | str, mode: str) -> Path:
        """A fine-tuning cell's folder (``finetune/<target>/n<size>/<mode>/``): its
        ``metrics.json`` and ``predictions.parquet`` and the seeds' ``runs/``."""
        return self.root / "finetune" / target / f"n{size}" / mode

    def cell_metrics(self, target: str, size: int | str, mode: str) -> Path:
        """A cell's test metrics, one record per seed; written last, so it marks a finished cell."""
        return self.cell_dir(target, size, mode) / "metrics.json"

    def cell_predictions(self, target: str, size: int | str, mode: str) -> Path:
        """A cell's test predictions, every seed's."""
        return self.cell_dir(target, size, mode) / "predictions.parquet"

    def seed_dir(self, target: str, size: int | str, mode: str, seed: int | str) -> Path:
        """One seed's folder of a cell (``runs/s<seed>/``, :func:`cell_seed`)."""
        return cell_seed(self.cell_dir(target, size, mode), seed)

    def seed_model(self, target: str, size: int | str, mode: str, seed: int | str) -> Path:
        """One seed's fine-tuned model (``runs/s<seed>/model.pt``)."""
        return self.seed_dir(target, size, mode, seed) / "model.pt"

    def seed_metrics(self, target: str, size: int | str, mode: str, seed: int | str) -> Path:
        """One seed's test metrics (``runs/s<seed>/metrics.json``): a finished seed."""
        return self.seed_dir(target, size, mode, seed) / "metrics.json"

    def cell_log(self, target: str, size: int | str, mode: str) -> Path:
        """A cell job's log (``logs/finetune/<target>/n<size>/<mode>.log``)."""
        return self.logs("finetune", target, f"n{size}", f"{mode}.log")

    def cell_benchmark(self, target: str, size: int | str, mode: str) -> Path:
        """A cell job's timing (``benchmarks/finetune/<target>/n<size>/<mode>.tsv``)."""
        return self.benchmarks("finetune", target, f"n{size}", f"{mode}.tsv")

    # ------------------------------------------------------------------ outside sets
    def external(self, name: str) -> Layout:
        """An outside labelled set's folder (``external/<name>/``), laid out like a run's:
        its own :meth:`table` and :meth:`graphs`."""
        return Layout(self.root / "external" / name)

    def external_overlap(self, name: str) -> Path:
        """The outside set's crystals that also occur in the run's table (``overlap.parquet``)."""
        return self.external(name).root / "overlap.parquet"

    def external_eval(self, name: str, target: str) -> Path:
        """A target's fine-tuned models evaluated on the outside set (``external/<name>/<target>/``:
        ``metrics.json``, ``predictions.parquet``)."""
        return self.external(name).root / target

    # ------------------------------------------------------------------ statistics, figures, logs
    def stats_dir(self) -> Path:
        """The statistics tables' folder (``stats/``)."""
        return self.root / "stats"

    def stats(self, name: str) -> Path:
        """One statistics file (``stats/<name>``, e.g. ``ttests.csv``)."""
        return self.stats_dir() / name

    def figures_dir(self) -> Path:
        """The figures' folder (``figures/``)."""
        return self.root / "figures"

    def figure(self, stem: str, ext: str = "png") -> Path:
        """One figure (``figures/<stem>.<ext>``)."""
        return self.figures_dir() / f"{stem}.{ext}"

    def logs(self, *parts: str) -> Path:
        """The jobs' logs (``logs/``), or one below it."""
        return self.root.joinpath("logs", *parts)

    def benchmarks(self, *parts: str) -> Path:
        """The jobs' timings (``benchmarks/``, Snakemake's benchmark files), or one below it."""
        return self.root.joinpath("benchmarks", *parts)
