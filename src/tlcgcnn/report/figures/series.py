"""Which series a figure draws: modes grouped by source family, each group split over panels
of at most 8 legend entries, and the mode of a group selected on validation data.

Source families (:func:`kind`): CGCNN (or another graph model) trained from scratch; fine-tuned
from a pretrained model, one group per pretraining source (property and subset, all its
pretraining-set sizes); frozen pretrained features + an estimator; composition-descriptor
baselines. A figure that cannot show every mode picks one per group and training size on
validation data (:func:`select_on_validation`), never on the test set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.report.figures.labels import (
    estimator_name,
    is_frozen_features,
    mode_label,
    protocol,
    scheme_key,
    source_label,
    varying_settings,
)
from tlcgcnn.report.figures.style import split_even

log = logging.getLogger(__name__)

MOST_PER_PANEL = 8  # legend entries of a panel (the figure-quality guard's limit)
KINDS = ("scratch", "transfer", "frozen", "baseline")


def _get(row: pd.Series | dict[str, Any], key: str) -> Any:
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def kind(row: pd.Series | dict[str, Any]) -> str:
    """Source family of a mode: ``scratch``, ``transfer`` (fine-tuned from a pretrained
    model), ``frozen`` (frozen pretrained features + estimator) or ``baseline``."""
    fam = _get(row, "family")
    if fam == "transfer" and is_frozen_features(_get(row, "features")):
        return "frozen"
    return str(fam) if fam in KINDS else "transfer"


def source(row: pd.Series | dict[str, Any]) -> str:
    return source_label(_get(row, "pretrain_property"), _get(row, "pretrain_subset"))


@dataclass
class Panel:
    """One panel's modes (at most :data:`MOST_PER_PANEL` legend entries with its reference)."""

    title: str
    modes: list[str]
    labels: dict[str, str] = field(default_factory=dict)


def _group(row: pd.Series) -> tuple[tuple[int, bool, str], str]:
    k = kind(row)
    if k == "scratch":
        return (0, False, ""), "trained from scratch"
    if k == "transfer":
        src = source(row)
        return (1, src.startswith("MT"), src), f"fine-tuned from {src}"
    if k == "frozen":
        return (2, False, ""), "frozen pretrained features + estimator"
    return (3, False, ""), "composition-descriptor baselines"


def _size_text(size: Any) -> str:
    return f"{int(size)}" if size is not None and pd.notna(size) else "all"


def _member_label(row: pd.Series, show: tuple[str, ...], several_sizes: bool) -> str:
    k = kind(row)
    if k in ("scratch", "baseline"):
        return mode_label(row, show)
    pre = f"pretrained on {_size_text(_get(row, 'pretrain_size'))} crystals" if several_sizes else ""
    if k == "frozen":
        src = source(row) + (f", {pre}" if pre else "")
        return f"{src} + {estimator_name(_get(row, 'model_kind'))}"
    how = protocol(row, show)
    return f"{pre}: {how}" if pre else how


def panels(metrics: pd.DataFrame, reference: str | None, most: int = MOST_PER_PANEL) -> list[Panel]:
    """The modes of one target's records grouped by source family, each group in as few
    panels as keep a legend at ``most`` entries (one of them the ``reference`` mode drawn in
    every panel but its own group's, e.g. CGCNN from scratch); labels say what each mode
    does within its group (the group is the panel's title)."""
    first = metrics.drop_duplicates("mode").set_index("mode", drop=False)
    show = varying_settings(metrics)
    groups: dict[tuple[int, bool, str], tuple[str, list[str]]] = {}
    for mode, row in first.iterrows():
        key, title = _group(row)
        groups.setdefault(key, (title, []))[1].append(str(mode))
    out: list[Panel] = []
    for key in sorted(groups):
        title, modes = groups[key]
        rows = first.loc[modes]
        # a source pretrained on several set sizes names each mode's size
        several = "pretrain_size" in rows and bool(
            (
                rows.assign(src=[source(r) for _, r in rows.iterrows()]).groupby("src")["pretrain_size"].nunique() > 1
            ).any()
        )
        modes = sorted(
            modes,
            key=lambda m: (
                (
                    -float(_get(first.loc[m], "pretrain_size") or np.inf),
                    scheme_key(*(_get(first.loc[m], c) for c in ("freeze", "reinit", "features", "model_kind"))),
                    str(m),
                )
                if key[0] in (1, 2)
                else (str(first.loc[m].get("model_kind", "")) != "cgcnn", mode_label(first.loc[m], show))
            ),
        )
        room = most if reference is None or reference in modes else most - 1
        chunks = split_even(modes, room)
        for i, chunk in enumerate(chunks):
            part = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
            labels = {m: _member_label(first.loc[m], show, several) for m in chunk}
            out.append(Panel(title + part, chunk, labels))
    return out


