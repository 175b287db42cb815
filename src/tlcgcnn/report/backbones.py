"""Universal-potential features against the study's CGCNN transfer, cell by cell.

A backbone run (``config/backbones-cpu.yaml``: CHGNet's crystal vectors + ridge / RF / SVR on
the study's targets, sizes and seeds) is paired with a published study folder
(``docs/results/paper-cpu``) seed by seed. Nothing of the study is re-trained: the pairing is
valid because both runs have the same training, validation and test crystals per (target,
size, seed), and :func:`check_same_cells` proves it before anything is compared. Every
(target, size, mode, seed) that the backbone run shares with the study (the descriptor SVR that
``backbones-cpu`` re-runs) must give the same test MAE, on the same table (``data_sha256``) and
test-set size; one mismatch stops the report, naming the cell.

The comparisons, one Holm family (:data:`FAMILY`) declared here before any backbone result
existed, BH q-values beside. Per (target, size), the backbone's estimator chosen on validation
(lowest mean validation score, :func:`tlcgcnn.report.figures.series.validation_scores`) is
tested, paired by seed, against:

* ``scratch``: CGCNN trained from scratch (the study's baseline);
* ``cgcnn_transfer``: the CGCNN transfer mode (every fine-tuning and frozen-feature mode of a
  trained CGCNN source in that cell) chosen on validation, the choice a user can make;
* ``cgcnn_transfer_best``: the CGCNN transfer mode with the lowest mean *test* MAE, an
  opponent chosen with hindsight (optimistic for CGCNN, so a backbone win over it is
  conservative);
* ``descriptors``: the composition-descriptor baseline (PLS, SVR, LASSO, RF) chosen on its
  cross-validation score.

:func:`effective_table` says how many scratch training crystals the backbone and the CGCNN
transfer are worth (:func:`tlcgcnn.analysis.effective.effective_data`).

``python -m tlcgcnn.report backbones RUN_METRICS STUDY OUT`` writes ``OUT/tables/``
(``metrics.csv``: the backbone run's records; ``comparison.csv``; ``effective_data.csv``;
``same_cells.csv``: the check), ``OUT/figures/backbone_learning_curves.png`` and
``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis.effective import effective_data, size_order
from tlcgcnn.analysis.stats import benjamini_hochberg, holm, paired
from tlcgcnn.report.figures.series import validation_scores

log = logging.getLogger(__name__)

FAMILY = "backbone_vs_cgcnn"
ALPHA = 0.05
SCRATCH = "scratch"
DESCRIPTOR_ESTIMATORS = ("pls", "svr", "lasso", "rf")
OPPONENTS = {
    "scratch": "CGCNN from scratch",
    "cgcnn_transfer": "CGCNN transfer chosen on validation",
    "cgcnn_transfer_best": "best CGCNN transfer by test MAE (hindsight)",
    "descriptors": "descriptor baseline chosen on CV",
}
KEYS = ["target", "size", "seed"]


class ComparisonError(ValueError):
    """The backbone run cannot be paired with the study (different cells, data or seeds)."""


@dataclass(frozen=True, slots=True)
class Cells:
    """The records of both runs, one per (target, size, mode, seed), with the columns needed.

    ``backbone``: the backbone run's records whose source is a universal potential;
    ``study``: the published study's records of the same targets."""

    backbone: pd.DataFrame
    study: pd.DataFrame


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["size"] = out["size"].astype(str)
    out["seed"] = out["seed"].astype(int)
    if "error" not in out:
        out["error"] = out["mae"]
    return out


def is_backbone(df: pd.DataFrame) -> pd.Series:
    """Records whose source is a universal-potential backbone (their ``backbone`` is set)."""
    if "backbone" not in df:
        return pd.Series(False, index=df.index)
    return df["backbone"].notna() & df["backbone"].astype(str).ne("")


def split_cells(run: pd.DataFrame, study: pd.DataFrame) -> Cells:
    """The backbone records of ``run`` and the study's records of the targets they cover."""
    run, study = _normalise(run), _normalise(study)
    bb = run[is_backbone(run)]
    if bb.empty:
        raise ComparisonError("the run has no record with a backbone source (a pretrain entry with backbone:)")
    return Cells(backbone=bb, study=study[study["target"].isin(set(bb["target"]))])


SAME_MAE_RTOL = 1e-3
"""How close a re-run record's test MAE must be to the study's. Records without a target
transform agree to the last bits across hosts, but log10 K_VRH's SVR records of the
AMD-EPYC study re-run on an Intel Xeon differ by up to 1.1e-4 (same split, same chosen
hyper-parameters; most likely the hosts' libm rounding log10 differently, which libsvm's
stopping tolerance of 1e-3 lets through). Another split moves the test MAE by percents."""


