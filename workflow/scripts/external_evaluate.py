"""Snakemake adapter: every fine-tuned graph model of a target predicts an external set
(tlcgcnn.analysis.external.evaluate_target)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.analysis.external import evaluate_target  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
inp, params = snakemake.input, snakemake.params  # noqa: F821
evaluate_target(
    external=params.external,
    cell_metrics=list(inp.cells),
    table_path=inp.table,
    graph_dir=inp.graphs,
    overlap_path=inp.overlap,
    split_cfg=params.split,
    device=params.device,
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
