"""Calibrated prediction intervals: split-conformal 90 % intervals fitted on a validation set.

This module owns the interval arithmetic (numpy only, no torch): fitting a
:class:`Calibration` on validation residuals, turning a prediction into an interval, and
measuring the coverage of intervals on labelled data. Everything is in the model's *output*
space: for a log10 target the residuals, bounds and half-widths are in log10 units, and the
caller converts the bounds back (``10 ** lo``, ``10 ** hi``).

Methods (``Calibration.method``):

* ``"absolute"``: interval = mean ± q, with q the conformal quantile of the validation
  residuals |y − mean|. Used when too few validation residuals are available for bins.
* ``"binned"`` (Mondrian split-conformal): the validation predictions are cut into
  ``bins`` bins at their quantiles (edges in ``edges``) and each bin gets its own q (in
  ``bin_q``); a new prediction takes the q of the bin its predicted value falls in. Chosen
  by ``method="auto"`` whenever there are at least :data:`MIN_PER_BIN` residuals per bin
  (and no ensemble spread is given). The reason is measured, not assumed: the zoo's test sets
  (the crystals held out for other configurations' test sets, e.g. non-metals' gaps, elastic
  and HSE materials) hold a different mix of predicted values than the validation sets, and
  the error depends on the predicted value (a band gap predicted near 0 is rarely far off; the
  validation half-widths of mp2018-eg run from 0.07 to 1.2 eV across the bins). One global q
  fitted on validation covered only 86.2–88.5 % of five of the zoo's seven test outputs; per
  bin, 88.4–91.0 % of all seven. Conformal coverage holds within each bin, so a shift in the mix of bins
  does not lower it (a shift within a bin still can).
* ``"scaled"``: for an ensemble (≥ 2 seeds) whose spread on the validation set is honest
  (every seed held the validation crystals out): score |y − mean| / (std + s0) with s0 the
  median validation std, interval = mean ± q · (std + s0). Chosen by ``method="auto"`` when
  ``std`` is given. An ensemble whose seeds were validated on different crystals (the
  pipeline's fine-tuning cells: each seed draws its own validation set from the pool, and the
  other seeds trained on it) has no honest validation spread; :mod:`tlcgcnn.report.cards` then
  pools each seed's own validation residuals and fits ``binned`` / ``absolute``.

The quantile is the finite-sample split-conformal one: with n scores, the
ceil((n + 1) · level)-th smallest (infinite when that rank exceeds n), which guarantees a
coverage ≥ level on new data exchangeable with the validation data. Data unlike the
validation set (other chemistries, another database) may be covered less; early stopping on
the same validation set also makes its residuals a little optimistic. The model cards record
the coverage measured on each model's fixed test set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVEL = 0.9
METHODS = ("absolute", "binned", "scaled")
BINS = 5
MIN_PER_BIN = 50  # fewer validation residuals per bin: one global q ("absolute")


class CalibrationError(ValueError):
    """Data from which no calibration can be fitted, or a calibration that cannot be used."""


def conformal_quantile(scores: np.ndarray, level: float = LEVEL) -> float:
    """The ceil((n + 1) · level)-th smallest score (``inf`` when that rank exceeds n)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise CalibrationError("no validation scores to calibrate on")
    rank = math.ceil((n + 1) * level - 1e-9)
    return math.inf if rank > n else float(s[rank - 1])


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A fitted interval rule (see the module docstring). ``q``: the half-width (absolute),
    the multiplier of std + s0 (scaled), or the pooled half-width over all bins (binned, for
    reference); ``s0``: the median validation std (scaled only); ``n_val``: validation
    scores fitted on; ``edges`` / ``bin_q`` / ``bin_n``: inner bin edges on the predicted
    value, each bin's half-width and its number of validation scores (binned only)."""

    level: float
    method: str
    q: float
    s0: float | None
    n_val: int
    edges: tuple[float, ...] = ()
    bin_q: tuple[float, ...] = ()
    bin_n: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(f"unknown calibration method {self.method!r}; known: {', '.join(METHODS)}")
        if not 0.0 < self.level < 1.0:
            raise CalibrationError(f"calibration level {self.level} is not between 0 and 1")
        if self.method == "scaled" and self.s0 is None:
            raise CalibrationError("a scaled calibration needs s0")
        if self.method == "binned" and (len(self.bin_q) != len(self.edges) + 1 or len(self.bin_n) != len(self.bin_q)):
            raise CalibrationError(
                f"a binned calibration needs one q and one count per bin: {len(self.edges)} edges, "
                f"{len(self.bin_q)} q, {len(self.bin_n)} counts"
            )

    def half_width(self, mean: Any, std: Any = None) -> np.ndarray:
        """Half-width of the interval at each prediction (output units)."""
        m = _as_array(mean)
        if self.method == "absolute":
            return np.full(m.shape, self.q)
        if self.method == "binned":
            idx = np.searchsorted(np.asarray(self.edges, dtype=np.float64), m, side="right")
            return np.asarray(self.bin_q, dtype=np.float64)[idx]
        if std is None:
            raise CalibrationError(
                "this calibration scales with the ensemble's std; predict with all the seeds it was fitted for"
            )
        s = _as_array(std)
        if s.shape != m.shape:
            raise CalibrationError(f"mean and std differ in length ({m.shape[0]} vs {s.shape[0]})")
        assert self.s0 is not None
        return self.q * (s + self.s0)

    def interval(self, mean: Any, std: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of the ``level`` interval around each prediction, in output units. A
        ``std`` is needed by the scaled method only (the others ignore it)."""
        m = _as_array(mean)
        h = self.half_width(m, std)
        return m - h, m + h

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a model card's ``calibration.outputs.<property>``)."""
        d: dict[str, Any] = {
            "level": self.level,
            "method": self.method,
            "q": _finite_or_none(self.q),
            "s0": self.s0,
            "n_val": self.n_val,
        }
        if self.method == "binned":
            d["edges"] = list(self.edges)
            d["bin_q"] = [_finite_or_none(v) for v in self.bin_q]
            d["bin_n"] = list(self.bin_n)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; a missing key raises :class:`CalibrationError`."""
        try:
            return cls(
                level=float(d["level"]),
                method=str(d["method"]),
                q=_none_to_inf(d["q"]),
                s0=None if d.get("s0") is None else float(d["s0"]),
                n_val=int(d["n_val"]),
                edges=tuple(float(v) for v in d.get("edges") or ()),
                bin_q=tuple(_none_to_inf(v) for v in d.get("bin_q") or ()),
                bin_n=tuple(int(v) for v in d.get("bin_n") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            what = f"{type(exc).__name__}: {exc}"
            raise CalibrationError(f"not a calibration record ({what}): {dict(d)!r:.300}") from None


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None  # JSON has no infinity: None means unbounded


def _none_to_inf(v: Any) -> float:
    return math.inf if v is None else float(v)


def _clean(y_true: Any, mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y, m = _as_array(y_true), _as_array(mean)
    if y.shape != m.shape:
        raise CalibrationError(f"y_true and mean differ in length ({y.shape[0]} vs {m.shape[0]})")
    s = None if std is None else _as_array(std)
    if s is not None and s.shape != m.shape:
        raise CalibrationError(f"mean and std differ in length ({m.shape[0]} vs {s.shape[0]})")
    ok = np.isfinite(y) & np.isfinite(m) & (np.isfinite(s) if s is not None else True)
    return y[ok], m[ok], (s[ok] if s is not None else None)


def _bin_edges(m: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges at the quantiles of the predicted values; repeated values merge bins."""
    inner = np.quantile(m, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def fit(
    y_true: Any,
    mean: Any,
    std: Any = None,
    level: float = LEVEL,
    method: str = "auto",
    bins: int = BINS,
) -> Calibration:
    """Fit a calibration on validation labels and predictions (output units; NaN labels are
    left out). ``method="auto"``: ``scaled`` when ``std`` is given, else ``binned`` with at
    least :data:`MIN_PER_BIN` scores per bin (as many bins up to ``bins`` as that allows),
    else ``absolute``."""
    y, m, s = _clean(y_true, mean, std)
    n = len(y)
    if n == 0:
        raise CalibrationError("no validation crystal with both a label and a prediction")
    if method == "auto":
        method = "scaled" if s is not None else ("binned" if n // MIN_PER_BIN >= 2 and bins >= 2 else "absolute")
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; choose auto or one of {', '.join(METHODS)}")
    r = np.abs(y - m)
    if method == "absolute":
        return Calibration(level=level, method="absolute", q=conformal_quantile(r, level), s0=None, n_val=n)
    if method == "scaled":
        if s is None:
            raise CalibrationError("the scaled method needs the ensemble's std on the validation set")
        s0 = float(np.median(s))
        if s0 <= 0.0:
            raise CalibrationError(
                "the ensemble's median validation std is 0: its seeds agree exactly; use method='absolute'"
            )
        return Calibration(level=level, method="scaled", q=conformal_quantile(r / (s + s0), level), s0=s0, n_val=n)
    n_bins = max(1, min(bins, n // MIN_PER_BIN))
    edges = _bin_edges(m, n_bins)
    idx = np.searchsorted(edges, m, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    bin_q = tuple(conformal_quantile(r[idx == b], level) if counts[b] else math.inf for b in range(len(edges) + 1))
    return Calibration(
        level=level,
        method="binned",
        q=conformal_quantile(r, level),
        s0=None,
        n_val=n,
        edges=tuple(float(e) for e in edges),
        bin_q=bin_q,
        bin_n=tuple(int(c) for c in counts),
    )


def covered(cal: Calibration, y_true: Any, mean: Any, std: Any = None) -> np.ndarray:
    """Whether each finite label lies in its interval (NaN labels are left out)."""
    y, m, s = _clean(y_true, mean, std)
    lo, hi = cal.interval(m, s)
    return (y >= lo) & (y <= hi)


def coverage(cal: Calibration, y_true: Any, mean: Any, std: Any = None) -> float:
    """Fraction of the labelled crystals whose label lies in its interval (NaN if none)."""
    c = covered(cal, y_true, mean, std)
    return float(c.mean()) if len(c) else math.nan
