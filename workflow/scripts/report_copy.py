"""Snakemake adapter: publish one stats table or figure (tlcgcnn.report.publish.copy_file)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.report.publish import copy_file  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
copy_file(snakemake.input[0], snakemake.output[0])  # noqa: F821
