"""Snakemake adapter: train one pretraining source (tlcgcnn.train.pretrain)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.config import PretrainSource, resolve  # noqa: E402
from tlcgcnn.train.pretrain import pretrain  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
pretrain(
    source=PretrainSource.from_params(snakemake.params.source),  # noqa: F821
    table_path=snakemake.input.table,  # noqa: F821
    split_path=snakemake.input.split,  # noqa: F821
    graph_dir=snakemake.input.graphs,  # noqa: F821
    atom_features_path=snakemake.input.atom_features,  # noqa: F821
    target_splits=list(snakemake.input.target_splits),  # noqa: F821
    split_cfg=snakemake.params.split,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    config=resolve(snakemake.config).as_dict(),  # noqa: F821  (hashed for provenance)
    out_checkpoint=snakemake.output[0],  # noqa: F821
)
