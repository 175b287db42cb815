"""Snakemake adapter: ROC curves of the classification cells (tlcgcnn.analysis.roc)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.roc import write_table  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
write_table(snakemake.params.cells, list(snakemake.input), snakemake.output[0])  # noqa: F821
