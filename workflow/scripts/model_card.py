"""Snakemake adapter: publish one zoo model with its model card (tlcgcnn.report.cards)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.report.cards import publish  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
z = snakemake.params.zoo  # noqa: F821
publish(
    z["model"],
    metrics=z["metrics"],
    predictions=z["predictions"],
    ingest_summary=snakemake.input.summary,  # noqa: F821
    out_dir=snakemake.output[0],  # noqa: F821
    config_name=z["config_name"],
    target_label=z["label"],
    structures=snakemake.input.structures,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
