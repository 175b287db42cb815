"""Has a training run converged? Judged from its validation history.

A run counts as **converged** when

* it stopped early: its early-stopping patience ran out before the planned epochs, or
* its validation curve is flat at the end: over the last :data:`TAIL_FRACTION` of the epochs
  it ran (at least one epoch), the best validation score improved on the best score before
  that tail by less than :data:`FLAT_GAIN` (relative).

Otherwise it was still improving when the epochs ran out, and more epochs (or a longer
schedule) would likely have lowered its error. The validation score is the one the run
stopped on (lower is better: a MAE in target units, a cross-entropy, a normalised MAE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TAIL_FRACTION = 0.10
FLAT_GAIN = 0.01


@dataclass(frozen=True, slots=True)
class Convergence:
    """The verdict on one run. ``tail_gain``: the relative improvement of the best validation
    score over the last ``tail_epochs`` epochs (0 where the tail did not improve on it)."""

    epochs_planned: int
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    tail_epochs: int
    tail_gain: float
    converged: bool

    def text(self) -> str:
        """One short phrase for a table: why the run counts as converged, or not."""
        if self.stopped_early:
            return f"yes (stopped early at {self.epochs_run} of {self.epochs_planned} epochs)"
        gain = f"{100 * self.tail_gain:.1f} % better in the last {self.tail_epochs} epochs"
        return f"yes (flat: {gain})" if self.converged else f"no (still improving: {gain})"


def judge(val_scores: Sequence[float], epochs_planned: int) -> Convergence:
    """The :class:`Convergence` of a run whose validation score was ``val_scores`` after each
    epoch (epoch 0 first) out of ``epochs_planned`` planned epochs."""
    scores = [float(v) for v in val_scores]
    if not scores:
        raise ValueError("a run without a validation history: nothing to judge")
    if epochs_planned < len(scores):
        raise ValueError(f"{len(scores)} epochs in the history but only {epochs_planned} planned")
    run = len(scores)
    best_epoch = min(range(run), key=scores.__getitem__)
    tail = max(1, math.ceil(TAIL_FRACTION * run))
    before, last = scores[:-tail], scores[-tail:]
    gain = 0.0
    if before:
        ref, end = min(before), min(last)
        if end < ref:
            gain = (ref - end) / abs(ref) if ref != 0 else math.inf
    else:  # a run shorter than its tail: nothing before it to compare with
        gain = math.inf
    stopped = run < epochs_planned
    return Convergence(
        epochs_planned=int(epochs_planned),
        epochs_run=run,
        best_epoch=best_epoch,
        stopped_early=stopped,
        tail_epochs=tail,
        tail_gain=gain,
        converged=stopped or gain < FLAT_GAIN,
    )


def of_checkpoint(ckpt: Mapping[str, Any]) -> Convergence | None:
    """The verdict on a checkpoint's run, from its validation history and planned epochs
    (``train_config.epochs``; the history's length where not recorded); None for a
    checkpoint without a history (trained elsewhere)."""
    history = (ckpt.get("history") or {}).get("val_mae")
    if not history:
        return None
    planned = (ckpt.get("train_config") or {}).get("epochs") or len(history)
    return judge(history, int(planned))
