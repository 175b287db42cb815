"""Snakemake adapter: one table of the pretraining runs (tlcgcnn.analysis.stats.collect_pretrain)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.stats import collect_pretrain  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
collect_pretrain(list(snakemake.input), snakemake.output[0])  # noqa: F821
