"""Snakemake adapter: pretrain or fine-tune one model (tlcgcnn.train)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.runtime import log_to  # noqa: E402
from tlcgcnn.train import exclude_ids, run_training  # noqa: E402

log_to(snakemake.log[0])  # noqa: F821
run_training(
    stage=snakemake.params.stage,  # noqa: F821
    table_path=snakemake.input.table,  # noqa: F821
    split_path=snakemake.input.split,  # noqa: F821
    graph_dir=snakemake.input.graphs,  # noqa: F821
    atom_features_path=snakemake.input.atom_features,  # noqa: F821
    pretrained=list(snakemake.input.get("pretrained", [])),  # noqa: F821
    spec=snakemake.params.spec,  # noqa: F821
    size=snakemake.params.size,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    mode=snakemake.params.get("mode"),  # noqa: F821
    split_cfg=snakemake.params.split,  # noqa: F821
    model_cfg=snakemake.params.model,  # noqa: F821
    train_cfg=snakemake.params.train,  # noqa: F821
    transfer=snakemake.params.transfer,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    config=snakemake.config,  # noqa: F821
    out_checkpoint=snakemake.output[0],  # noqa: F821
    exclude_ids=exclude_ids(snakemake.input.get("target_splits", [])),  # noqa: F821
)
