"""The Berkeley report's Tables 2 and 3 (Deng, Park & Sy, layer freezing) beside ours, cell by cell.

A study in the report's own setting (``config/berkeley-cpu.yaml``: band gap, 1,000 training /
1,000 validation / 1,000 test crystals, a 4-convolution CGCNN, the embedding and the first 1, 2
or 3 convolutions frozen with the rest re-initialised, 10 seeds) is published as a study folder
(``snakemake docs/results/berkeley-cpu/summary.md --configfile config/berkeley-cpu.yaml``). This
module reads that folder's ``tables/metrics.csv`` and the study's configuration and writes:

* ``tables/berkeley_tables.csv``: per table (2, 3), source row and frozen convolutions, the
  report's test MAE (eV) and its change against the report's baseline, our mean test MAE with its
  95 % t interval over seeds, and our paired change against scratch of the same seeds (mean
  difference, 95 % CI, raw two-sided p of the paired t-test, and Holm's p over the
  :data:`FAMILY` of every source × freeze cell: exploration, outside the papers' claims family);
* ``figures/berkeley_tables.png``: the two tables as annotated heatmaps, the report's and ours
  side by side (colour: change against the baseline, %);
* with ``--page``, the block of a results page between :data:`PAGE_BEGIN` and :data:`PAGE_END`.

Each source of the configuration is matched to a row of the report by what it was pretrained on:
a multi-task source is the report's ``combined``; K_VRH ``bulk modulus``; G_VRH ``shear
modulus``; of the ΔEf sources, the largest is Table 2's ``formation energy`` and one of the
combined source's size Table 3's. The report's numbers (:data:`PAPER`) are a committed copy of
its Tables 2 and 3 (checked against the reference compilation of the papers by the tests where
that file is present).

    python -m tlcgcnn.report berkeley config/berkeley-cpu.yaml docs/results/berkeley-cpu --page docs/results.md
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis.stats import benjamini_hochberg, holm, paired, read_table
from tlcgcnn.report.backbones import block_is, write_block
from tlcgcnn.report.claims import ReportError
from tlcgcnn.report.paper_claims import _t_interval
from tlcgcnn.utils import fileio as io

FAMILY = "berkeley_freeze"
TABLE = "berkeley_tables.csv"
FIGURE = "berkeley_tables.png"
PAGE_BEGIN = "<!-- berkeley:begin -->"
PAGE_END = "<!-- berkeley:end -->"
SOURCES_BEGIN = "<!-- berkeley-sources:begin -->"
SOURCES_END = "<!-- berkeley-sources:end -->"
SOURCES_TABLE = "berkeley_sources.csv"
SOURCES_FIGURE = "berkeley_sources.png"
BASELINE = 0.812  # eV, Table 2's baseline (a CGCNN trained from scratch)
# the report's test MAE (eV) of the band gap with the embedding + 1, 2, 3 convolutions frozen
PAPER: dict[tuple[str, str], tuple[float, float, float]] = {
    ("2", "formation energy"): (0.797, 0.765, 0.865),
    ("2", "bulk modulus"): (0.776, 0.897, 0.956),
    ("2", "shear modulus"): (0.846, 0.993, 0.988),
    ("2", "combined"): (0.820, 0.850, 0.870),
    ("3", "combined"): (0.820, 0.850, 0.870),
    ("3", "formation energy"): (1.022, 1.142, 1.437),
}
ROWS = ("formation energy", "bulk modulus", "shear modulus", "combined")
SIZES = {"formation energy": 28046, "bulk modulus": 2041, "shear modulus": 2041, "combined": 7042}
COLUMNS = (
    "table",
    "row",
    "source",
    "source_size",
    "freeze",
    "mode",
    "paper_mae",
    "paper_change_pct",
    "n_seeds",
    "mae",
    "mae_ci_low",
    "mae_ci_high",
    "scratch_mae",
    "mean_diff",
    "ci_low",
    "ci_high",
    "change_pct",
    "p_value",
    "p_holm",
    "q_bh",
)


def source_rows(config_path: str | Path, metrics: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """Each source of the configuration that the runs fine-tuned, with its (table, row) places."""
    from tlcgcnn.config import load

    cfg = load(config_path)
    used = set(metrics["pretrained"].dropna().astype(str))
    size = metrics.dropna(subset=["pretrained"]).groupby("pretrained")["pretrain_size"].first()
    kind: dict[str, str] = {}
    for src in cfg.pretrain_sources():
        if src.name not in used:
            continue
        t = src.target
        if t.properties:
            kind[src.name] = "combined"
        elif t.property == "k_vrh":
            kind[src.name] = "bulk modulus"
        elif t.property == "g_vrh":
            kind[src.name] = "shear modulus"
        elif t.property == "formation_energy_per_atom":
            kind[src.name] = "formation energy"
        else:
            raise ReportError(f"{config_path}: source {src.name} ({t.property}) is none of the report's sources")
    out: dict[str, list[tuple[str, str]]] = {n: [] for n in kind}
    ef = [n for n, k in kind.items() if k == "formation energy"]
    combined = [n for n, k in kind.items() if k == "combined"]
    for n, k in kind.items():
        if k != "formation energy":
            out[n].append(("2", k))
        if k == "combined":
            out[n].append(("3", k))
    if ef:
        largest = max(ef, key=lambda n: float(size[n]))
        out[largest].append(("2", "formation energy"))
        for n in ef:
            if combined and n != largest and float(size[n]) == float(size[combined[0]]):
                out[n].append(("3", "formation energy"))
    return {n: places for n, places in out.items() if places}


def _interval(v: np.ndarray) -> tuple[float, float]:
    """The 95 % t interval of the mean of ``v`` (NaN without spread)."""
    _, lo, hi, _ = _t_interval(v)
    return lo, hi


def tables(metrics: pd.DataFrame, places: dict[str, list[tuple[str, str]]]) -> pd.DataFrame:
    """One row per (table, source row, frozen convolutions) that ran, plus each table's baseline
    (``row`` "baseline", freeze 0): the report's numbers and ours (see the module docstring)."""
    runs = metrics[metrics["stage"].astype(str).eq("finetune")]
    if runs["target"].nunique() != 1 or runs["size"].astype(str).nunique() != 1:
        raise ReportError("the report's tables are one target at one size; these runs hold several")
    scratch = runs[runs["mode"].eq("scratch")].set_index("seed")["error"].astype(float)
    if scratch.empty:
        raise ReportError("no scratch runs: the report's baseline is a CGCNN from scratch")
    rows = []
    lo, hi = _interval(scratch.to_numpy())
    for table in ("2", "3"):
        base = {"table": table, "row": "baseline", "source": "", "source_size": math.nan, "freeze": 0}
        rows.append(
            {
                **base,
                "mode": "scratch",
                "paper_mae": BASELINE,
                "paper_change_pct": 0.0,
                "n_seeds": len(scratch),
                "mae": float(scratch.mean()),
                "mae_ci_low": lo,
                "mae_ci_high": hi,
                "scratch_mae": float(scratch.mean()),
            }
        )
    for source, where in places.items():
        for table, row in where:
            ran = runs[runs["pretrained"].astype(str).eq(source)]
            for freeze, cell in ran.groupby(ran["freeze"].astype(int)):
                if not 1 <= freeze <= 3:
                    continue
                mine = cell.set_index("seed")["error"].astype(float)
                both = pd.concat([mine.rename("mode"), scratch.rename("scratch")], axis=1, join="inner")
                test = paired(both["scratch"].to_numpy(), both["mode"].to_numpy())
                lo, hi = _interval(both["mode"].to_numpy())
                paper_mae = PAPER[(table, row)][freeze - 1]
                rows.append(
                    {
                        "table": table,
                        "row": row,
                        "source": source,
                        "source_size": float(cell["pretrain_size"].iloc[0]),
                        "freeze": freeze,
                        "mode": str(cell["mode"].iloc[0]),
                        "paper_mae": paper_mae,
                        "paper_change_pct": 100.0 * (paper_mae - BASELINE) / BASELINE,
                        "n_seeds": len(both),
                        "mae": float(both["mode"].mean()),
                        "mae_ci_low": lo,
                        "mae_ci_high": hi,
                        "scratch_mae": float(both["scratch"].mean()),
                        "mean_diff": test["mean_diff"],
                        "ci_low": test["ci_low"],
                        "ci_high": test["ci_high"],
                        "change_pct": 100.0 * test["mean_diff"] / float(both["scratch"].mean()),
                        "p_value": test["p_value"],
                    }
                )
    out = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    # every source x freeze cell once (Table 3's combined row repeats Table 2's test)
    once = out["row"].ne("baseline") & ~out.duplicated(["source", "freeze"])
    p = out.loc[once, "p_value"].to_numpy(float)
    out.loc[once, "p_holm"], out.loc[once, "q_bh"] = holm(p), benjamini_hochberg(p)
    adjusted = ["p_holm", "q_bh"]
    out[adjusted] = out.groupby(["source", "freeze"])[adjusted].transform("first")  # the repeat takes its twin's
    order = {r: i for i, r in enumerate(("baseline", *ROWS))}
    out = out.sort_values(["table", "row", "freeze"], key=lambda c: c.map(order) if c.name == "row" else c)
    return out.reset_index(drop=True)


