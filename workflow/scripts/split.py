"""Snakemake adapter: metal / non-metal subsets and per-target test splits (tlcgcnn.data.split)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.data.split import run  # noqa: E402
from tlcgcnn.features.featurize import isolated_ids  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
run(
    table_path=snakemake.input[0],  # noqa: F821
    out=snakemake.output[0],  # noqa: F821
    split_cfg=snakemake.params.split,  # noqa: F821
    subsets_path=snakemake.input.get("subsets"),  # noqa: F821
    spec=snakemake.params.get("spec"),  # noqa: F821
    exclude=isolated_ids(snakemake.input.get("graphs"), snakemake.params.get("isolated", "keep")),  # noqa: F821
)
