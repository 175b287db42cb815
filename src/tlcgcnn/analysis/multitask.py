"""MT-CGCNN's question: does a multi-task pretraining source predict each of its properties
better or worse than a single-task source of that property trained on the same crystals?

:func:`source_pairs` pairs, from the pretraining sources of a :class:`tlcgcnn.config.Config`,
every multi-task source (``properties: [p1, p2, ...]``) with each single-task source of one of
its properties that has the same split: same ``size``, ``seed`` and ``subset``, and the same
set of properties a crystal must be labelled with to enter the split (the entry's
``property`` plus its ``labelled_with``). The pair must also share ``transform`` and the
model (the resolved architecture), so that only the training objective differs.
``checkpoint:`` sources have no test-set evaluation here and never pair.

:func:`multitask_table` compares each pair on the test set they share (the evaluated
``predictions.parquet`` of both; different material ids are an error): the test MAE of
each model on the property, the relative change, Spearman ρ of each, and a paired t-test on
the per-crystal absolute errors (:func:`tlcgcnn.analysis.stats.paired`), Holm-corrected over every
pair of the table (one family, :data:`HOLM_FAMILY`). Errors are in the property's own units
(eV/atom for the formation energy, eV for gaps and the Fermi energy): a log10-transformed
source's predictions are transformed back first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlcgcnn.config import Config, PretrainSource

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

HOLM_FAMILY = "multitask_vs_single"
COLUMNS = (
    "property",
    "size",
    "mt_source",
    "st_source",
    "n_test",
    "mae_mt",
    "mae_st",
    "change_pct",
    "spearman_mt",
    "spearman_st",
    "t",
    "p",
    "p_holm",
    "holm_family",
)


class PairMismatchError(ValueError):
    """Two paired sources were not evaluated on the same test crystals or labels."""


@dataclass(frozen=True)
class SourcePair:
    """A multi-task source and a single-task source of one of its properties, on one split.
    ``size``: training-set size of both (crystals, or ``"all"``); ``transform``: the label
    transform both learn (the comparison undoes it)."""

    property: str
    size: int | str
    mt_source: str
    st_source: str
    transform: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size_order(size: int | str) -> float:
    return math.inf if size == "all" else float(size)


def _split_key(config: Config, s: PretrainSource) -> tuple[Any, ...]:
    """What makes two sources' training crystals, test set and label scale the same."""
    labelled = sorted({s.target.property, *config.split_spec(s.name).get("labelled_with", [])})
    return (s.size, s.seed, s.target.subset, tuple(labelled), s.target.transform, sorted(s.model.items()))


def _properties(s: PretrainSource) -> list[str]:
    return list(s.target.properties or [s.target.property])


def source_pairs(config: Config) -> list[SourcePair]:
    """Every (multi-task source, single-task source) pair of the config's trained
    pretraining sources that shares a split (see the module docstring), one per property of
    the multi-task source that a single-task source learns alone; ordered by property (as the
    multi-task sources, by name, list them), size, then source names."""
    trained = [config.pretrain_source(n) for n in config.trained_pretrain_names]
    multi = [s for s in trained if len(_properties(s)) > 1]
    single = [s for s in trained if len(_properties(s)) == 1]
    pairs = [
        SourcePair(prop, m.size, m.name, s.name, m.target.transform)
        for m in multi
        for prop in _properties(m)
        for s in single
        if _properties(s)[0] == prop and _split_key(config, s) == _split_key(config, m)
    ]
    order = list(dict.fromkeys(prop for m in multi for prop in _properties(m)))
    return sorted(pairs, key=lambda p: (order.index(p.property), _size_order(p.size), p.mt_source, p.st_source))


def _columns(pred: pd.DataFrame, source: str, prop: str, multitask: bool) -> tuple[str, str]:
    cols = (f"y_true_{prop}", f"y_pred_{prop}") if multitask else ("y_true", "y_pred")
    missing = [c for c in ("material_id", *cols) if c not in pred.columns]
    if missing:
        kind = "multi-task" if multitask else "single-task"
        raise PairMismatchError(
            f"predictions of the {kind} source {source!r} lack columns {missing} (has {list(pred.columns)})"
        )
    return cols