def _row_label(row: str, size: float) -> str:
    if row == "baseline":
        return "baseline (scratch)"
    return f"{row}, {size:,.0f}" if math.isfinite(size) else row


def draw(tab: pd.DataFrame, png: str | Path) -> None:
    """Both tables as annotated heatmaps: the report's (one run each) and ours (mean of the seeds,
    Holm p within :data:`FAMILY`); colour = change against the baseline (%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from tlcgcnn.report.figures.style import save

    limit = 30.0
    family = int(tab[tab["row"].ne("baseline")].drop_duplicates(["source", "freeze"]).shape[0])
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.4), layout="constrained", height_ratios=(5, 3))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    image = None
    for r, table in enumerate(("2", "3")):
        sub = tab[tab["table"].eq(table)]
        base = sub[sub["row"].eq("baseline")].iloc[0]
        body = sub[sub["row"].ne("baseline")]
        labels = list(dict.fromkeys(body["row"]))
        for c, who in enumerate(("paper", "ours")):
            ax = axes[r, c]
            grid = np.full((len(labels), 3), np.nan)
            text = [["" for _ in range(3)] for _ in labels]
            for i, row in enumerate(labels):
                if who == "paper":  # every cell of the report's row, run here or not
                    for j, mae in enumerate(PAPER[(table, row)]):
                        grid[i, j] = 100.0 * (mae - BASELINE) / BASELINE
                        text[i][j] = f"{mae:.3f}\n{grid[i, j]:+.0f} %"
                    continue
                for cell in body[body["row"].eq(row)].itertuples():
                    j = int(cell.freeze) - 1
                    grid[i, j] = cell.change_pct
                    star = " ★" if cell.p_holm < 0.05 else ""
                    text[i][j] = f"{cell.mae:.3f}\n{cell.change_pct:+.1f} %{star}"
            image = ax.imshow(np.clip(grid, -limit, limit), cmap="RdBu_r", norm=norm, aspect="auto")
            for i in range(len(labels)):
                for j in range(3):
                    if text[i][j]:  # white on the darkest cells
                        dark = abs(grid[i, j]) > 0.6 * limit
                        ax.text(
                            j, i, text[i][j], ha="center", va="center", fontsize=8, color="white" if dark else "black"
                        )
            ax.set_xticks(range(3), ["emb + 1 conv", "emb + 2 conv", "emb + 3 conv"], fontsize=8)
            ax.set_xlabel("frozen layers")
            ax.set_ylabel("pretraining source, crystals")
            if who == "paper":
                names = [
                    f"{row}, {SIZES[row]:,}" if table == "2" or row == "combined" else f"{row}, 7,042" for row in labels
                ]
                ax.set_yticks(range(len(labels)), names, fontsize=8)
                ax.set_title(f"Table {table}, Berkeley report: test MAE (eV), baseline {BASELINE:.3f}", fontsize=9)
            else:
                sizes = body.drop_duplicates("row").set_index("row")["source_size"]
                ax.set_yticks(range(len(labels)), [_row_label(row, float(sizes[row])) for row in labels], fontsize=8)
                ax.set_title(
                    f"Table {table}, ours ({int(base.n_seeds)} seeds): test MAE (eV), scratch {base.mae:.3f}",
                    fontsize=9,
                )
            ax.grid(False)
    fig.colorbar(image, ax=axes, label="change vs baseline (%)", shrink=0.8)
    fig.suptitle(
        "Band gap, n = 1,000: layer freezing by pretraining source "
        f"(red: worse than the baseline; ★ Holm p < 0.05 over the {family} cells run)",
        fontsize=10,
    )
    save(fig, str(png))
    plt.close(fig)


def _source_label(name: str, places: dict[str, list[tuple[str, str]]]) -> str:
    table, row = places[name][-1]
    return f"{row} (Table 3, equal size)" if table == "3" and row == "formation energy" else row


def sources(run_dir: str | Path, places: dict[str, list[tuple[str, str]]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pretrained sources of a run folder (``results/<name>``): per source its report row,
    what it learnt, its crystals, its own test MAE per property, its best epoch, the epochs it
    ran and whether it converged (:mod:`tlcgcnn.analysis.convergence`), from each source's
    ``pretrain/<name>/metrics.json`` and checkpoint; and the training histories by name."""
    import torch

    from tlcgcnn.analysis.convergence import of_checkpoint

    rows, histories = [], {}
    for name in places:
        folder = Path(run_dir) / "pretrain" / name
        if not (folder / "metrics.json").is_file():
            raise ReportError(f"{folder / 'metrics.json'}: not found (has source {name} been pretrained?)")
        m = io.read_json(folder / "metrics.json")
        ckpt = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        verdict = of_checkpoint(ckpt)
        props = [str(p) for p in (ckpt["target"].get("properties") or [ckpt["target"]["property"]])]
        maes = {p: float(m.get(f"mae_{p}", m["mae"] if len(props) == 1 else math.nan)) for p in props}
        rows.append(
            {
                "source": name,
                "row": _source_label(name, places),
                "properties": " + ".join(props),
                "n_train": int(m["n_train"]),
                "n_val": int(m["n_val"]),
                "n_test": int(m["n_test"]),
                **{f"test_mae_{p}": v for p, v in maes.items()},
                "best_epoch": int(m["best_epoch"]),
                "epochs_run": int(m["epochs_run"]),
                "converged": verdict.text() if verdict else "unknown (no history)",
                "seconds": float(m["seconds"]),
                "device": str(m.get("device", "")),
                "hardware": str(m.get("hardware", "")),
            }
        )
        if verdict is not None:
            histories[name] = {
                "val": [float(v) for v in ckpt["history"]["val_mae"]],
                "verdict": verdict,
                "multitask": len(props) > 1,
                "property": props[0],
            }
    return pd.DataFrame(rows), histories


