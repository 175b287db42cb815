"""Snakemake adapter: the external-set table and predictions of the run (tlcgcnn.analysis.external.collect)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.external import collect  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
collect(
    list(snakemake.input.metrics),  # noqa: F821
    list(snakemake.input.predictions),  # noqa: F821
    snakemake.output.table,  # noqa: F821
    snakemake.output.predictions,  # noqa: F821
)
