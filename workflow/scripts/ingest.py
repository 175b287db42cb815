"""Snakemake adapter: raw table -> canonical structures.parquet (tlcgcnn.data.ingest)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.data.ingest import IngestOptions, ingest  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
ds = snakemake.params.dataset  # noqa: F821
ingest(
    snakemake.input[0],  # noqa: F821
    snakemake.output.table,  # noqa: F821
    snakemake.output.dropped,  # noqa: F821
    snakemake.output.summary,  # noqa: F821
    IngestOptions(
        min_distance=ds["min_distance"],
        id_column=ds["id_column"],
        structure_column=ds["structure_column"],
        columns=ds["columns"],
        required_properties=snakemake.params.required,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        source=ds["source_label"],
        labels=ds.get("labels"),
        sample=ds["sample"],
    ),
)
