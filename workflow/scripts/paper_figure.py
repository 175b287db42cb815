"""Snakemake adapter: one of the papers' figures (tlcgcnn.paper_figures), named by params.figure."""

import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

import pandas as pd  # noqa: E402

from tlcgcnn import io  # noqa: E402
from tlcgcnn import paper_figures as pf  # noqa: E402
from tlcgcnn.runtime import log_to  # noqa: E402
from tlcgcnn.stats import read_table  # noqa: E402

log_to(snakemake.log[0])  # noqa: F821
inp, out, labels = snakemake.input, snakemake.output, dict(snakemake.params.labels)  # noqa: F821
fig = snakemake.params.figure  # noqa: F821


if fig == "ef_eg_density":
    pf.ef_eg_density(pd.read_parquet(inp.table), io.read_json(inp.corr), out.png, out.pdf)
elif fig == "subset_scaling":
    pf.subset_scaling(read_table(inp.pretrain), out.png, out.pdf)
elif fig == "improvement":
    pf.improvement(read_table(inp.metrics), read_table(inp.tests), labels, out.png, out.pdf)
elif fig == "freeze_heatmap":
    pf.freeze_heatmap(read_table(inp.metrics), read_table(inp.tests), labels, out.png, out.pdf)
elif fig == "multitask":
    pf.multitask_bars(read_table(inp.metrics), read_table(inp.tests), labels, out.png, out.pdf)
elif fig == "pretrain_size":
    pf.pretrain_size(read_table(inp.metrics), labels, out.png, out.pdf)
elif fig == "models":
    pf.model_comparison(read_table(inp.models), labels, out.png, out.pdf)
elif fig == "target_curve":
    target = snakemake.wildcards.target  # noqa: F821
    pf.target_curve(read_table(inp.metrics), read_table(inp.tests), target, labels.get(target, target), out.png, out.pdf)
else:
    raise ValueError(f"unknown figure {fig!r}")
