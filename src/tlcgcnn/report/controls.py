"""Is a same-quantity transfer more than its source's prediction? The study's transfer
against the controls a referee asks for, cell by cell.

A controls run (``config/controls-cpu.yaml``: ``features: zero_shot | recalibrated | delta``
modes of the zoo's sources, :mod:`tlcgcnn.train.frozen`) is paired with a published study
folder (``docs/results/paper-cpu``) seed by seed, the way :mod:`tlcgcnn.report.backbones`
pairs a backbone run: :func:`~tlcgcnn.report.backbones.check_same_cells` first proves, from the
descriptor SVR both ran, that every (target, size, seed) has the same training, validation and
test crystals.

The comparisons, one Holm family (:data:`FAMILY`, declared here before any control result
existed), BH q-values beside. Per (target, size) and control, paired by seed: the study's
transfer from the control's own source chosen on validation (among every fine-tuned and
frozen-features mode of that source in the cell: the choice a user can make) minus the
control (negative: the transfer is better):

* ``zero_shot``: the source's own prediction, nothing fitted (the same for every seed);
* ``recalibrated``: the line target = a + b · source prediction fitted on the n training crystals;
* ``delta``: Δ-learning, ridge on the source's crystal vectors fitted to target − source
  prediction, the source prediction added back.

A transfer that is not better than these has learned no more than the source's correlation
with the target. ``python -m tlcgcnn.report controls RUN_METRICS STUDY OUT [--page PAGE]``
writes ``OUT/tables/`` (``metrics.csv``: the run's records, ``comparison.csv``,
``same_cells.csv``: the check), ``OUT/figures/controls.png``, ``OUT/summary.md`` and
``OUT/provenance.json``; with ``--page`` it rewrites the block between :data:`PAGE_BEGIN` and
:data:`PAGE_END` of a results page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.analysis.stats import paired
from tlcgcnn.report.backbones import (
    ComparisonError,
    _choose,
    _errors,
    _fmt_p,
    _normalise,
    adjust_family,
    draw_row,
    is_backbone,
    judge,
    load_pair,
    page_functions,
    paired_fields,
    picked_points,
    run_cli,
    same_cells_text,
    sort_tests,
    write_folder,
)

FAMILY = "transfer_vs_controls"
ALPHA = 0.05
CONTROLS = {
    "zero_shot": "the source's prediction (zero-shot)",
    "recalibrated": "the source's prediction, recalibrated (a line fitted on the n crystals)",
    "delta": "Δ-learning (ridge on the source's vectors fitted to target − source)",
}
_SHORT = {"zero_shot": "zero-shot", "recalibrated": "recalibrated", "delta": "Δ-learning"}
PAGE_BEGIN = "<!-- controls:begin -->"
PAGE_END = "<!-- controls:end -->"


def is_control(df: pd.DataFrame) -> pd.Series:
    """Records of a control mode (``features`` zero_shot, recalibrated or delta)."""
    if "features" not in df:
        return pd.Series(False, index=df.index)
    return df["features"].isin(list(CONTROLS))


def source_transfer(study: pd.DataFrame, source: str) -> pd.DataFrame:
    """The study's transfer records from the checkpoint source ``source`` (fine-tuned or
    frozen features), controls and backbones left out."""
    tl = study[study["family"].eq("transfer") & study["pretrained"].eq(source)]
    return tl[~is_control(tl) & ~is_backbone(tl)]


def _median_best_epoch(records: pd.DataFrame) -> float:
    if "best_epoch" not in records:
        return math.nan
    epochs = pd.to_numeric(records["best_epoch"], errors="coerce").dropna()
    return float(epochs.median()) if len(epochs) else math.nan


def compare(run: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """The family's paired tests (see the module docstring). Columns: target, size, source,
    control, control_mode, transfer_mode, transfer_best_epoch (median over its seeds, 0-based:
    0 is after the first epoch; empty for a frozen-features mode), mae_scratch, n_pairs, means
    and spreads, mean_diff (transfer − control) with its 95 % CI, improvement_rate, p_value,
    p_holm, q_bh, verdict."""
    run, study = _normalise(run), _normalise(study)
    ctl = run[is_control(run)]
    if ctl.empty:
        raise ComparisonError("the run has no control record (features: zero_shot, recalibrated or delta)")
    rows: list[dict[str, Any]] = []
    for (target, size, mode), g in ctl.groupby(["target", "size", "mode"], sort=False):
        source = str(g["pretrained"].iloc[0])
        cell = study[study["target"].eq(target) & study["size"].eq(size)]
        chosen = _choose(source_transfer(cell, source), "validation")
        if chosen.empty:
            raise ComparisonError(f"{target} n={size}: the study has no transfer from {source} to test {mode} against")
        tl_mode = str(chosen["mode"].iloc[0])
        theirs, mine = _errors(study, target, size, tl_mode), _errors(ctl, target, size, mode)
        seeds = sorted(set(mine.index) & set(theirs.index))
        res = paired(mine.loc[seeds].to_numpy(), theirs.loc[seeds].to_numpy())
        scratch = cell[cell["mode"].eq("scratch")]["error"]
        rows.append(
            {
                "target": target,
                "size": size,
                "source": source,
                "control": str(g["features"].iloc[0]),
                "control_mode": mode,
                "transfer_mode": tl_mode,
                "transfer_best_epoch": _median_best_epoch(cell[cell["mode"].eq(tl_mode)]),
                "mae_scratch": float(scratch.mean()) if len(scratch) else math.nan,
                **paired_fields(res, "transfer", "control"),
            }
        )
    out = sort_tests(pd.DataFrame(rows), "control", list(CONTROLS))
    return adjust_family(out, FAMILY, verdict)


verdict = judge("transfer better", "control better")
"""The family's verdict for a difference and its Holm p."""


