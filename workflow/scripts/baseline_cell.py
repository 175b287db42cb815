"""Snakemake adapter: fit one scikit-learn baseline for every seed of a cell (tlcgcnn.cells)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.cells import run_baseline_cell  # noqa: E402
from tlcgcnn.runtime import log_to  # noqa: E402

log_to(snakemake.log[0])  # noqa: F821
run_baseline_cell(
    table_path=snakemake.input.table,  # noqa: F821
    descriptors_path=snakemake.input.descriptors,  # noqa: F821
    split_path=snakemake.input.split,  # noqa: F821
    spec=snakemake.params.spec,  # noqa: F821
    size=snakemake.params.size,  # noqa: F821
    seeds=list(snakemake.params.seeds),  # noqa: F821
    mode=snakemake.wildcards.mode,  # noqa: F821
    mode_spec=snakemake.params.mode_spec,  # noqa: F821
    split_cfg=snakemake.params.split,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
