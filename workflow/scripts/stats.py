"""Snakemake adapter: metrics table, paired t-tests and the protocol chosen on validation data
(tlcgcnn.analysis.stats)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.stats import run  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
run(
    list(snakemake.input),  # noqa: F821
    snakemake.output.metrics,  # noqa: F821
    snakemake.output.tests,  # noqa: F821
    baseline=snakemake.params.baseline,  # noqa: F821
    out_protocol=snakemake.output.protocol,  # noqa: F821
    mode_order=list(snakemake.params.mode_order),  # noqa: F821
)
