"""Snakemake adapter: claims.csv, summary.md and provenance.json (tlcgcnn.report.publish.publish)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.report.publish import publish  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821


def optional(files):
    """The one file of an optional input (an empty list where the config has none)."""
    return files if isinstance(files, str) else next(iter(files), None)


publish(
    tests=snakemake.input.tests,  # noqa: F821
    metrics=snakemake.input.metrics,  # noqa: F821
    ingest_summary=snakemake.input.ingest,  # noqa: F821
    pretrain_metrics=list(snakemake.input.pretrain),  # noqa: F821
    tables=list(snakemake.input.tables),  # noqa: F821
    figures=list(snakemake.input.figures),  # noqa: F821
    out_claims=snakemake.output.claims,  # noqa: F821
    out_summary=snakemake.output.summary,  # noqa: F821
    out_provenance=snakemake.output.provenance,  # noqa: F821
    settings=snakemake.params.settings,  # noqa: F821
    protocol=snakemake.input.protocol,  # noqa: F821
    multitask=optional(snakemake.input.multitask),  # noqa: F821
    correlation=optional(snakemake.input.correlation),  # noqa: F821
)
