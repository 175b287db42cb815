"""Snakemake adapter: external materials that also occur in the main table (tlcgcnn.analysis.external.overlap)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.external import overlap  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
overlap(snakemake.input.external, snakemake.input.main, snakemake.output[0])  # noqa: F821
