"""Snakemake adapter: every seed of one frozen-features cell (tlcgcnn.train.frozen.frozen_cell: the
pretrained source's crystal vectors fed to a scikit-learn estimator). Its inputs name either a
checkpoint and the graph cache, or a backbone's embeddings and their info (rules/frozen.smk)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.config import Cell, resolve  # noqa: E402
from tlcgcnn.train.frozen import frozen_cell  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
inp, params = snakemake.input, snakemake.params  # noqa: F821
frozen_cell(
    cell=Cell.from_params(params.cell),  # the typed cell from here down
    table_path=inp.table,
    split_path=inp.split,
    graph_dir=inp.get("graphs"),
    pretrained=inp.get("pretrained"),
    embeddings=inp.get("embeddings"),
    embeddings_info=inp.get("embeddings_info"),
    split_cfg=params.split,
    threads=snakemake.threads,  # noqa: F821
    config=resolve(snakemake.config).as_dict(),  # noqa: F821  (hashed for provenance)
    device=params.device,
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
