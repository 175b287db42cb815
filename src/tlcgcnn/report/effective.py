"""Effective data of a published study: how many scratch crystals each source is worth.

``python -m tlcgcnn.report effective FOLDER PAGE`` computes
:func:`tlcgcnn.analysis.effective.by_source` on ``FOLDER/tables/metrics.csv`` (every target
with a scratch curve, every pretraining source, its mode chosen on validation at each size),
writes ``FOLDER/tables/effective_data.csv`` and the block of ``PAGE`` between
``<!-- effective:begin -->`` and ``<!-- effective:end -->``: the TL-CGCNN targets' multipliers
at their smallest and a middle size. :func:`check` recomputes the point estimates from the
metrics and the block from the CSV (the bootstrap intervals use a fixed seed, so
:func:`write` reproduces them exactly).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tlcgcnn.analysis.effective import by_source
from tlcgcnn.utils import fileio as io

BEGIN = "<!-- effective:begin -->"
END = "<!-- effective:end -->"
CSV = Path("tables") / "effective_data.csv"
N_BOOT = 1000
# the page's table: TL-CGCNN's targets and the zoo's sources (the full table is the CSV)
PAGE_TARGETS = ("log_kvrh", "hse_gap", "gllbsc_gap", "gap_nonmetal", "ef_nm")
PAGE_SOURCES = ("zoo_ef", "zoo_eg", "zoo_mt", "ef_nonmetal")


class EffectiveError(ValueError):
    """The page or the folder cannot be read."""


def compute(folder: str | Path, n_boot: int = N_BOOT) -> pd.DataFrame:
    """The effective-data table of a published folder's runs."""
    return by_source(pd.read_csv(Path(folder) / "tables" / "metrics.csv"), n_boot=n_boot)


def _mult(r: pd.Series) -> str:
    if r["bound"] == "≥":  # the bound and a model-based guess beyond the data
        guess = r["n_effective_extrapolated"]
        extra = f" (power law: ~{guess / (r['n_effective'] / r['multiplier']):.0f}×)" if np.isfinite(guess) else ""
        return f"≥ {r['multiplier']:.1f}×{extra}"
    if r["bound"] == "≤":
        return f"≤ {r['multiplier']:.2f}×"
    return f"{r['multiplier']:.2f}× [{r['multiplier_low']:.2f}, {r['multiplier_high']:.2f}]"


def block(df: pd.DataFrame) -> str:
    """The page's table: per TL-CGCNN target and zoo source, the multiplier at each size."""
    sub = df[df["target"].isin(PAGE_TARGETS) & df["source"].isin(PAGE_SOURCES)].copy()
    sub["size"] = sub["size"].astype(str)
    lines = [
        "| target | source | " + " | ".join(f"n = {s}" for s in ("50", "100", "200", "500", "1000", "2000")) + " |",
        "|---|---|" + "---|" * 6,
    ]
    for target in PAGE_TARGETS:
        for source in PAGE_SOURCES:
            rows = sub[sub["target"].eq(target) & sub["source"].eq(source)].set_index("size")
            if rows.empty:
                continue
            cells = [_mult(rows.loc[s]) if s in rows.index else "" for s in ("50", "100", "200", "500", "1000", "2000")]
            lines.append(f"| {target} | {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markers(text: str, page: Path) -> tuple[int, int]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise EffectiveError(f"{page}: needs one {BEGIN} followed by one {END} (where the effective-data table goes)")
    return text.index(BEGIN) + len(BEGIN), text.index(END)


def write(folder: str | Path, page: str | Path, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Write ``FOLDER/tables/effective_data.csv`` and the page's block from it."""
    df = compute(folder, n_boot=n_boot)
    io.write_csv(df, Path(folder) / CSV)
    df = pd.read_csv(Path(folder) / CSV, keep_default_na=False, na_values=[""])
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(text, path)
    new = text[:start] + "\n" + block(df) + "\n" + text[end:]
    if new != text:
        io.write_text(path, new)
    return df


def check(folder: str | Path, page: str | Path) -> list[str]:
    """Problems: the CSV's point estimates against a fresh computation (no bootstrap), and the
    page's block against the CSV."""
    problems = []
    csv = pd.read_csv(Path(folder) / CSV, keep_default_na=False, na_values=[""])
    fresh = compute(folder, n_boot=1)
    key = ["target", "source", "size"]
    a = csv.assign(size=csv["size"].astype(str)).set_index(key).sort_index()
    b = fresh.assign(size=fresh["size"].astype(str)).set_index(key).sort_index()
    if list(a.index) != list(b.index):
        problems.append(f"{folder / CSV}: its (target, source, size) rows differ from the metrics'")
    else:
        for col in ("mode", "bound"):
            bad = a[col].fillna("").astype(str).ne(b[col].fillna("").astype(str))
            if bad.any():
                problems.append(f"{folder / CSV}: {col} differs at {bad[bad].index[0]}")
        for col in ("mae", "n_effective", "multiplier"):
            if not np.allclose(a[col].astype(float), b[col].astype(float), rtol=1e-9, equal_nan=True):
                problems.append(f"{folder / CSV}: {col} differs from the metrics'")
    text = Path(page).read_text(encoding="utf-8")
    start, end = _markers(text, Path(page))
    if text[start:end].strip() != block(csv).strip():
        problems.append(f"{page}: the effective-data table differs from {folder / CSV} (make results-papers)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlcgcnn.report effective",
        description="How many scratch training crystals each pretraining source of a published study is worth "
        "(tlcgcnn.analysis.effective): FOLDER/tables/effective_data.csv and PAGE's table between "
        f"{BEGIN} and {END}.",
    )
    parser.add_argument("folder", help="the published folder, e.g. docs/results/paper-cpu")
    parser.add_argument("page", help="the results page, e.g. docs/results.md")
    parser.add_argument("--check", action="store_true", help="only check the CSV and the page")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    try:
        if not args.check:
            df = write(folder, args.page)
            print(f"{folder / CSV}: {len(df)} rows; {args.page}: effective-data table written")
        problems = check(folder, args.page)
    except (EffectiveError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0