def check_same_cells(
    run: pd.DataFrame,
    study: pd.DataFrame,
    rtol: float = SAME_MAE_RTOL,
    new: Callable[[pd.DataFrame], pd.Series] = is_backbone,
) -> pd.DataFrame:
    """Prove that ``run`` and ``study`` split every target the same way: each record of
    ``run`` that is not a new one (``new``: a backbone's) and whose (target, size, mode, seed) the study has must
    give the same test MAE (within ``rtol``, see :data:`SAME_MAE_RTOL`),
    test-set size and table hash; every target of the backbone records needs at least one
    such record at every size of the new records. Returns one row per record checked; raises
    :class:`ComparisonError` naming the first mismatch."""
    run, study = _normalise(run), _normalise(study)
    mine = run[~new(run)]
    merged = mine.merge(study, on=[*KEYS, "mode"], suffixes=("_run", "_study"))
    if merged.empty:
        raise ComparisonError(
            "no record of the run is also in the study: nothing proves that their splits are the same "
            "(re-run one of the study's modes, e.g. the descriptor svr, in the run's config)"
        )
    rows = []
    for r in merged.itertuples():
        same_mae = math.isclose(float(r.mae_run), float(r.mae_study), rel_tol=rtol, abs_tol=0.0)
        same_test = int(r.n_test_run) == int(r.n_test_study)
        same_data = str(r.data_sha256_run) == str(r.data_sha256_study)
        rows.append(
            {
                "target": r.target,
                "size": r.size,
                "mode": r.mode,
                "seed": r.seed,
                "mae_run": float(r.mae_run),
                "mae_study": float(r.mae_study),
                "relative_difference": abs(float(r.mae_run) - float(r.mae_study)) / abs(float(r.mae_study)),
                "n_test": int(r.n_test_run),
                "same": same_mae and same_test and same_data,
            }
        )
        if not (same_mae and same_test and same_data):
            what = (
                f"test MAE {float(r.mae_run)!r} vs {float(r.mae_study)!r}"
                if not same_mae
                else f"test-set size {int(r.n_test_run)} vs {int(r.n_test_study)}"
                if not same_test
                else f"table sha256 {str(r.data_sha256_run)[:12]} vs {str(r.data_sha256_study)[:12]}"
            )
            raise ComparisonError(
                f"{r.target} n={r.size} {r.mode} seed {r.seed}: the run and the study differ ({what}); "
                "their splits or data are not the same, so their seeds cannot be paired"
            )
    checked = pd.DataFrame(rows)
    need = run[new(run)][["target", "size"]].drop_duplicates()
    have = checked[["target", "size"]].drop_duplicates().assign(ok=True)
    missing = need.merge(have, how="left", on=["target", "size"])
    missing = missing[missing["ok"].isna()]
    if len(missing):
        first = missing.iloc[0]
        raise ComparisonError(
            f"{first['target']} n={first['size']}: no record shared with the study proves the split "
            f"({len(missing)} (target, size) cells unchecked)"
        )
    return checked


