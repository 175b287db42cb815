"""Snakemake adapter: every seed of one read-out fine-tuning cell (tlcgcnn.train.readout.readout_cell:
a backbone's read-out MLP trained on the target from its pretrained weights, on its frozen atom
features; rules/backbones.smk)."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.config import Cell, resolve  # noqa: E402
from tlcgcnn.train.readout import readout_cell  # noqa: E402
from tlcgcnn.utils.runtime import script_setup  # noqa: E402

script_setup(snakemake)  # noqa: F821
inp, params = snakemake.input, snakemake.params  # noqa: F821
readout_cell(
    cell=Cell.from_params(params.cell),  # the typed cell from here down
    table_path=inp.table,
    split_path=inp.split,
    split_cfg=params.split,
    threads=snakemake.threads,  # noqa: F821
    config=resolve(snakemake.config).as_dict(),  # noqa: F821  (hashed for provenance)
    atom_cache=params.atom_cache,
    device=params.device,
    out_metrics=snakemake.output.metrics,  # noqa: F821
    out_predictions=snakemake.output.predictions,  # noqa: F821
)