# --------------------------------------------------------------------------- figure
SERIES_STYLE = {
    "scratch": ("CGCNN from scratch", "black", "o"),
    "transfer": ("CGCNN transfer from the source (chosen on validation)", "tab:blue", "s"),
    "zero_shot": ("source's prediction (zero-shot)", "tab:gray", "x"),
    "recalibrated": ("source's prediction, recalibrated", "tab:green", "^"),
    "delta": ("Δ-learning on the source", "tab:orange", "D"),
}


def curve_points(run: pd.DataFrame, study: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Mean test MAE with its 95 % t interval over seeds, per target, size and series."""
    run, study = _normalise(run), _normalise(study)

    def picks(g: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str]]:
        chosen = {"scratch": (study, "scratch"), "transfer": (study, str(g["transfer_mode"].iloc[0]))}
        return {**chosen, **{r.control: (run, r.control_mode) for r in g.itertuples()}}

    return picked_points(tests, picks)


def draw(run: pd.DataFrame, study: pd.DataFrame, tests: pd.DataFrame, png: str | Path) -> None:
    """One panel per target: test MAE against training crystals, transfer and controls."""
    title = "Transfer vs the source's own prediction: mean test MAE, 95 % CI over seeds"
    draw_row(curve_points(run, study, tests), _normalise(run), SERIES_STYLE, title, png)


# --------------------------------------------------------------------------- summary and page
def _cell_text(r: Any) -> str:
    """A test as the page shows it: relative difference (transfer − control over the control's
    MAE), Holm p, ✓ transfer significantly better, ✗ the control significantly better."""
    rel = 100.0 * r.mean_diff / r.mae_control if r.mae_control else math.nan
    mark = {"transfer better": " ✓", "control better": " ✗"}.get(r.verdict, "")
    return f"{rel:+.0f} % ({_fmt_p(r.p_holm)}){mark}"


def _epoch_text(epoch: float) -> str:
    """The median best epoch (0-based, as the records count) as epochs trained to reach it."""
    return f", best after {epoch + 1:g} epochs" if np.isfinite(epoch) else ""


def page_block(tests: pd.DataFrame) -> str:
    """The results page's table: per (target, n) the transfer's and the controls' test MAE and
    the transfer against each control."""
    order = list(CONTROLS)
    lines = [
        "| target | n | scratch | transfer (mode, median epochs to its best validation) | "
        + " | ".join(_SHORT[c] for c in order)
        + " | "
        + " | ".join(f"transfer vs {_SHORT[c]}" for c in order)
        + " |",
        "|---|---|---|---|" + "---|" * (2 * len(order)),
    ]
    for (target, size), g in tests.groupby(["target", "size"], sort=False):
        by = {r.control: r for r in g.itertuples()}
        first = g.iloc[0]
        maes = [f"{by[c].mae_control:.3g}" if c in by else "" for c in order]
        cells = [_cell_text(by[c]) if c in by else "" for c in order]
        lines.append(
            f"| {target} | {size} | {first['mae_scratch']:.3g} | {first['mae_transfer']:.3g} "
            f"({first['transfer_mode']}{_epoch_text(float(first['transfer_best_epoch']))}) | "
            + " | ".join(maes + cells)
            + " |"
        )
    return "\n".join(lines)


def summary_markdown(tests: pd.DataFrame, checked: pd.DataFrame) -> str:
    """The folder's ``summary.md``: what was compared, the check, every test."""
    lines = [
        "# The transfer against its source's own prediction (controls-cpu)",
        "",
        "Controls: " + "; ".join(f"`{k}`: {v}" for k, v in CONTROLS.items()) + ".",
        "",
        same_cells_text(checked),
        "",
        f"One Holm family (`{FAMILY}`, {int(tests['family_size'].iloc[0])} tests); difference = transfer − control "
        "(negative: the transfer is better); the transfer is the study's mode from the control's source chosen "
        "on validation.",
        "",
        "| target | n | control | control MAE | transfer (mode) | transfer MAE | difference [95 % CI] | p | p Holm "
        "| q BH | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tests.itertuples():
        lines.append(
            f"| {r.target} | {r.size} | {r.control} | {r.mae_control:.4g} | {r.transfer_mode} | {r.mae_transfer:.4g} "
            f"| {r.mean_diff:+.4g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}] | {_fmt_p(r.p_value)} | {_fmt_p(r.p_holm)} "
            f"| {_fmt_p(r.q_bh)} | {r.verdict} |"
        )
    lines += ["", "![transfer vs controls](figures/controls.png)", ""]
    return "\n".join(lines)


rewrite_page, check_page = page_functions(page_block, PAGE_BEGIN, PAGE_END, "controls")


def publish(run_metrics: str | Path, study: str | Path, out: str | Path) -> pd.DataFrame:
    """Check, compare and write ``out`` (see the module docstring). Returns the tests."""
    run, pub, checked = load_pair(run_metrics, study, is_control)
    tests = compare(run, pub)
    write_folder(
        out,
        run=run,
        tests=tests,
        checked=checked,
        run_metrics=run_metrics,
        study=study,
        summary=summary_markdown(tests, checked),
        info={"controls": CONTROLS, "family": FAMILY},
        figure=("controls.png", lambda png: draw(run, pub, tests, png)),
    )
    return tests


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        argv,
        command="controls",
        description="Pair a controls run (zero-shot, recalibrated, delta) with a published study seed by seed and "
        "test the study's transfer against each control (tlcgcnn.report.controls).",
        example_out="docs/results/controls-cpu",
        publish=publish,
        rewrite_page=rewrite_page,
        check_page=check_page,
        family=FAMILY,
    )
