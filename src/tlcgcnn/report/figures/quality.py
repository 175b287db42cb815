"""The figure-quality guard: what every figure must satisfy before it is written.

:func:`tlcgcnn.report.figures.style.save` applies it to every figure of the registry, so a
figure that breaks a rule is never published; the error names the figure, the panel and the
rule. The rules:

1. **Axis labels.** Every axes that shows data (visible, axis on, with at least one visible
   line, collection, patch or image) has a non-empty x and y label. A colorbar's long axis
   has a label too. A label is checked for its unit unless its axis is *categorical* (the
   tick labels are text the figure set, at least one of them not a number: transfer
   schemes, pretraining sources, "PBE gap, n=50") or the label is one of
   :data:`COUNT_LABELS` (numbers of crystals, epochs: a count has no unit). Every other label names
   a quantity and ends with its unit in parentheses or brackets: "test MAE (eV/atom)",
   "improvement over scratch (%)", "test MAE (log10(K_VRH / GPa))", "test 1 − ROC-AUC
   (dimensionless)". The unit is a product / quotient of the units in :data:`UNITS` and of
   the registered properties' units (with powers: "Å^3", "atom/eV²"), or
   ``log10(<quantity> / <unit>)`` for a log-transformed target. A property key in brackets
   ("log10 k_vrh", "band_gap") is not a unit.
2. **Legends.** At most :data:`MAX_LEGEND_ENTRIES` entries in any one legend (of an axes,
   or of the figure).
3. **Size.** The PNG written is at most :data:`MAX_PIXELS` pixels on each side (the
   figure's tight bounding box × :data:`DPI`, measured on the file before it replaces the
   published one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_PIXELS = 3000
MAX_LEGEND_ENTRIES = 8
DPI = 200
# axis labels of counts (numbers of crystals, training epochs): no unit
COUNT_LABELS = frozenset({"training crystals", "pretraining crystals", "epoch"})
# units an axis label may use besides those of the registered properties
UNITS = frozenset(
    {"eV", "meV", "atom", "GPa", "MPa", "Pa", "Å", "nm", "K", "s", "μB", "%", "dex", "crystals", "dimensionless"}
)
_POWER = re.compile(r"(\^?[-−⁻]?[0-9⁰¹²³⁴⁵⁶⁷⁸⁹]+)$")
_LOG_UNIT = re.compile(r"log10\((?P<quantity>[^/]+?) / (?P<unit>.+)\)")


class FigureQualityError(ValueError):
    """A figure that breaks a rule of :mod:`tlcgcnn.report.figures.quality` (the message
    names the figure, the panel and every problem)."""


def _tokens(unit: str) -> list[str]:
    return [_POWER.sub("", t) for t in re.split(r"[\s/·*×()]+", unit) if t]


def known_units() -> set[str]:
    """:data:`UNITS` and every unit token of the registered properties (a user's property
    declared in the config with its unit counts once the run registered it)."""
    from tlcgcnn.data.properties import PROPERTIES

    out = set(UNITS)
    for prop in PROPERTIES.values():
        out.update(t for t in _tokens(prop.unit) if t)
    return out


def trailing_unit(label: str) -> str | None:
    """The text of the label's last bracketed group when the label ends with it ("eV/atom"
    of "test MAE (eV/atom)", "log10(K_VRH / GPa)" of "test MAE (log10(K_VRH / GPa))"), else None."""
    text = label.rstrip()
    if not text or text[-1] not in ")]":
        return None
    close = text[-1]
    open_ = "(" if close == ")" else "["
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == close:
            depth += 1
        elif text[i] == open_:
            depth -= 1
            if depth == 0:
                return text[i + 1 : -1].strip()
    return None


def unit_problem(unit: str) -> str | None:
    """Why ``unit`` is not a unit expression, or None when it is one."""
    inner = unit.strip()
    log = _LOG_UNIT.fullmatch(inner)
    if log:
        inner = log.group("unit")
    tokens = [t for t in _tokens(inner) if t]
    if not tokens:
        return f"unit {unit!r} is empty"
    known = known_units()
    unknown = [t for t in tokens if t not in known]
    if unknown:
        names = ", ".join(repr(t) for t in unknown)
        return f"{unit!r} is not a unit ({names} unknown; units: {', '.join(sorted(known))})"
    return None


def _number(text: str) -> bool:
    """True for a tick label that writes a number ("50", "−0.5", "1e-3", "$\\mathdefault{10^{2}}$")."""
    plain = re.sub(r"\\mathdefault|\\times|[${}\s]", "", text)
    return bool(plain) and not plain.strip("0123456789.,-−+eE^×")


def is_categorical(axis: Any) -> bool:
    """True when the axis's ticks name categories: labels the figure set at fixed positions
    (``set_xticks(positions, labels)``, ``set_yticklabels``, a seaborn heatmap) of which at
    least one is not a number, or matplotlib's categorical (string) axis."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter, FixedLocator

    fmt, locator = axis.get_major_formatter(), axis.get_major_locator()
    if isinstance(fmt, StrCategoryFormatter):
        return True
    if isinstance(fmt, FixedFormatter):
        texts = [str(s) for s in fmt.seq]
    elif isinstance(locator, FixedLocator):
        texts = fmt.format_ticks(list(locator.locs))
    else:
        return False
    return any(not _number(t) for t in (t.strip() for t in texts) if t)


