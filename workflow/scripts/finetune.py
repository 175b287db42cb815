"""Snakemake adapter: every seed of one fine-tuning cell (tlcgcnn.finetune); rules finetune
(graph models) and finetune_baseline (scikit-learn baselines)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn import finetune  # noqa: E402
from tlcgcnn.config import resolve  # noqa: E402
from tlcgcnn.runtime import log_to  # noqa: E402

log_to(snakemake.log[0])  # noqa: F821
inp, params = snakemake.input, snakemake.params  # noqa: F821
common = dict(
    cell=params.cell,
    table_path=inp.table,
    split_path=inp.split,
    split_cfg=params.split,
    threads=snakemake.threads,  # noqa: F821
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
if params.cell["mode"]["estimator"]:
    finetune.baseline_cell(descriptors_path=inp.descriptors, **common)
else:
    finetune.finetune_cell(
        graph_dir=inp.graphs,
        atom_features_path=inp.atom_features,
        pretrained=list(inp.get("pretrained", [])),
        config=resolve(snakemake.config).as_dict(),  # noqa: F821  (hashed for provenance)
        device=params.cell["train"]["device"],
        **common,
    )