def draw_sources(tab: pd.DataFrame, histories: dict[str, Any], png: str | Path) -> None:
    """Each source's validation curve (its own units; a multi-task source's normalised mean),
    the best epoch marked and the last 10 % of the epochs shaded (what the convergence verdict
    reads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcgcnn.data.properties import PROPERTIES
    from tlcgcnn.report.figures.style import save

    names = [n for n in tab["source"] if n in histories]
    ncol = min(3, max(1, len(names)))
    nrow = math.ceil(len(names) / ncol) or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.9 * nrow), squeeze=False, layout="constrained")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):
        h, r = histories[name], tab.set_index("source").loc[name]
        c, val = h["verdict"], h["val"]
        ax.plot(np.arange(len(val)), val, lw=1.2, color="C0")
        ax.plot([c.best_epoch], [val[c.best_epoch]], "o", color="C3", ms=4)
        ax.axvspan(c.epochs_run - c.tail_epochs - 0.5, c.epochs_run - 0.5, color="C0", alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        if h["multitask"]:
            ax.set_ylabel("validation MAE, normalised (dimensionless)")
        else:
            ax.set_ylabel(f"validation MAE ({PROPERTIES[h['property']].unit})")
        ax.set_title(f"{name}: {r['row']}, {int(r['n_train']):,} crystals", fontsize=9)
    fig.suptitle(
        "Pretraining sources: validation curve (dot: best epoch; shaded: last 10 % of the epochs)", fontsize=10
    )
    save(fig, str(png))
    plt.close(fig)


def sources_block(tab: pd.DataFrame) -> str:
    """The results page's table of the sources (own test MAE in each property's units)."""
    from tlcgcnn.data.properties import PROPERTIES

    maes = [c for c in tab.columns if c.startswith("test_mae_")]
    lines = [
        "| source | report row | learnt | training crystals | own test MAE | best epoch / run | converged |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in tab.to_dict("records"):
        own = ", ".join(
            f"{c.removeprefix('test_mae_')} {r[c]:.3g} {PROPERTIES[c.removeprefix('test_mae_')].unit}"
            for c in maes
            if isinstance(r[c], float) and math.isfinite(r[c])
        )
        lines.append(
            f"| {r['source']} | {r['row']} | {r['properties']} | {r['n_train']:,} | {own} "
            f"| {r['best_epoch']} / {r['epochs_run']} | {r['converged']} |"
        )
    return "\n".join(lines)


def _fmt_p(p: float) -> str:
    from tlcgcnn.report.summary import fmt_p

    return fmt_p(p) if np.isfinite(p) else "–"


def page_block(tab: pd.DataFrame) -> str:
    """The results page's table: per table, row and freeze the report's MAE and ours."""
    lines = [
        "| table | source (our crystals) | frozen | report MAE (eV) | ours MAE [95 % CI] (eV) "
        "| ours vs scratch [95 % CI] | p | p Holm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in tab.itertuples():
        if r.row == "baseline":
            lines.append(
                f"| {r.table} | baseline (scratch) | – | {r.paper_mae:.3f} | {r.mae:.3f} [{r.mae_ci_low:.3f}, "
                f"{r.mae_ci_high:.3f}] | – | – | – |"
            )
            continue
        lines.append(
            f"| {r.table} | {r.row} ({r.source}, {r.source_size:,.0f}) | {int(r.freeze)} | {r.paper_mae:.3f} "
            f"({r.paper_change_pct:+.0f} %) | {r.mae:.3f} [{r.mae_ci_low:.3f}, {r.mae_ci_high:.3f}] "
            f"| {r.change_pct:+.1f} % [{100 * r.ci_low / r.scratch_mae:+.1f}, {100 * r.ci_high / r.scratch_mae:+.1f}] "
            f"| {_fmt_p(r.p_value)} | {_fmt_p(r.p_holm)} |"
        )
    return "\n".join(lines)


def read(folder: str | Path) -> pd.DataFrame:
    path = Path(folder) / "tables" / TABLE
    if not path.is_file():
        raise ReportError(f"{path}: not found (run python -m tlcgcnn.report berkeley first)")
    return pd.read_csv(
        path, dtype={"table": str, "row": str, "source": str, "mode": str}, keep_default_na=False, na_values=[""]
    )


def publish(config_path: str | Path, folder: str | Path, run_dir: str | Path | None = None) -> pd.DataFrame:
    """``tables/berkeley_tables.csv`` and ``figures/berkeley_tables.png`` in the study folder;
    with ``run_dir`` (the run's ``results/<name>``, which holds the source checkpoints) also
    ``tables/berkeley_sources.csv`` and ``figures/berkeley_sources.png``."""
    path = Path(folder) / "tables" / "metrics.csv"
    if not path.is_file():
        raise ReportError(f"{path}: not found (is {folder} the published Berkeley-setting study?)")
    metrics = read_table(path)
    places = source_rows(config_path, metrics)
    tab = tables(metrics, places)
    io.write_csv(tab, Path(folder) / "tables" / TABLE)
    (Path(folder) / "figures").mkdir(parents=True, exist_ok=True)
    draw(tab, Path(folder) / "figures" / FIGURE)
    if run_dir is not None:
        src, histories = sources(run_dir, places)
        io.write_csv(src, Path(folder) / "tables" / SOURCES_TABLE)
        draw_sources(src, histories, Path(folder) / "figures" / SOURCES_FIGURE)
    return tab


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tlcgcnn.report berkeley", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="the study's configuration, e.g. config/berkeley-cpu.yaml")
    ap.add_argument("folder", help="the published study folder, e.g. docs/results/berkeley-cpu")
    ap.add_argument("--page", help="a results page whose block to rewrite, e.g. docs/results.md")
    ap.add_argument("--run", help="the run's folder with the source checkpoints, e.g. results/berkeley-cpu")
    args = ap.parse_args(argv)
    try:
        tab = publish(args.config, args.folder, args.run)
    except ReportError as err:
        print(f"error: {err}")
        return 2
    print(f"{len(tab)} rows -> {Path(args.folder) / 'tables' / TABLE}")
    if args.page:
        blocks = [(page_block(read(args.folder)), PAGE_BEGIN, PAGE_END)]
        src = Path(args.folder) / "tables" / SOURCES_TABLE
        if src.is_file():
            blocks.append((sources_block(pd.read_csv(src)), SOURCES_BEGIN, SOURCES_END))
        for block, begin, end in blocks:
            write_block(args.page, block, begin, end)
            if not block_is(args.page, block, begin, end):
                return 1
    return 0
