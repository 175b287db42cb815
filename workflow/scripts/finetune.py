"""Snakemake adapter: every seed of one graph-model fine-tuning cell (tlcgcnn.train.finetune.finetune_cell;
the baselines have their own adapter, finetune_baseline.py)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.config import Cell, resolve  # noqa: E402
from tlcgcnn.train.finetune import finetune_cell  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
inp, params = snakemake.input, snakemake.params  # noqa: F821
finetune_cell(
    cell=Cell.from_params(params.cell),  # the typed cell from here down
    table_path=inp.table,
    split_path=inp.split,
    split_cfg=params.split,
    threads=snakemake.threads,  # noqa: F821
    graph_dir=inp.graphs,
    atom_features_path=inp.atom_features,
    pretrained=next(iter(inp.get("pretrained", [])), None),
    config=resolve(snakemake.config).as_dict(),  # noqa: F821  (hashed for provenance)
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
