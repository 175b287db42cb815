"""Snakemake adapter: multi-task vs single-task pretraining sources (tlcgcnn.analysis.multitask)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.multitask import write_table  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
write_table(
    snakemake.params.pairs,  # noqa: F821
    dict(zip(snakemake.params.sources, snakemake.input, strict=True)),  # noqa: F821
    snakemake.output[0],  # noqa: F821
)
