"""How far an unfinished run is, how much compute it has left, and what its finished cells
say so far.

A study such as ``config/paper-cpu.yaml`` runs for hours, over several sessions. This reads
the run's results folder (never writes to it) and answers three questions:

* **Cells**: per target and training size, how many fine-tuning cells (target, size, mode)
  are finished (their ``metrics.json`` is written), and how many seeds the unfinished ones
  have.
* **Time left**: each unfinished cell's seeds left times the time per seed of the finished
  cells of the same rule and size (their benchmark files and seeds' own times; else the
  nearest size, scaled linearly with the training size). Cells timed on another CPU (a
  results folder copied from another machine) are scaled to this one by the ratio of time
  per epoch seen on cells of the same rule and size timed on both. Pretraining and the
  report's jobs are not estimated.
* **Claims so far**: each of the config's ``report.claims`` whose cells are all finished,
  tested as the report will test it (:func:`tlcgcnn.report.claims.build_claims`) on the finished
  cells. These are **interim**: the Holm correction runs over the finished cells' tests
  only, so the published p-values (over every cell) can only be larger or equal: a family
  that grows never lowers a Holm-adjusted p-value, and a finished cell's runs do not
  change. A claim waiting for cells lists them.

Run: ``python -m tlcgcnn.report.progress --configfile config/paper-cpu.yaml`` (``--out FILE``
writes the Markdown there too).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.analysis import stats
from tlcgcnn.config import Cell, Config, load
from tlcgcnn.report.claims import CLAIM_COLUMNS, ReportError, build_claims, selected_source
from tlcgcnn.report.provenance import cpu_model
from tlcgcnn.report.summary import claims_table
from tlcgcnn.utils import fileio as io
from tlcgcnn.utils.layout import Layout

#: the rule that runs a cell of each kind (rules/finetune.smk, rules/frozen.smk); all of
#: them write their benchmark files under benchmarks/finetune/<target>/n<size>/<mode>.tsv
KIND_RULE = {"gnn": "finetune", "baseline": "finetune_baseline", "frozen": "finetune_frozen"}


def cell_status(cfg: Config, results: Path, cpu: str | None = None) -> pd.DataFrame:
    """One row per cell of the config: ``done`` (its metrics.json exists: the rule writes
    it last), ``seeds`` and ``seeds_done`` (an unfinished cell's seeds with their own
    ``runs/s<seed>/metrics.json``), ``seed_s``: a finished cell's wall time per seed (its
    benchmark file's time, or the sum of its seeds' own training times where larger: a job
    resumed after a stop is timed for its last seeds only; NaN where not timed),
    ``epoch_s``: the median of its seeds' training time per epoch, and ``this_cpu``: whether
    every one of its records names ``cpu`` (default: this machine's,
    :func:`provenance.cpu_model`) as its chip (records older than the chip field name none:
    another CPU, as far as known)."""
    cpu = cpu if cpu is not None else cpu_model()
    rows = []
    lay = Layout(results)
    for c in cfg.cells():
        cell = (c.target.name, c.size, c.mode.name)
        done = lay.cell_metrics(*cell).exists()
        seeds_done = len(c.seeds) if done else sum(lay.seed_metrics(*cell, s).exists() for s in c.seeds)
        seed_s, epoch_s, this_cpu = _seconds_per_seed(lay, c, cpu) if done else (math.nan, math.nan, False)
        rows.append(
            {
                "target": c.target.name,
                "size": c.size,
                "mode": c.mode.name,
                "kind": c.kind,
                "seeds": len(c.seeds),
                "seeds_done": seeds_done,
                "done": done,
                "seed_s": seed_s,
                "epoch_s": epoch_s,
                "this_cpu": this_cpu,
            }
        )
    return pd.DataFrame(rows)


def _seconds_per_seed(lay: Layout, c: Cell, cpu: str | None) -> tuple[float, float, bool]:
    cell = (c.target.name, c.size, c.mode.name)
    records = io.read_json(lay.cell_metrics(*cell))
    runs = records if isinstance(records, list) else [records]
    this_cpu = bool(runs) and cpu is not None and all(r.get("hardware") == cpu for r in runs)
    path = lay.cell_benchmark(*cell)
    bench = pd.read_csv(path, sep="\t") if path.exists() else pd.DataFrame()
    job_s = float(bench["s"].iloc[-1]) if "s" in bench.columns and len(bench) else 0.0
    # a job resumed after a stop is timed for its last seeds only, while its seeds' own
    # training times (``seconds``) cover them all: the larger of the two, per seed
    trained = sum(float(r.get("seconds") or 0.0) for r in runs)
    seed_s = max(job_s, trained) / len(runs) if runs and max(job_s, trained) > 0 else math.nan
    epochs = [float(r["seconds"]) / float(r["epochs_run"]) for r in runs if r.get("seconds") and r.get("epochs_run")]
    return seed_s, (float(pd.Series(epochs).median()) if epochs else math.nan), this_cpu


def cpu_factor(cells: pd.DataFrame) -> tuple[float | None, int]:
    """This CPU's time per epoch over another CPU's (per epoch: early stopping makes the
    epochs per seed differ from cell to cell), for finished cells of one kind and size
    timed on both: the median over such groups of the ratio of their medians, and the
    number of groups (None, 0 where there is none)."""
    timed = cells[cells["done"] & cells["epoch_s"].notna()]
    ratios = []
    for _, g in timed.groupby([timed["kind"], timed["size"].astype(str)]):
        here, other = g[g["this_cpu"]], g[~g["this_cpu"]]
        if len(here) and len(other):
            ratios.append(float(here["epoch_s"].median()) / float(other["epoch_s"].median()))
    return (float(pd.Series(ratios).median()), len(ratios)) if ratios else (None, 0)


def _size_number(size: Any) -> float | None:
    return float(size) if isinstance(size, int | float) else None


def estimate_left(cells: pd.DataFrame) -> pd.DataFrame:
    """The unfinished cells with ``estimate_s``: their seeds not done times the median time
    per seed of finished cells of the same kind and size, else of the same kind at the
    nearest numeric size scaled by size / that size; ``basis`` says which (NaN and ``no
    finished ... cell`` where there is none). Times from another CPU are first scaled to
    this one by :func:`cpu_factor` where it is known."""
    factor, _ = cpu_factor(cells)
    timed = cells[cells["done"] & cells["seed_s"].notna()].copy()
    if factor is not None:
        timed.loc[~timed["this_cpu"], "seed_s"] *= factor
    left = cells[~cells["done"]].copy()
    est, basis = [], []
    for r in left.itertuples():
        todo = r.seeds - r.seeds_done
        same = timed[(timed["kind"] == r.kind) & (timed["size"].astype(str) == str(r.size))]
        if len(same):
            est.append(float(same["seed_s"].median()) * todo)
            basis.append(f"{len(same)} finished {r.kind} cells at n = {r.size}")
            continue
        kind = timed[timed["kind"] == r.kind]
        n = _size_number(r.size)
        sizes = sorted({s for s in (_size_number(x) for x in kind["size"]) if s}) if n else []
        if not sizes or n is None:
            est.append(math.nan)
            basis.append(f"no finished {r.kind} cell to compare with")
            continue
        near = min(sizes, key=lambda s: abs(math.log(s / n)))
        ref = kind[kind["size"].map(_size_number) == near]
        est.append(float(ref["seed_s"].median()) * n / near * todo)
        basis.append(f"{len(ref)} finished {r.kind} cells at n = {int(near)}, scaled to n = {int(n)}")
    left["estimate_s"] = est
    left["basis"] = basis
    return left


def claim_cells(cfg: Config, claim: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The cells a ``compare`` claim reads: its mode and its ``versus``, a ``selected:<source>``
    standing for every mode of that source the target runs (the protocol picks among them),
    and the baseline mode (the claims against it read its test)."""
    target, size = str(claim["target"]), claim["size"]
    names: list[str] = []
    for key in ("mode", "versus"):
        value = str(claim.get(key) or cfg.baseline)
        src = selected_source(value)
        if src is None:
            names.append(value)
        else:
            names.extend(m for m in cfg.target_modes(target) if cfg.modes[m].pretrained == src)
    names.append(cfg.baseline)
    return [(target, size, m) for m in dict.fromkeys(names)]


