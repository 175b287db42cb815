"""Snakemake adapter for rule ``demo_dataset``: calls ``generate`` of the CHGNet demo generator
in ``tools/demo/chgnet_demo.py`` (outside the package: chgnet is not a pipeline dependency)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

snakemake: Any  # injected by Snakemake

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))
sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "tools", "demo"))

import chgnet_demo as demo  # noqa: E402


def main() -> None:
    logging.basicConfig(
        filename=snakemake.log[0],
        filemode="w",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    demo.generate(
        n_crystals=int(snakemake.params.n_crystals),
        n_bulk=int(snakemake.params.n_bulk),
        seed=int(snakemake.params.seed),
        out_table=snakemake.output.table,
        out_manifest=snakemake.output.manifest,
        out_dropped=snakemake.output.dropped,
        threads=int(snakemake.threads),
        batch_size=int(snakemake.params.batch_size),
    )


main()
