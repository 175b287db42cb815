"""What does a crystal vector know? A linear probe of a table of crystal vectors.

A backbone's frozen crystal vectors (``results/<name>/backbones/<backbone>/embeddings.parquet``:
``material_id`` and ``f0`` … ``f{w-1}``) serve the study's ridge / SVR modes. When they do badly on
a target, the first question is which physical quantity they fail to carry. The probe answers it:
ridge regression (features standardised, the penalty chosen by leave-one-out CV on the training
crystals) from the vectors to a property of the structure table, on random splits of the crystals
that have the property, with and without extra columns computed from the structure (:data:`EXTRA`).
A vector that predicts a quantity badly alone, and well with one extra column, lacks that column's
information.

It is a diagnostic on random splits of all labelled crystals, not the study's fixed cells: its
MAEs are not comparable with the study's test MAEs, only with each other.

``python -m tlcgcnn.analysis.probe STRUCTURES EMBEDDINGS... --property k_vrh --transform log10
--extra log_volume_per_atom`` prints one row per vector table and column set.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

EXTRA: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "log_volume_per_atom": lambda t: np.log(t["volume"].astype(float) / t["nsites"].astype(float)),
    "log_nsites": lambda t: np.log(t["nsites"].astype(float)),
}
"""Columns the probe can add to the vectors, computed from the structure table: the natural log
of the volume per atom (Å³), of the number of sites."""

TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"none": lambda y: y, "log10": np.log10}
ALPHAS = np.logspace(-3, 3, 13)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The probe's test MAE (in the transformed property's units) over ``seeds`` random splits:
    ``mae`` their mean, ``mae_sd`` their standard deviation; ``mae_mean`` predicting the training
    mean (the floor any feature must beat). ``vectors``: the vector table's name, or "" where only
    the extra columns were used."""

    vectors: str
    extra: tuple[str, ...]
    property: str
    transform: str
    n_train: int
    n_test: int
    seeds: int
    mae: float
    mae_sd: float
    mae_mean: float

    def columns_text(self) -> str:
        """What was fitted: the vectors, the extra columns, or both."""
        parts = [f"{self.vectors} vectors"] if self.vectors else []
        return " + ".join(parts + list(self.extra)) or "nothing"


class ProbeError(ValueError):
    """The probe cannot run: a missing column, an unknown extra column, too few crystals."""


def _target(table: pd.DataFrame, prop: str, transform: str) -> pd.Series:
    if prop not in table and prop not in EXTRA:
        raise ProbeError(f"the structure table has no column {prop!r}")
    if transform not in TRANSFORMS:
        raise ProbeError(f"transform {transform!r} is not one of {sorted(TRANSFORMS)}")
    y = pd.to_numeric(table[prop] if prop in table else EXTRA[prop](table), errors="coerce")
    keep = y.notna() & (y > 0 if transform == "log10" else True)
    return pd.Series(TRANSFORMS[transform](y[keep].to_numpy(float)), index=table.index[keep])


def design(table: pd.DataFrame, vectors: pd.DataFrame | None, extra: Sequence[str]) -> tuple[np.ndarray, pd.Index]:
    """The feature matrix of the table's crystals (rows in table order, those with a vector and
    finite extra columns) and the table index of its rows."""
    unknown = [e for e in extra if e not in EXTRA]
    if unknown:
        raise ProbeError(f"unknown extra columns {unknown}; known: {sorted(EXTRA)}")
    parts: list[pd.DataFrame] = []
    if vectors is not None:
        cols = [c for c in vectors.columns if c != "material_id"]
        merged = table[["material_id"]].merge(vectors, on="material_id", how="left", validate="many_to_one")
        parts.append(merged[cols].set_axis(table.index))
    if extra:
        parts.append(pd.DataFrame({e: EXTRA[e](table) for e in extra}, index=table.index))
    if not parts:
        raise ProbeError("nothing to fit: give vectors, extra columns or both")
    x = pd.concat(parts, axis=1).astype(float)
    ok = np.isfinite(x.to_numpy()).all(axis=1)
    return x.to_numpy()[ok], table.index[ok]


