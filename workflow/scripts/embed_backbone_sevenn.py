"""Snakemake adapter: a SevenNet backbone's crystal vectors of every crystal of the run's table
(tlcgcnn.features.backbones.embed_table with tlcgcnn.features.sevennet's loader; rule
embed_backbone_sevenn)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.features.backbones import embed_table  # noqa: E402
from tlcgcnn.features.sevennet import load as load_sevennet  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
params = snakemake.params  # noqa: F821
embed_table(
    table_path=snakemake.input.table,  # noqa: F821
    out_embeddings=snakemake.output.embeddings,  # noqa: F821
    out_info=snakemake.output.info,  # noqa: F821
    backbone=snakemake.wildcards.backbone,  # noqa: F821
    cache=params.cache,
    device=params.device,
    threads=snakemake.threads,  # noqa: F821
    loader=load_sevennet,
)