def label_problem(label: str, axis: Any) -> str | None:
    """Why an axis label breaks rule 1, or None when it is fine."""
    text = label.strip()
    if not text:
        return "no label"
    if text in COUNT_LABELS or is_categorical(axis):
        return None
    unit = trailing_unit(text)
    if unit is None:
        return f"label {text!r} names no unit: end it with the unit in parentheses, e.g. '(eV/atom)', '(%)'"
    problem = unit_problem(unit)
    return f"label {text!r}: {problem}" if problem else None


def _has_data(ax: Any) -> bool:
    if not ax.get_visible() or not ax.axison:
        return False
    return any(a.get_visible() for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images))


def _panel_name(i: int, ax: Any) -> str:
    title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
    return f"panel {i + 1}" + (f" {title.splitlines()[0]!r}" if title else "")


def _legend_problem(legend: Any) -> str | None:
    n = len(legend.get_texts()) if legend is not None else 0
    if n > MAX_LEGEND_ENTRIES:
        return f"legend has {n} entries (at most {MAX_LEGEND_ENTRIES}: split the series over panels)"
    return None


def problems(fig: Any) -> list[str]:
    """Every break of rules 1 and 2 in a drawn figure, each naming its panel."""
    out: list[str] = []
    for i, ax in enumerate(fig.axes):
        colorbar = getattr(ax, "_colorbar", None)
        if colorbar is not None:
            axis = colorbar.long_axis
            problem = label_problem(axis.get_label().get_text(), axis)
            if problem:
                out.append(f"colorbar ({_panel_name(i, ax)}): {problem}")
            continue
        if _has_data(ax):
            for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
                if not axis.get_visible():
                    continue
                problem = label_problem(axis.get_label().get_text(), axis)
                if problem:
                    out.append(f"{_panel_name(i, ax)}, {name} axis: {problem}")
        problem = _legend_problem(ax.get_legend())
        if problem:
            out.append(f"{_panel_name(i, ax)}: {problem}")
    for legend in fig.legends:
        problem = _legend_problem(legend)
        if problem:
            out.append(f"figure legend: {problem}")
    return out


def _raise(name: str, found: Iterable[str]) -> None:
    found = list(found)
    if found:
        raise FigureQualityError(f"figure {name!r} is not fit to publish:\n  " + "\n  ".join(found))


def check(fig: Any, name: str) -> None:
    """Raise :class:`FigureQualityError` on any break of rules 1 and 2 (figure ``name``)."""
    _raise(name, problems(fig))


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG file's IHDR chunk (the first chunk, bytes 16–24)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise FigureQualityError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def check_png(path: str | Path, name: str) -> None:
    """Raise :class:`FigureQualityError` when the PNG at ``path`` is over :data:`MAX_PIXELS` on a side."""
    width, height = png_size(path)
    if width > MAX_PIXELS or height > MAX_PIXELS:
        _raise(
            name,
            [
                f"image is {width} × {height} px, over {MAX_PIXELS} px on a side at {DPI} dpi "
                f"({width / DPI:.1f} × {height / DPI:.1f} in): fewer or smaller panels"
            ],
        )
