"""Snakemake adapter: one figure of the registry (tlcgcnn.report.figures), named by the wildcard."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.report.figures import draw  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
draw(
    snakemake.wildcards.figure,  # noqa: F821
    dict(snakemake.input.items()),  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    target_labels=dict(snakemake.params.labels),  # noqa: F821
)