def probe(
    table: pd.DataFrame,
    prop: str,
    *,
    vectors: pd.DataFrame | None = None,
    name: str = "",
    extra: Sequence[str] = (),
    transform: str = "none",
    n_train: int = 2000,
    n_test: int = 4000,
    seeds: Sequence[int] = (0, 1, 2),
) -> ProbeResult:
    """Ridge from ``vectors`` (and/or ``extra`` columns) to ``prop`` of ``table``: the mean test MAE
    over one random split per seed (``n_train`` training crystals, up to ``n_test`` others for the
    test), each with its own standardisation and penalty."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_all = _target(table, prop, transform)
    x, rows = design(table.loc[y_all.index], vectors, extra)
    y = y_all.loc[rows].to_numpy(float)
    if len(y) < n_train + 10:
        raise ProbeError(f"{prop}: {len(y)} crystals have it and every feature; the probe needs n_train + 10")
    maes, floors, tests = [], [], 0
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(y))
        tr, te = order[:n_train], order[n_train : n_train + n_test]
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(x[tr], y[tr])
        maes.append(float(np.abs(model.predict(x[te]) - y[te]).mean()))
        floors.append(float(np.abs(y[te] - y[tr].mean()).mean()))
        tests = len(te)
    return ProbeResult(
        vectors=name if vectors is not None else "",
        extra=tuple(extra),
        property=prop,
        transform=transform,
        n_train=n_train,
        n_test=tests,
        seeds=len(seeds),
        mae=float(np.mean(maes)),
        mae_sd=float(np.std(maes, ddof=1)) if len(maes) > 1 else math.nan,
        mae_mean=float(np.mean(floors)),
    )


def markdown(results: Sequence[ProbeResult]) -> str:
    """The results as a Markdown table."""
    first = results[0]
    unit = f"log10 {first.property}" if first.transform == "log10" else first.property
    lines = [
        f"| features | probe MAE ({unit}) | predicting the mean | training / test crystals | splits |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.columns_text()} | {r.mae:.4f} ± {r.mae_sd:.4f} | {r.mae_mean:.4f} | {r.n_train} / {r.n_test} "
            f"| {r.seeds} |"
        )
    return "\n".join(lines)


def append_csv(results: Sequence[ProbeResult], path: str | Path) -> None:
    """Add ``results`` to a CSV (one row each, the :class:`ProbeResult` fields, ``extra`` joined
    by "+"), written atomically; rows of the same vectors, extra columns and property are replaced."""
    from tlcgcnn.utils import fileio as io

    rows = pd.DataFrame([{**asdict(r), "extra": "+".join(r.extra)} for r in results])
    old = pd.read_csv(path, keep_default_na=False) if Path(path).is_file() else rows.iloc[:0]
    keys = ["vectors", "extra", "property"]
    old = old[~old.set_index(keys).index.isin(rows.set_index(keys).index)]
    io.write_csv(pd.concat([old, rows], ignore_index=True), path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlcgcnn.analysis.probe",
        description="Linear probe: how well ridge on crystal vectors (with or without extra structure columns) "
        "predicts a property (tlcgcnn.analysis.probe).",
    )
    parser.add_argument("structures", help="the structure table, e.g. results/<name>/data/structures.parquet")
    parser.add_argument("embeddings", nargs="+", help="vector tables (material_id, f0, f1, ...): Parquet files")
    parser.add_argument(
        "--property", required=True, help=f"the table's column to predict, e.g. k_vrh, or one of {sorted(EXTRA)}"
    )
    parser.add_argument("--transform", default="none", choices=sorted(TRANSFORMS))
    parser.add_argument("--extra", nargs="*", default=[], choices=sorted(EXTRA), help="structure columns to add")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3, help="random splits (seeds 0 … N-1)")
    parser.add_argument("--csv", help="also append the rows to this CSV file (created with its header)")
    args = parser.parse_args(argv)
    table = pd.read_parquet(args.structures)
    kw = {"transform": args.transform, "n_train": args.n_train, "n_test": args.n_test, "seeds": range(args.seeds)}
    try:
        results = []
        for path in args.embeddings:
            vec = pd.read_parquet(path)
            name = Path(path).parent.name or Path(path).stem
            results.append(probe(table, args.property, vectors=vec, name=name, **kw))
            if args.extra:
                results.append(probe(table, args.property, vectors=vec, name=name, extra=args.extra, **kw))
        if args.extra:
            results.append(probe(table, args.property, extra=args.extra, **kw))
    except ProbeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(results))
    if args.csv:
        append_csv(results, args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
