"""Training: pretraining sources, fine-tuning cells, transfer, checkpoints.

Owns the training loop (:mod:`.loop`: fit, early stopping, resumable state), transfer
settings (:mod:`.transfer`: freezing, re-initialising, learning-rate scales), the rules'
entry points (:mod:`.pretrain`, :mod:`.finetune`, :mod:`.frozen`, :mod:`.baselines`),
objectives (:mod:`.objectives`), devices (:mod:`.device`), checkpoints (:mod:`.checkpoint`;
:mod:`.checkpoint_info` reads one without torch) and the batched seed ensemble
(:mod:`.ensemble`).

Imports torch. May import :mod:`tlcgcnn.nn`, :mod:`tlcgcnn.features`, :mod:`tlcgcnn.data`,
:mod:`tlcgcnn.analysis`, :mod:`tlcgcnn.config` and :mod:`tlcgcnn.utils`.
"""
