"""Snakemake adapter: every seed of one baseline cell (tlcgcnn.train.finetune.baseline_cell; a
scikit-learn model on composition descriptors; torch-free)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.config import Cell  # noqa: E402
from tlcgcnn.train.finetune import baseline_cell  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
inp, params = snakemake.input, snakemake.params  # noqa: F821
baseline_cell(
    cell=Cell.from_params(params.cell),  # the typed cell from here down
    table_path=inp.table,
    split_path=inp.split,
    split_cfg=params.split,
    threads=snakemake.threads,  # noqa: F821
    descriptors_path=inp.descriptors,
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
