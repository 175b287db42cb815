"""The ``tlcgcnn`` command (:mod:`.main`) and ``tlcgcnn finetune``'s runner of the Snakemake
workflow (:mod:`.runner`). Thin: argument parsing and messages; the work is in
:mod:`tlcgcnn.api`, :mod:`tlcgcnn.predict` and the workflow."""

from tlcgcnn.cli.main import main

__all__ = ["main"]
