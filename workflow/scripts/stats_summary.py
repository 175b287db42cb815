"""Snakemake adapter: summary tables of the statistics (tlcgcnn.analysis.stats.summarize)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.stats import summarize  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
summarize(snakemake.input.metrics, snakemake.input.tests, dict(snakemake.output.items()))  # noqa: F821
