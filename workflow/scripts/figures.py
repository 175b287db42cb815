"""Snakemake adapter: figures from the collected metrics (tlcgcnn.figures)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.figures import learning_curve  # noqa: E402
from tlcgcnn.runtime import log_to  # noqa: E402
from tlcgcnn.stats import read_table  # noqa: E402

log_to(snakemake.log[0])  # noqa: F821
learning_curve(
    read_table(snakemake.input.metrics),  # noqa: F821
    read_table(snakemake.input.tests),  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
)