def _choose(records: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per (target, size) the mode of ``records`` with the lowest mean validation score
    (``by="validation"``) or mean test error (``by="test"``); columns target, size, mode."""
    if records.empty:
        return pd.DataFrame(columns=["target", "size", "mode"])
    if by == "validation":
        scores = validation_scores(records)
    else:
        scores = records.groupby(["target", "size", "mode"])["error"].mean().rename("score").reset_index()
    scores = scores[np.isfinite(scores["score"].astype(float))].sort_values(["target", "size", "score", "mode"])
    return scores.groupby(["target", "size"], sort=False).head(1)[["target", "size", "mode"]]


def cgcnn_transfer(study: pd.DataFrame) -> pd.DataFrame:
    """The study's transfer records whose source is a trained CGCNN (not a backbone)."""
    return study[study["family"].eq("transfer") & ~is_backbone(study)]


def descriptor_baselines(study: pd.DataFrame) -> pd.DataFrame:
    """The study's composition-descriptor baselines (no pretrained source)."""
    no_source = study["pretrained"].isna() if "pretrained" in study else pd.Series(True, index=study.index)
    return study[study["family"].eq("baseline") & study["mode"].isin(DESCRIPTOR_ESTIMATORS) & no_source]


def opponents(study: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per opponent of :data:`OPPONENTS`: per (target, size), which study mode it is."""
    scratch = study[study["mode"].eq(SCRATCH)][["target", "size"]].drop_duplicates().assign(mode=SCRATCH)
    tl = cgcnn_transfer(study)
    return {
        "scratch": scratch,
        "cgcnn_transfer": _choose(tl, "validation"),
        "cgcnn_transfer_best": _choose(tl, "test"),
        "descriptors": _choose(descriptor_baselines(study), "validation"),
    }


def _errors(records: pd.DataFrame, target: str, size: str, mode: str) -> pd.Series:
    cell = records[records["target"].eq(target) & records["size"].eq(size) & records["mode"].eq(mode)]
    return cell.set_index("seed")["error"].astype(float)


def compare(cells: Cells) -> pd.DataFrame:
    """The family's paired tests: per (target, size), the backbone's validation-chosen mode
    against each opponent (:data:`OPPONENTS`), on the seeds both have. Columns: target, size,
    backbone_mode, versus, versus_mode, n_pairs, means and spreads, mean_diff (backbone −
    opponent) with its 95 % CI, improvement_rate, p_value, p_holm (Holm over the whole
    family), q_bh and the verdict."""
    chosen = _choose(cells.backbone, "validation")
    opp = opponents(cells.study)
    rows: list[dict[str, Any]] = []
    for c in chosen.itertuples():
        mine = _errors(cells.backbone, c.target, c.size, c.mode)
        for name, table in opp.items():
            pick = table[table["target"].eq(c.target) & table["size"].eq(c.size)]
            if pick.empty:
                continue
            versus = str(pick["mode"].iloc[0])
            theirs = _errors(cells.study, c.target, c.size, versus)
            seeds = sorted(set(mine.index) & set(theirs.index))
            res = paired(theirs.loc[seeds].to_numpy(), mine.loc[seeds].to_numpy())
            rows.append(
                {
                    "target": c.target,
                    "size": c.size,
                    "backbone": str(cells.backbone.loc[cells.backbone["mode"].eq(c.mode), "backbone"].iloc[0]),
                    "backbone_mode": c.mode,
                    "versus": name,
                    "versus_mode": versus,
                    **paired_fields(res, "backbone", "versus"),
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out = out.sort_values(
        ["target", "size", "versus"], key=lambda s: s.map(size_order) if s.name == "size" else s
    ).reset_index(drop=True)
    return adjust_family(out, FAMILY, verdict)


def paired_fields(res: dict[str, Any], mode: str, versus: str, spread: bool = True) -> dict[str, Any]:
    """A paired test's result (:func:`tlcgcnn.analysis.stats.paired` of ``versus``'s and
    ``mode``'s errors) as a comparison row's columns: n_pairs, ``mae_<mode>``, ``mae_<versus>``,
    with ``spread`` their ``sd_``, mean_diff (mode − versus) and its 95 % CI, improvement_rate,
    p_value."""
    sd = {f"sd_{mode}": res["sd_mode"], f"sd_{versus}": res["sd_baseline"]} if spread else {}
    return {
        "n_pairs": res["n_pairs"],
        f"mae_{mode}": res["mae_mode"],
        f"mae_{versus}": res["mae_baseline"],
        **sd,
        **{k: res[k] for k in ("mean_diff", "ci_low", "ci_high", "improvement_rate", "p_value")},
    }


def adjust_family(tests: pd.DataFrame, family: str, judge: Callable[[float, float], str]) -> pd.DataFrame:
    """One Holm family over every finite ``p_value`` of ``tests`` (``p_holm``), BH q-values
    beside (``q_bh``), the family's name and size, and each row's verdict
    ``judge(mean_diff, p_holm)``."""
    out = tests.copy()
    p = out["p_value"].to_numpy(float)
    ok = np.isfinite(p)
    out["p_holm"] = np.nan
    out["q_bh"] = np.nan
    out.loc[ok, "p_holm"] = holm(p[ok])
    out.loc[ok, "q_bh"] = benjamini_hochberg(p[ok])
    out["holm_family"] = family
    out["family_size"] = int(ok.sum())
    out["verdict"] = [judge(d, q) for d, q in zip(out["mean_diff"], out["p_holm"], strict=True)]
    return out


def sort_tests(tests: pd.DataFrame, by: str, order: Sequence[str] = ()) -> pd.DataFrame:
    """``tests`` ordered by target, size (as numbers) and ``by`` (in ``order`` where given)."""
    rank = {k: i for i, k in enumerate(order)}

    def key(col: pd.Series) -> pd.Series:
        if col.name == "size":
            return col.map(size_order)
        return col.map(rank) if col.name == by and rank else col

    return tests.sort_values(["target", "size", by], key=key).reset_index(drop=True)


def judge(better: str, worse: str, alpha: float = ALPHA) -> Callable[[float, float], str]:
    """A verdict function for :func:`adjust_family`: ``better`` / ``worse`` when the Holm-adjusted p
    is below ``alpha`` and the difference negative / positive, else "no significant difference"."""

    def verdict(mean_diff: float, p_holm: float) -> str:
        if not np.isfinite(p_holm) or p_holm >= alpha:
            return "no significant difference"
        return better if mean_diff < 0 else worse

    return verdict


def run_cli(
    argv: Sequence[str] | None,
    *,
    command: str,
    description: str,
    example_out: str,
    publish: Callable[..., pd.DataFrame],
    rewrite_page: Callable[[str, str], None],
    check_page: Callable[[str, str], list[str]],
    family: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The command line of a comparison report: ``RUN_METRICS STUDY OUT [--page PAGE]`` (and
    ``extra``'s options, passed on to ``publish`` by name); 2 when the runs cannot be paired,
    1 when the page's block does not match after rewriting it."""
    parser = argparse.ArgumentParser(prog=f"python -m tlcgcnn.report {command}", description=description)
    parser.add_argument("run_metrics", help="the run's stats/metrics.csv")
    parser.add_argument("study", help="the published study folder, e.g. docs/results/paper-cpu")
    parser.add_argument("out", help=f"the folder to write, e.g. {example_out}")
    parser.add_argument("--page", help="a results page whose block to rewrite, e.g. docs/results.md")
    if extra is not None:
        extra(parser)
    args = vars(parser.parse_args(argv))
    run_metrics, study, out, page = (args.pop(k) for k in ("run_metrics", "study", "out", "page"))
    try:
        tests = publish(run_metrics, study, out, **args)
        if page:
            rewrite_page(out, page)
            problems = check_page(out, page)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
    except ComparisonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{out}: {len(tests)} paired tests in family {family}")
    return 0


def verdict(mean_diff: float, p_holm: float, alpha: float = ALPHA) -> str:
    """ "backbone better" / "backbone worse" when Holm-significant, else "no significant difference"."""
    if not np.isfinite(p_holm) or p_holm >= alpha:
        return "no significant difference"
    return "backbone better" if mean_diff < 0 else "backbone worse"


# --------------------------------------------------------------------------- effective data
def effective_table(cells: Cells, n_boot: int = 2000) -> pd.DataFrame:
    """:func:`effective_data` of the backbone (chosen on validation) and of the CGCNN transfer
    (chosen on validation) for every target."""
    series = {
        "backbone": (cells.backbone, _choose(cells.backbone, "validation")),
        "cgcnn_transfer": (cells.study, opponents(cells.study)["cgcnn_transfer"]),
    }
    parts = []
    for target in sorted(set(cells.backbone["target"])):
        ref = cells.study[cells.study["target"].eq(target) & cells.study["mode"].eq(SCRATCH)]
        if ref.empty:
            continue
        for name, (records, chosen) in series.items():
            pick = chosen[chosen["target"].eq(target)]
            sel = records.merge(pick, on=["target", "size", "mode"])
            if sel.empty:
                continue
            parts.append(effective_data(ref, sel, n_boot=n_boot).assign(target=target, source=name))
    cols = ["target", "source", "size"]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return out[cols + [c for c in out.columns if c not in cols]]


# --------------------------------------------------------------------------- figure
SERIES_STYLE = {
    "scratch": ("CGCNN from scratch", "black", "o"),
    "cgcnn_transfer": ("CGCNN transfer (chosen on validation)", "tab:blue", "s"),
    "backbone": ("backbone features (chosen on validation)", "tab:orange", "D"),
    "descriptors": ("descriptor baseline (chosen on CV)", "tab:gray", "^"),
}


def curve_points(cells: Cells) -> pd.DataFrame:
    """Mean test MAE with its 95 % t interval over seeds, per target, size and series."""
    opp = opponents(cells.study)
    picks = {
        "scratch": (cells.study, opp["scratch"]),
        "cgcnn_transfer": (cells.study, opp["cgcnn_transfer"]),
        "backbone": (cells.backbone, _choose(cells.backbone, "validation")),
        "descriptors": (cells.study, opp["descriptors"]),
    }
    rows = []
    for name, (records, chosen) in picks.items():
        sel = records.merge(chosen, on=["target", "size", "mode"])
        sel = sel[sel["target"].isin(set(cells.backbone["target"]))]
        sel = sel[sel.set_index(["target", "size"]).index.isin(cells.backbone.set_index(["target", "size"]).index)]
        for (target, size), g in sel.groupby(["target", "size"]):
            mae, half = mean_interval(g["error"].to_numpy(float))
            rows.append(
                {"target": target, "size": size, "series": name, "mode": g["mode"].iloc[0], "mae": mae, "ci": half}
            )
    return pd.DataFrame(rows)


def _title(record: pd.Series) -> str:
    """A panel's title: the target's name, its property's symbol and its subset."""
    from tlcgcnn.report.figures.style import SYMBOLS

    prop = str(record.get("property", ""))
    transform = "log10 " if str(record.get("transform", "")) == "log10" else ""
    subset = ", non-metals" if str(record.get("subset", "")) == "nonmetal" else ""
    return f"{record['target']}: {transform}{SYMBOLS.get(prop, prop)}{subset}"


def plot_series(ax: Any, pts: pd.DataFrame, style: dict[str, tuple[str, str, str]]) -> None:
    """One target's panel: each series of ``style`` (name → label, colour, marker) as mean test
    error ± 95 % CI against training crystals (log axis); ``pts`` as :func:`curve_points` gives."""
    for name, (label, colour, marker) in style.items():
        p = pts[pts["series"].eq(name)].copy()
        if p.empty:
            continue
        p["n"] = p["size"].map(size_order)
        p = p.sort_values("n")
        ax.errorbar(p["n"], p["mae"], yerr=p["ci"], label=label, color=colour, marker=marker, ms=4, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("training crystals")


def load_pair(
    run_metrics: str | Path, study: str | Path, new: Callable[[pd.DataFrame], pd.Series]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A run's records, the published study's (``STUDY/tables/metrics.csv``) and the proof that
    they share their cells (:func:`check_same_cells`, ``new`` naming the run's new records)."""
    run = pd.read_csv(run_metrics)
    pub = pd.read_csv(Path(study) / "tables" / "metrics.csv")
    return run, pub, check_same_cells(run, pub, new=new)


def backbone_label(records: pd.DataFrame) -> str:
    """The display name of the backbone(s) of ``records`` (``CHGNet 0.3.0``, ``SevenNet-0``)."""
    from tlcgcnn.features import backbones

    names = sorted({str(b) for b in records["backbone"].dropna()}) if "backbone" in records else []
    return " / ".join(backbones.BACKBONES[n].label if n in backbones.BACKBONES else n for n in names) or "backbone"


def mean_interval(errors: np.ndarray) -> tuple[float, float]:
    """The mean of ``errors`` and the half-width of its 95 % t interval (0 without spread)."""
    from scipy import stats as sstats

    e = np.asarray(errors, dtype=float)
    sd = e.std(ddof=1) if e.size > 1 else 0.0
    return float(e.mean()), float(sstats.t.ppf(0.975, e.size - 1) * sd / math.sqrt(e.size)) if sd > 0 else 0.0


def picked_points(
    tests: pd.DataFrame, picks: Callable[[pd.DataFrame], dict[str, tuple[pd.DataFrame, str]]]
) -> pd.DataFrame:
    """Mean test MAE with its 95 % t interval over seeds, per target, size and series: for each
    (target, size) group of ``tests``, ``picks(group)`` names each series' records and mode."""
    rows = []
    for (target, size), g in tests.groupby(["target", "size"], sort=False):
        for name, (records, mode) in picks(g).items():
            e = _errors(records, target, size, mode).to_numpy(float)
            if e.size:
                mae, half = mean_interval(e)
                rows.append({"target": target, "size": size, "series": name, "mae": mae, "ci": half})
    return pd.DataFrame(rows)


def draw_row(
    pts: pd.DataFrame,
    records: pd.DataFrame,
    style: dict[str, tuple[str, str, str]],
    title: str,
    png: str | Path,
    log_y: bool = False,
) -> None:
    """One panel per target of ``pts`` in a row (series of ``style``, y label and title from the
    target's ``records``), one legend below, ``title`` above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker

    from tlcgcnn.report.figures.style import error_label, save

    targets = list(dict.fromkeys(pts["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 4.2), squeeze=False)
    for ax, target in zip(axes.flat, targets, strict=True):
        mine = records[records["target"].eq(target)]
        plot_series(ax, pts[pts["target"].eq(target)], style)
        if log_y:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(mticker.FormatStrFormatter("%g"))
        ax.set_ylabel(error_label(mine))
        ax.set_title(_title(mine.iloc[0]))
        ax.grid(alpha=0.3, which="both")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    save(fig, png)
    plt.close(fig)


def write_folder(
    out: str | Path,
    *,
    run: pd.DataFrame,
    tests: pd.DataFrame,
    checked: pd.DataFrame,
    run_metrics: str | Path,
    study: str | Path,
    summary: str,
    info: dict[str, Any],
    figure: tuple[str, Callable[[Path], None]] | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
    info_key: str = "comparison",
) -> None:
    """A comparison folder: ``tables/`` (``metrics.csv``: the run's records, ``comparison.csv``:
    the tests, ``same_cells.csv``: the check, and ``tables``), ``figures/<name>`` drawn by
    ``figure``'s function, ``summary.md`` and ``provenance.json`` (``info`` under ``info_key``)."""
    from tlcgcnn.utils import fileio as io

    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    io.write_csv(run, out / "tables" / "metrics.csv")
    io.write_csv(tests, out / "tables" / "comparison.csv")
    for name, table in (tables or {}).items():
        io.write_csv(table, out / "tables" / name)
    io.write_csv(checked, out / "tables" / "same_cells.csv")
    if figure is not None:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        figure[1](out / "figures" / figure[0])
    io.write_text(out / "summary.md", summary)
    io.write_json(out / "provenance.json", comparison_provenance(run_metrics, study, out, run, info, info_key))


def page_functions(
    page_block: Callable[[pd.DataFrame], str], begin: str, end: str, what: str
) -> tuple[Callable[[str | Path, str | Path], None], Callable[[str | Path, str | Path], list[str]]]:
    """``rewrite_page(folder, page)`` and ``check_page(folder, page)`` of a comparison whose
    page block (between ``begin`` and ``end``) ``page_block`` writes from the folder's
    ``comparison.csv``; ``what`` names the table in a problem."""

    def rewrite_page(folder: str | Path, page: str | Path) -> None:
        write_block(page, page_block(read_comparison(folder)), begin, end)

    def check_page(folder: str | Path, page: str | Path) -> list[str]:
        if not block_is(page, page_block(read_comparison(folder)), begin, end):
            return [f"{page}: the {what} table differs from {Path(folder) / 'tables' / 'comparison.csv'}"]
        return []

    return rewrite_page, check_page


def draw(cells: Cells, png: str | Path) -> None:
    """One panel per target: test MAE against training crystals for the four series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures.style import error_label, save

    pts = curve_points(cells)
    label = backbone_label(cells.backbone)
    style = {**SERIES_STYLE, "backbone": (f"{label} features (chosen on validation)", *SERIES_STYLE["backbone"][1:])}
    targets = sorted(set(pts["target"]))
    ncol = min(2, len(targets))
    nrow = -(-len(targets) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.9 * nrow), squeeze=False)
    for ax, target in zip(axes.flat, targets, strict=False):
        plot_series(ax, pts[pts["target"].eq(target)], style)
        ax.set_ylabel(error_label(cells.study[cells.study["target"].eq(target)]))
        ax.set_title(_title(cells.backbone[cells.backbone["target"].eq(target)].iloc[0]))
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(targets) :]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.suptitle(f"{label} crystal features vs CGCNN transfer: mean test MAE, 95 % CI over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    save(fig, png)
    plt.close(fig)


# --------------------------------------------------------------------------- summary
def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _largest_difference(checked: pd.DataFrame) -> str:
    """Which targets' re-run records are not bitwise equal to the study's."""
    off = checked[checked["relative_difference"] > 1e-12]
    if off.empty:
        return "all bitwise equal up to summation order"
    return "not bitwise equal only for " + ", ".join(sorted(off["target"].unique()))


def same_cells_text(checked: pd.DataFrame) -> str:
    """A summary's sentence on the proof that a run shares the study's cells."""
    return (
        f"Paired with `docs/results/paper-cpu` seed by seed: {int(checked['same'].sum())} re-run descriptor-SVR "
        f"records give the study's test MAE (largest relative difference {checked['relative_difference'].max():.1e}: "
        f"{_largest_difference(checked)}), test-set size and table hash."
    )


def summary_markdown(
    tests: pd.DataFrame, eff: pd.DataFrame, checked: pd.DataFrame, info: dict[str, Any], name: str = "backbones-cpu"
) -> str:
    """The folder's ``summary.md``: what was compared, the check, the per-cell verdicts."""
    label = backbone_label(tests)
    lines = [
        f"# {label} crystal features vs CGCNN transfer ({name})",
        "",
        f"Backbone: {info.get('backbone', 'n/a')} ({info.get('package', 'n/a')} "
        f"{info.get('package_version', '')}, licence {info.get('licence', 'n/a')}); trained on "
        f"{info.get('training_data', 'n/a')}. Frozen {info.get('width', '')}-wide crystal vectors, "
        "ridge / random forest / SVR "
        "with hyper-parameters by 5-fold CV on the training crystals; the estimator of each (target, n) is "
        "chosen on the validation crystals.",
        "",
        f"Paired with `docs/results/paper-cpu` seed by seed: {int(checked['same'].sum())} re-run descriptor-SVR "
        f"records give the study's test MAE (largest relative difference {checked['relative_difference'].max():.1e}, "
        f"allowed {SAME_MAE_RTOL:g}: {_largest_difference(checked)}), test-set size and table hash, so every "
        "(target, n, seed) has the study's training, validation and test crystals.",
        "",
        f"One Holm family (`{FAMILY}`, {int(tests['family_size'].iloc[0]) if len(tests) else 0} tests); "
        f"difference = {label} − opponent (negative: {label} better).",
        "",
        f"| target | n | {label} (mode) | opponent | opponent MAE | difference [95 % CI] | p | p Holm | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tests.itertuples():
        lines.append(
            f"| {r.target} | {r.size} | {r.mae_backbone:.4g} ({r.backbone_mode}) | {OPPONENTS[r.versus]} "
            f"({r.versus_mode}) | {r.mae_versus:.4g} | {r.mean_diff:+.4g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}] | "
            f"{_fmt_p(r.p_value)} | {_fmt_p(r.p_holm)} | {r.verdict} |"
        )
    lines += [
        "",
        "## Effective data",
        "",
        "Scratch training crystals each source is worth (scratch curve interpolated log-log; ≥: better than "
        "scratch at its largest measured size; 95 % bootstrap interval over seeds).",
        "",
        "| target | source | n | n_effective [95 %] | multiplier |",
        "|---|---|---|---|---|",
    ]
    for r in eff.itertuples():
        lines.append(
            f"| {r.target} | {r.source} | {r.size} | {r.bound}{r.n_effective:,.0f} "
            f"[{r.n_effective_low:,.0f}, {r.n_effective_high:,.0f}] | {r.bound}{r.multiplier:.2g}× |"
        )
    lines += ["", "![learning curves](figures/backbone_learning_curves.png)", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- results page
PAGE_BEGIN = "<!-- backbones-cpu:begin -->"
PAGE_END = "<!-- backbones-cpu:end -->"


def folder_markers(folder: str | Path) -> tuple[str, str]:
    """The results page's markers of a comparison folder's block: ``<!-- NAME:begin -->`` and
    ``<!-- NAME:end -->``, NAME the folder's name (one block per published backbone run)."""
    name = Path(folder).name
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


_SHORT = {
    "scratch": "scratch",
    "cgcnn_transfer": "CGCNN TL (val.)",
    "cgcnn_transfer_best": "CGCNN TL (best by test)",
    "descriptors": "descriptors",
}


def _cell_text(r: Any) -> str:
    """A test as the page shows it: relative difference, Holm p and a mark of the verdict."""
    rel = 100.0 * r.mean_diff / r.mae_versus if r.mae_versus else math.nan
    mark = {"backbone better": " ✓", "backbone worse": " ✗"}.get(r.verdict, "")
    return f"{rel:+.0f} % ({_fmt_p(r.p_holm)}){mark}"


def page_block(tests: pd.DataFrame) -> str:
    """The results page's table: per (target, n) the backbone's MAE and, against each opponent,
    the relative difference (backbone − opponent, over the opponent's MAE) with its Holm p; ✓ the
    backbone significantly better, ✗ significantly worse."""
    order = list(_SHORT)
    lines = [
        f"| target | n | {backbone_label(tests)} features, test MAE (estimator) | "
        + " | ".join(f"vs {_SHORT[o]}" for o in order)
        + " |",
        "|---|---|---|" + "---|" * len(order),
    ]
    for (target, size), g in tests.groupby(["target", "size"], sort=False):
        by = {r.versus: r for r in g.itertuples()}
        first = g.iloc[0]
        cells = [_cell_text(by[o]) if o in by else "" for o in order]
        lines.append(
            f"| {target} | {size} | {first['mae_backbone']:.3g} ({first['backbone_mode']}) | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def page_markers(text: str, page: Path, begin: str = PAGE_BEGIN, end: str = PAGE_END) -> tuple[int, int]:
    """Where the block between the markers ``begin`` and ``end`` of a results page starts and ends."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ComparisonError(f"{page}: needs one {begin} followed by one {end}")
    return text.index(begin) + len(begin), text.index(end)


def read_comparison(folder: str | Path) -> pd.DataFrame:
    """A published folder's ``tables/comparison.csv`` (sizes as text)."""
    return pd.read_csv(Path(folder) / "tables" / "comparison.csv", dtype={"size": str})


def write_block(page: str | Path, block: str, begin: str = PAGE_BEGIN, end: str = PAGE_END) -> None:
    """Replace a results page's block between the markers ``begin`` and ``end`` by ``block``."""
    from tlcgcnn.utils import fileio as io

    path = Path(page)
    text = path.read_text(encoding="utf-8")
    start, stop = page_markers(text, path, begin, end)
    new = text[:start] + "\n" + block + "\n" + text[stop:]
    if new != text:
        io.write_text(path, new)


def block_is(page: str | Path, block: str, begin: str = PAGE_BEGIN, end: str = PAGE_END) -> bool:
    """Whether a results page's block between ``begin`` and ``end`` is ``block``."""
    text = Path(page).read_text(encoding="utf-8")
    start, stop = page_markers(text, Path(page), begin, end)
    return text[start:stop].strip() == block.strip()


def rewrite_page(folder: str | Path, page: str | Path) -> None:
    """The page's block of the folder (:func:`folder_markers`) from the folder's comparison."""
    write_block(page, page_block(read_comparison(folder)), *folder_markers(folder))


def check_page(folder: str | Path, page: str | Path) -> list[str]:
    """Problems: the page's block is not the one the folder's comparison.csv gives."""
    if not block_is(page, page_block(read_comparison(folder)), *folder_markers(folder)):
        return [f"{page}: the backbone table differs from {Path(folder) / 'tables' / 'comparison.csv'}"]
    return []


def publish(
    run_metrics: str | Path, study: str | Path, out: str | Path, embed_info: str | Path | None = None
) -> pd.DataFrame:
    """Check, compare and write ``out`` (see the module docstring). Returns the tests."""
    run, pub, checked = load_pair(run_metrics, study, is_backbone)
    cells = split_cells(run, pub)
    tests = compare(cells)
    eff = effective_table(cells)
    info = json.loads(Path(embed_info).read_text()) if embed_info else {}
    write_folder(
        out,
        run=run,
        tests=tests,
        checked=checked,
        run_metrics=run_metrics,
        study=study,
        summary=summary_markdown(tests, eff, checked, info, Path(out).name),
        info=info,
        info_key="backbone",
        figure=("backbone_learning_curves.png", lambda png: draw(cells, png)),
        tables={"effective_data.csv": eff},
    )
    return tests


def _distinct(frame: pd.DataFrame, column: str) -> list[str]:
    """The distinct non-empty values of ``column`` (sorted); empty where the column is absent."""
    if column not in frame:
        return []
    return sorted({str(v) for v in frame[column].dropna() if str(v)})


def comparison_provenance(
    run_metrics: str | Path,
    study: str | Path,
    out: str | Path,
    run: pd.DataFrame,
    info: dict[str, Any],
    info_key: str = "backbone",
) -> dict[str, Any]:
    """What the comparison folder was made from: the run's metrics file (sha256), the code
    versions, config and data hashes and devices its records name, the study folder it was
    paired with (and that folder's config hash), ``info`` under ``info_key`` (the backbone's
    embedding info), this checkout's code state and the machine that wrote it."""
    from tlcgcnn.report.provenance import code_state, machine
    from tlcgcnn.utils import fileio as io

    study_prov = Path(study) / "provenance.json"
    study_info = io.read_json(study_prov) if study_prov.is_file() else {}
    repo = Path(__file__).resolve().parents[3]
    return {
        "name": Path(out).name,
        "generated_utc": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run": {
            "metrics_sha256": io.sha256_file(run_metrics),
            "records": len(run),
            "git_commits": _distinct(run, "git_commit"),
            "config_sha256": _distinct(run, "config_sha256"),
            "data_sha256": _distinct(run, "data_sha256"),
            "hardware": _distinct(run, "hardware"),
        },
        "study": {
            "folder": Path(study).name,
            "config_sha256": study_info.get("config_sha256"),
            "machine": study_info.get("machine"),
        },
        info_key: info,
        "code": code_state(repo, [f"docs/results/{Path(out).name}"]),
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    def embed_info(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--embed-info",
            dest="embed_info",
            help="the backbone's info JSON (results/<name>/backbones/<backbone>/embeddings.json)",
        )

    return run_cli(
        argv,
        command="backbones",
        description="Pair a backbone run's records with a published study folder seed by seed and test them "
        "(tlcgcnn.report.backbones).",
        example_out="docs/results/backbones-cpu",
        publish=publish,
        rewrite_page=rewrite_page,
        check_page=check_page,
        family=FAMILY,
        extra=embed_info,
    )
