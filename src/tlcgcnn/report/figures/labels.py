"""What the figures call a mode: its pretraining source and what transfer did to the layers.

A transfer mode keeps the pretrained weights, then (config ``freeze``) freezes the atom
embedding and the first k convolutions and (config ``reinit``) re-initialises the head
(``head``) or everything not frozen (``unfrozen``); whatever is not frozen is trained on the
target. The labels say exactly that, so "head" is never read as "only the head was trained".
A frozen-features mode (config ``features: frozen``) trains no layer: an estimator is fitted
on the pretrained network's crystal vectors ("frozen features + ridge").
The fine-tuning protocol follows: "pretrained layers at 0.1× lr" (``backbone_lr_scale``), and
the training settings that differ between the modes of a table (lr, epochs, warm-up, ...).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

SHORT = {"formation_energy_per_atom": "ΔEf", "band_gap": "Eg", "efermi": "E_F"}
REINIT = ("none", "head", "unfrozen")
ESTIMATOR_NAMES = {"ridge": "ridge", "svr": "SVR", "rf": "random forest", "pls": "PLS", "lasso": "LASSO", "mlp": "MLP"}
FROZEN_KEY = 1000  # frozen-features schemes sort after every number of frozen convolutions


def is_frozen_features(features: Any) -> bool:
    """True for a frozen-features mode (record / config field ``features`` = ``frozen``)."""
    return isinstance(features, str) and features == "frozen"


def estimator_name(estimator: Any) -> str:
    return ESTIMATOR_NAMES.get(str(estimator), str(estimator))


def _freeze(freeze: Any) -> int:
    return 0 if freeze is None or pd.isna(freeze) else int(freeze)


def _reinit(reinit: Any) -> str:
    return "none" if reinit is None or (not isinstance(reinit, str) and pd.isna(reinit)) else str(reinit)


def scheme(freeze: Any, reinit: Any, features: Any = None, estimator: Any = None) -> str:
    """What a transfer mode does to the pretrained layers, in a few words.

    >>> scheme(0, "head")
    'all layers fine-tuned, head re-initialised'
    >>> scheme(2, "unfrozen")
    'embedding + 2 convs frozen, rest re-initialised'
    >>> scheme(0, "none", "frozen", "ridge")
    'frozen features + ridge'
    """
    if is_frozen_features(features):
        return f"frozen features + {estimator_name(estimator)}"
    f, r = _freeze(freeze), _reinit(reinit)
    if r not in REINIT:
        raise ValueError(f"unknown reinit {r!r}; expected one of {REINIT}")
    if f == 0:
        return {
            "none": "all layers fine-tuned",
            "head": "all layers fine-tuned, head re-initialised",
            "unfrozen": "embedding kept, convs and head re-initialised",
        }[r]
    frozen = f"embedding + {f} conv{'s' if f > 1 else ''} frozen"
    return {
        "none": f"{frozen}, rest fine-tuned",
        "head": f"{frozen}, head re-initialised",
        "unfrozen": f"{frozen}, rest re-initialised",
    }[r]


def scheme_key(freeze: Any, reinit: Any, features: Any = None, estimator: Any = None) -> tuple[int, int]:
    """Sort order of the schemes: fewer frozen layers first, then none < head < unfrozen;
    frozen features (no layer trained) last, by estimator."""
    if is_frozen_features(features):
        names = list(ESTIMATOR_NAMES)
        return FROZEN_KEY, names.index(estimator) if estimator in names else len(names)
    return _freeze(freeze), REINIT.index(_reinit(reinit))


def fine_tunes_all(freeze: Any, reinit: Any, features: Any = None) -> bool:
    """True for the plain transfer mode: every pretrained weight kept and fine-tuned."""
    return not is_frozen_features(features) and _freeze(freeze) == 0 and _reinit(reinit) == "none"


def source_label(prop: Any, subset: Any = None) -> str:
    """Pretraining source: its property (MT (…) for a multi-task source) and subset."""
    if not isinstance(prop, str):
        return "none"
    name = " + ".join(SHORT.get(p, p) for p in prop.split("+"))
    if "+" in prop:
        name = f"MT ({name})"
    if isinstance(subset, str) and subset != "all":
        name += f", {subset}s"
    return name


# training settings a label names when they differ between the modes of a table
SETTINGS = ("lr", "epochs", "warmup_epochs", "patience", "schedule")


def number(value: Any) -> str:
    """A setting's value, short: 3e-4, 0.01, 100.

    >>> number(0.0003), number(0.002), number(0.01), number(100)
    ('3e-4', '2e-3', '0.01', '100')
    """
    x = float(value)
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    e = math.floor(math.log10(abs(x)))
    return f"{round(x / 10**e, 6):g}e{e}" if e <= -3 else f"{x:g}"


def _setting(key: str, value: Any) -> str:
    if key == "lr":
        return f"lr {number(value)}"
    if key == "epochs":
        return f"{number(value)} epochs"
    if key == "warmup_epochs":
        return f"warm-up {number(value)} epochs"
    if key == "patience":
        return f"patience {number(value)}"
    return f"{value} schedule"


def protocol(row: pd.Series | dict[str, Any], show: tuple[str, ...] = ()) -> str:
    """How a mode fine-tunes, without its source: the scheme, the pretrained layers' learning
    rate (``backbone_lr_scale``) and the ``show`` training settings.

    >>> protocol({"family": "transfer", "freeze": 0, "reinit": "head", "backbone_lr_scale": 0.1, "lr": 3e-4}, ("lr",))
    'all layers fine-tuned, head re-initialised, pretrained layers at 0.1× lr, lr 3e-4'
    """
    parts = []
    if row.get("family") == "transfer":
        parts.append(scheme(row.get("freeze"), row.get("reinit"), row.get("features"), row.get("model_kind")))
        scale = row.get("backbone_lr_scale")
        if scale is not None and pd.notna(scale) and float(scale) != 1.0:
            parts.append(f"pretrained layers at {number(scale)}× lr")
        kept = row.get("validate_source")
        if kept is not None and not (isinstance(kept, float) and math.isnan(kept)) and bool(kept):
            parts.append("source kept where no epoch beats it")
    for key in show:
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(_setting(key, value))
    return ", ".join(parts)


def mode_label(row: pd.Series | dict[str, Any], show: tuple[str, ...] = ()) -> str:
    """Legend label of a mode from its record fields (family, model_kind, pretraining
    source / subset / size, freeze, reinit, features, backbone_lr_scale; the ``show``
    settings), e.g. "TL ΔEf, n=2980: frozen features + ridge"."""
    fam = row.get("family")
    if fam == "baseline":
        return str(row["model_kind"]).upper()
    if fam == "scratch":
        extra = protocol(row, show)
        return f"{row.get('model_kind', 'cgcnn')} scratch".replace("cgcnn", "CGCNN") + (f", {extra}" if extra else "")
    size = row.get("pretrain_size")
    size_s = f", n={int(size)}" if size is not None and pd.notna(size) else ""
    return f"TL {source_label(row.get('pretrain_property'), row.get('pretrain_subset'))}{size_s}: {protocol(row, show)}"


def varying_settings(metrics: pd.DataFrame) -> tuple[str, ...]:
    """The training settings (of :data:`SETTINGS`) that differ between the graph-model modes
    of a table: the ones a label must name to tell its modes apart."""
    first = metrics.drop_duplicates("mode")
    if "family" in first.columns:
        first = first[first["family"] != "baseline"]
    return tuple(k for k in SETTINGS if k in first.columns and first[k].dropna().astype(str).nunique() > 1)


def mode_labels(metrics: pd.DataFrame) -> dict[str, str]:
    """Mode → label, from the first record of each mode (naming the training settings that
    differ between the modes)."""
    show = varying_settings(metrics)
    first = metrics.drop_duplicates("mode").set_index("mode")
    return {str(m): mode_label(r, show) for m, r in first.iterrows()}


def protocol_labels(metrics: pd.DataFrame) -> dict[str, str]:
    """Mode → its protocol (:func:`protocol`), from the first record of each mode."""
    show = varying_settings(metrics)
    first = metrics.drop_duplicates("mode").set_index("mode")
    return {str(m): protocol(r, show) for m, r in first.iterrows()}