def compare_pair(pair: SourcePair, mt_pred: pd.DataFrame, st_pred: pd.DataFrame) -> dict[str, Any]:
    """One row of the table (without ``p_holm``) from the two sources' test predictions:
    the multi-task source's ``y_true_<property>`` / ``y_pred_<property>`` and the
    single-task source's ``y_true`` / ``y_pred``, both keyed by ``material_id``.

    Raises :class:`PairMismatchError` naming both sources when their material ids differ
    (they were not evaluated on one split) or their labels of the property do.
    MAEs are in the property's units; ``change_pct`` = 100 (MAE_mt − MAE_st) / MAE_st
    (negative: the multi-task source is better); ``t`` > 0 means larger multi-task errors."""
    import numpy as np

    from tlcgcnn.analysis.metrics import regression_metrics
    from tlcgcnn.analysis.stats import paired
    from tlcgcnn.data.targets import inverse_transform

    names = f"multi-task source {pair.mt_source!r} and single-task source {pair.st_source!r}"
    mt_true, mt_hat = _columns(mt_pred, pair.mt_source, pair.property, multitask=True)
    st_true, st_hat = _columns(st_pred, pair.st_source, pair.property, multitask=False)
    for src, pred in ((pair.mt_source, mt_pred), (pair.st_source, st_pred)):
        if pred["material_id"].duplicated().any():
            raise PairMismatchError(f"predictions of {src!r} repeat material ids: cannot pair {names}")
    mt_ids, st_ids = set(mt_pred["material_id"].astype(str)), set(st_pred["material_id"].astype(str))
    if mt_ids != st_ids:
        only_mt, only_st = sorted(mt_ids - st_ids), sorted(st_ids - mt_ids)
        raise PairMismatchError(
            f"{names} were not evaluated on the same test set ({len(mt_ids)} vs {len(st_ids)} materials; "
            f"{len(only_mt)} only in {pair.mt_source!r}, e.g. {only_mt[:3]}; "
            f"{len(only_st)} only in {pair.st_source!r}, e.g. {only_st[:3]}): "
            "their pretrain entries must give one split (same size, seed, subset and labelled_with)"
        )
    a = (
        mt_pred[["material_id", mt_true, mt_hat]]
        .astype({"material_id": str})
        .rename(columns={mt_true: "true_mt", mt_hat: "pred_mt"})
    )
    b = (
        st_pred[["material_id", st_true, st_hat]]
        .astype({"material_id": str})
        .rename(columns={st_true: "true_st", st_hat: "pred_st"})
    )
    both = a.merge(b, on="material_id")
    both = both[both["true_mt"].notna() & both["true_st"].notna()]  # a multi-task label may be missing
    cols = ["true_mt", "pred_mt", "true_st", "pred_st"]
    v = {c: both[c].to_numpy(dtype=np.float64) for c in cols}
    if pair.transform != "none":
        v = {c: inverse_transform(x, pair.transform) for c, x in v.items()}
    bad = ~np.isclose(v["true_mt"], v["true_st"], rtol=1e-6, atol=1e-9)
    if bad.any():
        raise PairMismatchError(
            f"{names} hold different {pair.property} labels for {int(bad.sum())} of their {len(bad)} test materials "
            f"(e.g. {both['material_id'].iloc[int(np.argmax(bad))]!r})"
        )
    if len(both) == 0:
        raise PairMismatchError(f"{names} share no test material labelled with {pair.property}")
    err_mt, err_st = np.abs(v["pred_mt"] - v["true_mt"]), np.abs(v["pred_st"] - v["true_st"])
    test = paired(err_st, err_mt)  # "mode" = the multi-task source, compared with the single-task one
    mae_mt, mae_st = test["mae_mode"], test["mae_baseline"]
    return {
        "property": pair.property,
        "size": pair.size,
        "mt_source": pair.mt_source,
        "st_source": pair.st_source,
        "n_test": int(len(both)),
        "mae_mt": mae_mt,
        "mae_st": mae_st,
        "change_pct": 100.0 * (mae_mt - mae_st) / mae_st if mae_st != 0 else float("nan"),
        "spearman_mt": regression_metrics(v["true_mt"], v["pred_mt"])["spearman_rho"],
        "spearman_st": regression_metrics(v["true_st"], v["pred_st"])["spearman_rho"],
        "t": test["t_stat"],
        "p": test["p_value"],
        "holm_family": HOLM_FAMILY,
    }


def multitask_table(pairs: list[SourcePair], predictions: Mapping[str, str | Path | pd.DataFrame]) -> pd.DataFrame:
    """The comparison table (columns :data:`COLUMNS`, one row per pair, in the pairs'
    order); ``predictions``: source name → its ``predictions.parquet`` (or the frame).
    Holm-corrected over all rows (one family). No pairs: the columns and no rows."""
    import pandas as pd

    from tlcgcnn.analysis.stats import holm

    frames: dict[str, pd.DataFrame] = {}

    def load(source: str) -> pd.DataFrame:
        if source not in frames:
            if source not in predictions:
                raise KeyError(f"no predictions given for pretraining source {source!r} (given: {sorted(predictions)})")
            given = predictions[source]
            frames[source] = given if isinstance(given, pd.DataFrame) else pd.read_parquet(given)
        return frames[source]

    rows = [compare_pair(p, load(p.mt_source), load(p.st_source)) for p in pairs]
    if not rows:
        return pd.DataFrame(
            {
                c: pd.Series(
                    dtype=object if c in ("property", "size", "mt_source", "st_source", "holm_family") else float
                )
                for c in COLUMNS
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].to_numpy(float))
    return out[list(COLUMNS)]


def write_table(pairs: list[Mapping[str, Any]], predictions: Mapping[str, str | Path], out: str | Path) -> pd.DataFrame:
    """Workflow entry (rule multitask_table): ``pairs`` as :meth:`SourcePair.as_dict` gives
    them, ``predictions`` source name → predictions.parquet; writes ``out`` (CSV)."""
    from tlcgcnn.utils import fileio as io

    table = multitask_table([SourcePair(**p) for p in pairs], predictions)
    io.write_csv(table, out)
    for r in table.itertuples():
        log.info(
            "%s n=%s: %s vs %s on %d crystals: MAE %.4g vs %.4g (%+.1f %%), Holm p = %.3g",
            r.property,
            r.size,
            r.mt_source,
            r.st_source,
            r.n_test,
            r.mae_mt,
            r.mae_st,
            r.change_pct,
            r.p_holm,
        )
    return table