def interim_claims(cfg: Config, results: Path, cells: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The claims whose cells are finished, tested on the finished cells (``build_claims``
    with the Holm correction over what is finished), and ``(id, reason)`` of the others."""
    done = {(r.target, str(r.size), r.mode) for r in cells[cells["done"]].itertuples()}
    lay = Layout(results)
    files = [lay.cell_metrics(t, s, m) for t, s, m in sorted(done)]
    ready, waiting = [], []
    multitask_csv = lay.stats("multitask.csv")
    for c in cfg.claims():
        if c.get("kind") == "multitask":
            if multitask_csv.exists():
                ready.append(c)
            else:
                waiting.append((str(c["id"]), f"{multitask_csv} (the multi-task table) is not written yet"))
            continue
        missing = [f"{m} at n = {s}" for t, s, m in claim_cells(cfg, c) if (t, str(s), m) not in done]
        if missing:
            waiting.append((str(c["id"]), f"{c['target']}: waiting for {', '.join(missing)}"))
        else:
            ready.append(c)
    if not ready or not files:
        return pd.DataFrame(columns=list(CLAIM_COLUMNS)), waiting
    df = stats.collect(files)
    tests = stats.error_tests(df, baseline=cfg.baseline)
    protocol = stats.protocol_table(df, baseline=cfg.baseline, mode_order=list(cfg.modes))
    selected = stats.selected_tests(df, protocol, baseline=cfg.baseline)
    if len(selected):
        tests = pd.concat([tests, selected], ignore_index=True)
    multitask = stats.read_table(multitask_csv) if multitask_csv.exists() else None
    claims = build_claims(
        ready,
        tests,
        df,
        cfg.baseline,
        labels=cfg.target_labels(),
        protocol=protocol,
        multitask=multitask,
        sources=("finished cells' tests", "finished cells' metrics", "finished cells' protocol", str(multitask_csv)),
    )
    return claims, waiting


def _hours(seconds: float) -> str:
    return (
        f"{int(seconds // 3600)} h {int(round(seconds % 3600 / 60)):02d} min"
        if seconds >= 3600
        else f"{int(round(seconds / 60))} min"
    )


def progress_markdown(cfg: Config, results: Path, parallel: int = 1) -> str:
    """The Markdown report: cells per target and size, time left, interim claims.
    ``parallel``: how many jobs run at once (cores / threads per job), for the wall time."""
    cells = cell_status(cfg, results)
    if cells.empty:
        return f"# Progress of `{cfg.name}`\n\nThe config has no fine-tuning cells.\n"
    left = estimate_left(cells)
    n_done = int(cells["done"].sum())
    out = [
        f"# Progress of `{cfg.name}` ({results})",
        "",
        f"Fine-tuning cells: **{n_done} of {len(cells)} finished**; "
        f"seeds: {int(cells['seeds_done'].sum())} of {int(cells['seeds'].sum())}.",
        "",
    ]
    table = (
        cells.assign(size=cells["size"].astype(str))
        .groupby(["target", "size"], sort=False)
        .agg(done=("done", "sum"), cells=("done", "size"), seeds_done=("seeds_done", "sum"), seeds=("seeds", "sum"))
        .reset_index()
    )
    out += ["| target | n | cells finished | seeds finished |", "|---|---|---|---|"]
    out += [
        f"| {r.target} | {r.size} | {r.done} / {r.cells} | {r.seeds_done} / {r.seeds} |" for r in table.itertuples()
    ]
    known = left["estimate_s"].dropna()
    out += ["", "## Time left", ""]
    if left.empty:
        out.append("Every fine-tuning cell is finished.")
    else:
        total = float(known.sum())
        out.append(
            f"{len(left)} cells left; their job time, estimated from the finished cells' times: "
            f"**{_hours(total)}** (about {_hours(total / max(parallel, 1))} of wall time "
            f"with {parallel} job(s) at once). "
            "Pretraining and the report's own jobs are not counted."
        )
        factor, groups = cpu_factor(cells)
        if factor is not None:
            out.append(
                f"Times of cells run on another CPU are scaled by ×{factor:.2f}, this CPU's time per epoch over theirs "
                f"(median over {groups} groups of finished cells of one rule and size timed on both)."
            )
        unknown = left[left["estimate_s"].isna()]
        if len(unknown):
            out.append(f"Not estimated (no finished cell of their kind): {len(unknown)} cells.")
        per_kind = left.groupby("kind")["estimate_s"].agg(["size", "sum"]).reset_index()
        out += ["", "| rule | cells left | estimated job time |", "|---|---|---|"]
        out += [f"| {KIND_RULE[r.kind]} | {r.size} | {_hours(r.sum)} |" for r in per_kind.itertuples()]
    claims, waiting = interim_claims(cfg, results, cells)
    out += [
        "",
        "## Claims so far (interim)",
        "",
        "Tested on the finished cells only: the Holm correction covers the finished cells' tests, "
        "so these p-values are "
        "not the published ones. A finished cell's runs do not change and Holm's adjusted p-values only grow with "
        "the family, so a published p-value will be at least the one here: a claim not significant here stays so. "
        "Not a result until the run is finished and published.",
        "",
    ]
    if len(claims):
        out.append(claims_table(claims))
    else:
        out.append("No claim has all its cells finished yet.")
    if waiting:
        out += ["", "Waiting:", ""] + [f"* `{cid}`: {why}" for cid, why in waiting]
    return "\n".join(out) + "\n"


def default_parallel(cfg: Config, cores: int = 2) -> int:
    """Jobs at once: ``cores`` over the training threads per job, at least 1."""
    return max(1, cores // max(1, int(cfg.train.threads or 1)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tlcgcnn.report.progress", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", required=True, type=Path, help="the run's config (as given to Snakemake)")
    ap.add_argument("--results", type=Path, help="the run's results folder (default: results/<name>)")
    ap.add_argument(
        "--cores",
        type=int,
        default=2,
        help="the run's --cores: with train.threads, how many jobs run at once (for the wall time)",
    )
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    args = ap.parse_args(argv)
    try:
        cfg = load(args.configfile)  # a --configfile is the whole config, as in the Snakefile
    except (OSError, ValueError) as err:
        print(f"error: {args.configfile}: {err}", file=sys.stderr)
        return 2
    results = args.results or Layout.for_config(cfg.name).root
    if not results.is_dir():
        print(
            f"error: {results}: no results folder (has the run started? is this the repository root?)", file=sys.stderr
        )
        return 2
    parallel = default_parallel(cfg, args.cores)
    try:
        text = progress_markdown(cfg, results, parallel)
    except (ReportError, ValueError) as err:
        print(f"error: {results}: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        io.write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
