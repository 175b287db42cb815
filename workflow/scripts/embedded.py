"""Snakemake adapter: the committed real-data subset (tlcgcnn.data.embedded)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.data.embedded import build  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
s = snakemake.params.settings  # noqa: F821
build(
    snakemake.input[0],  # noqa: F821
    snakemake.output.table,  # noqa: F821
    snakemake.output.manifest,  # noqa: F821
    snakemake.output.readme,  # noqa: F821
    require=s["require"],
    keep=s["keep"],
    n=s["n"],
    seed=s["seed"],
    max_bytes=s["max_bytes"],
    min_distance=snakemake.params.min_distance,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    title=s["title"],
)
