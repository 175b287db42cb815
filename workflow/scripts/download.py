"""Snakemake adapter: download one source into a raw table + manifest (tlcgcnn.data.download)."""

import logging
import os
import sys

sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "..", "src"))  # noqa: F821

from tlcgcnn.data.download import run  # noqa: E402

handler = logging.FileHandler(snakemake.log[0], mode="w", encoding="utf-8")  # noqa: F821
handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
logging.captureWarnings(True)

try:
    run(
        snakemake.params.dataset,  # noqa: F821
        snakemake.output.table,  # noqa: F821
        snakemake.output.manifest,  # noqa: F821
        snakemake.params.workdir,  # noqa: F821
        source=snakemake.params.source,  # noqa: F821
    )
except Exception:
    logging.getLogger("download").exception("download failed")
    raise
