"""Snakemake adapter: canonical table -> CGCNN graph shards (tlcgcnn.features.featurize)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.config import featurize_params  # noqa: E402
from tlcgcnn.features.featurize import featurize  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
cfg = snakemake.params.featurize  # noqa: F821
featurize(
    snakemake.input.table,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    featurize_params(cfg),
    threads=snakemake.threads,  # noqa: F821
    shard_size=cfg["shard_size"],
)
