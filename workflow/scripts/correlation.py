"""Snakemake adapter: ΔEf–Eg correlation over the whole data set (tlcgcnn.analysis.stats.correlation)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.stats import correlation  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
correlation(snakemake.input[0], snakemake.output[0])  # noqa: F821
