"""Reporting: what a run publishes.

Owns the published results folders and the papers' claims table (:mod:`.published`;
``python -m tlcgcnn.report``), the figures (:mod:`.figures`), model cards (:mod:`.cards`),
provenance (:mod:`.provenance`: code version, data hash, hardware) and the progress of a
long run (:mod:`.progress`).

Torch-free at import. May import every other subpackage.
"""
