"""Snakemake adapter: test-set metrics and predictions of a pretraining source (tlcgcnn.analysis.evaluate)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

import pandas as pd  # noqa: E402

from tlcgcnn.analysis.evaluate import evaluate  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
evaluate(
    snakemake.input.model,  # noqa: F821
    pd.read_parquet(snakemake.input.table),  # noqa: F821
    snakemake.input.graphs,  # noqa: F821
    snakemake.output.metrics,  # noqa: F821
    snakemake.output.predictions,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    extra={"pretrain": snakemake.params.pretrain},  # noqa: F821
)
