"""Analysis: scoring and statistics.

Owns test-set evaluation (:mod:`.evaluate`), metrics (:mod:`.metrics`), paired t-tests with
Holm correction and protocol selection (:mod:`.stats`), outside labelled sets
(:mod:`.external`), the multi-task comparisons (:mod:`.multitask`), the classifiers' ROC
curves (:mod:`.roc`) and calibrated prediction intervals (:mod:`.calibration`).

Torch-free at import (:mod:`.evaluate` loads checkpoints inside its functions). May import
:mod:`tlcgcnn.data`, :mod:`tlcgcnn.config` and :mod:`tlcgcnn.utils`.
"""