def validation_scores(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean validation score over seeds per (target, size, mode), lower is better: the
    records' ``best_val_mae`` (validation MAE in target units; a classifier's validation
    cross-entropy), or, for a baseline fitted without a validation set, minus its
    cross-validation score (scikit-learn scores are higher-is-better)."""
    val = metrics["best_val_mae"].astype(float) if "best_val_mae" in metrics else pd.Series(np.nan, metrics.index)
    if "cv_score" in metrics:
        val = val.fillna(-metrics["cv_score"].astype(float))
    out = metrics[["target", "mode"]].assign(size=metrics["size"].astype(str), score=val)
    return out.groupby(["target", "size", "mode"], sort=False)["score"].mean().reset_index()


def select_on_validation(metrics: pd.DataFrame, series: pd.Series) -> pd.DataFrame:
    """For each (target, size, series) the mode with the lowest mean validation score
    (:func:`validation_scores`; ties: the first by name). ``series`` names each record's
    group (same index as ``metrics``). A group whose modes have no validation score is
    drawn only when it has one mode. Columns: target, size (text), series, mode,
    n_candidates."""
    scores = validation_scores(metrics)
    groups = (
        metrics[["target", "mode"]]
        .assign(size=metrics["size"].astype(str), series=series.to_numpy())
        .drop_duplicates(["target", "size", "mode"])
    )
    merged = groups.merge(scores, on=["target", "size", "mode"], how="left")
    rows = []
    for (target, size, name), g in merged.groupby(["target", "size", "series"], sort=False):
        g = g.sort_values("mode", key=lambda s: s.astype(str))
        scored = g[np.isfinite(g["score"].astype(float))]
        if len(g) > 1 and scored.empty:
            log.warning("%s n=%s, %s: no mode has a validation score; none is drawn", target, size, name)
            continue
        pick = g.iloc[0] if len(g) == 1 else scored.loc[scored["score"].astype(float).idxmin()]
        rows.append({"target": target, "size": size, "series": name, "mode": pick["mode"], "n_candidates": len(g)})
    return pd.DataFrame(rows, columns=["target", "size", "series", "mode", "n_candidates"])


def largest_pretraining(metrics: pd.DataFrame) -> pd.DataFrame:
    """The transfer records (fine-tuned and frozen features) from the largest pretraining set
    of each source label and target (a source of unknown size, a checkpoint, counts as the
    largest); the pretraining-size sweep is its own figure."""
    tl = metrics[metrics["family"] == "transfer"].copy()
    if tl.empty:
        return tl.assign(source=pd.Series(dtype=str))
    tl["source"] = [source(r) for _, r in tl.iterrows()]
    size = tl["pretrain_size"].astype(float).fillna(np.inf) if "pretrain_size" in tl else pd.Series(np.inf, tl.index)
    return tl[size == size.groupby([tl["target"], tl["source"]]).transform("max")]


def source_names(metrics: pd.DataFrame) -> dict[str, str]:
    """Pretrained source (record field ``pretrained``) → its label: property and subset, and
    its pretraining-set size where another source of the records has the same label."""
    if "pretrained" not in metrics:
        return {}
    first = metrics[metrics["pretrained"].notna()].drop_duplicates("pretrained")
    base = {str(r["pretrained"]): source(r) for _, r in first.iterrows()}
    sizes = {str(r["pretrained"]): _get(r, "pretrain_size") for _, r in first.iterrows()}
    clash = {b for b in base.values() if list(base.values()).count(b) > 1}
    return {k: (f"{b}, pretrained on {_size_text(sizes[k])}" if b in clash else b) for k, b in base.items()}
