"""Snakemake adapter: composition / structure descriptors for the baselines (tlcgcnn.features.descriptors)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.features.descriptors import run  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
run(snakemake.input[0], snakemake.output[0])  # noqa: F821
