"""Snakemake adapter: train and evaluate every seed of one (target, size, mode) cell (tlcgcnn.cells)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.cells import run_gnn_cell  # noqa: E402
from tlcgcnn.runtime import log_to  # noqa: E402

log_to(snakemake.log[0])  # noqa: F821
run_gnn_cell(
    table_path=snakemake.input.table,  # noqa: F821
    split_path=snakemake.input.split,  # noqa: F821
    graph_dir=snakemake.input.graphs,  # noqa: F821
    atom_features_path=snakemake.input.atom_features,  # noqa: F821
    pretrained=list(snakemake.input.get("pretrained", [])),  # noqa: F821
    spec=snakemake.params.spec,  # noqa: F821
    size=snakemake.params.size,  # noqa: F821
    seeds=list(snakemake.params.seeds),  # noqa: F821
    mode=snakemake.wildcards.mode,  # noqa: F821
    mode_spec=snakemake.params.mode_spec,  # noqa: F821
    pretrain_spec=snakemake.params.pretrain_spec,  # noqa: F821
    split_cfg=snakemake.params.split,  # noqa: F821
    model_cfg=snakemake.params.model,  # noqa: F821
    train_cfg=snakemake.params.train,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    config=snakemake.config,  # noqa: F821
    runs_dir=snakemake.output.runs,  # noqa: F821
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
)
