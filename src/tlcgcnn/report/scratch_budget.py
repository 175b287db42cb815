"""Does scratch lose because it was tuned less? The study's transfer against CGCNN from scratch
given the same protocol-selection budget.

In a published study (``docs/results/paper-cpu``) the transfer mode of a cell is chosen on
validation among several protocols (sources, fine-tuned or frozen, head re-initialised or
not), while scratch has one setting. A scratch-protocol run (``config/scratch-protocol-cpu.yaml``:
scratch with other learning rates and warm-up) is paired with the study seed by seed, after
:func:`~tlcgcnn.report.backbones.check_same_cells` proves from the re-run descriptor SVR that the
cells hold the same crystals. Per (target, size):

* ``scratch``: the study's default scratch (as published);
* ``scratch_tuned``: scratch chosen on validation (lowest mean validation score) among the
  default and the run's scratch protocols: the budget a fair referee gives it;

and the study's CGCNN transfer chosen on validation is tested against each, paired by seed, in
one Holm family (:data:`FAMILY`), BH q beside. ``python -m tlcgcnn.report scratch-budget
RUN_METRICS STUDY OUT [--page PAGE]`` writes ``OUT/tables/`` (``metrics.csv``,
``comparison.csv``, ``scratch_protocols.csv``: every scratch protocol's mean test and validation
error, ``same_cells.csv``), ``OUT/summary.md`` and ``OUT/provenance.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.analysis.effective import size_order
from tlcgcnn.analysis.stats import paired
from tlcgcnn.report.backbones import (
    SCRATCH,
    ComparisonError,
    _choose,
    _errors,
    _fmt_p,
    _normalise,
    adjust_family,
    block_is,
    cgcnn_transfer,
    judge,
    load_pair,
    paired_fields,
    run_cli,
    same_cells_text,
    sort_tests,
    write_block,
    write_folder,
)
from tlcgcnn.report.controls import is_control

FAMILY = "transfer_vs_tuned_scratch"
ALPHA = 0.05
OPPONENTS = {
    "scratch": "CGCNN from scratch, the study's one setting",
    "scratch_tuned": "CGCNN from scratch, protocol chosen on validation",
}
PAGE_BEGIN = "<!-- scratch-budget:begin -->"
PAGE_END = "<!-- scratch-budget:end -->"


def is_scratch(df: pd.DataFrame) -> pd.Series:
    """Records of CGCNN trained from scratch (family ``scratch``)."""
    return df["family"].eq("scratch")


def scratch_candidates(run: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """Per (target, size) of the run's scratch records: those records and the study's default
    scratch of the same cells (the candidates validation chooses among)."""
    run, study = _normalise(run), _normalise(study)
    mine = run[is_scratch(run)]
    if mine.empty:
        raise ComparisonError("the run has no scratch record (a mode without pretrained or estimator)")
    cells = mine[["target", "size"]].drop_duplicates()
    default = study[study["mode"].eq(SCRATCH)].merge(cells, on=["target", "size"])
    return pd.concat([default, mine], ignore_index=True)


def protocol_table(candidates: pd.DataFrame) -> pd.DataFrame:
    """Every scratch protocol's mean test error and mean validation score per cell, with the
    one validation chooses marked."""
    chosen = _choose(candidates, "validation").assign(chosen=True)
    table = (
        candidates.groupby(["target", "size", "mode"])
        .agg(
            n_seeds=("seed", "size"),
            mae=("error", "mean"),
            val=("best_val_mae", "mean"),
            lr=("lr", "first"),
            warmup_epochs=("warmup_epochs", "first"),
        )
        .reset_index()
        .merge(chosen, on=["target", "size", "mode"], how="left")
    )
    table["chosen"] = table["chosen"].eq(True)
    return table.sort_values(
        ["target", "size", "mode"], key=lambda s: s.map(size_order) if s.name == "size" else s
    ).reset_index(drop=True)


def compare(run: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """The family's paired tests: per cell, the study's transfer chosen on validation minus
    each scratch opponent (negative: the transfer is better)."""
    candidates = scratch_candidates(run, study)
    study = _normalise(study)
    tuned = _choose(candidates, "validation")
    tl = cgcnn_transfer(study)
    tl = tl[~is_control(tl)]
    rows: list[dict[str, Any]] = []
    for c in tuned.itertuples():
        cell = tl[tl["target"].eq(c.target) & tl["size"].eq(c.size)]
        pick = _choose(cell, "validation")
        if pick.empty:
            raise ComparisonError(f"{c.target} n={c.size}: the study has no CGCNN transfer in this cell")
        tl_mode = str(pick["mode"].iloc[0])
        theirs = _errors(study, c.target, c.size, tl_mode)
        for name, mode in (("scratch", SCRATCH), ("scratch_tuned", c.mode)):
            mine = _errors(candidates, c.target, c.size, mode)
            seeds = sorted(set(mine.index) & set(theirs.index))
            res = paired(mine.loc[seeds].to_numpy(), theirs.loc[seeds].to_numpy())
            rows.append(
                {
                    "target": c.target,
                    "size": c.size,
                    "transfer_mode": tl_mode,
                    "versus": name,
                    "scratch_mode": mode,
                    **paired_fields(res, "transfer", "scratch", spread=False),
                }
            )
    out = sort_tests(pd.DataFrame(rows), "versus")
    return adjust_family(out, FAMILY, verdict)


verdict = judge("transfer better", "scratch better")
"""The family's verdict for a difference and its Holm p."""


def _test_text(r: Any) -> str:
    rel = 100.0 * r.mean_diff / r.mae_scratch if r.mae_scratch else math.nan
    mark = {"transfer better": " ✓", "scratch better": " ✗"}.get(r.verdict, "")
    return f"{rel:+.0f} % ({_fmt_p(r.p_holm)}){mark}"


def page_block(tests: pd.DataFrame, protocols: pd.DataFrame) -> str:
    """The results page's table: per cell the transfer, the default and the tuned scratch, the
    scratch protocols' test MAEs, and the transfer against both scratch opponents."""
    modes = sorted(set(protocols["mode"]), key=lambda m: (m != SCRATCH, m))
    lines = [
        "| target | n | transfer (mode) | "
        + " | ".join(f"`{m}`" for m in modes)
        + " | scratch chosen on validation | transfer vs scratch | transfer vs tuned scratch |",
        "|---|---|---|" + "---|" * len(modes) + "---|---|---|",
    ]
    for (target, size), g in tests.groupby(["target", "size"], sort=False):
        by = {r.versus: r for r in g.itertuples()}
        prot = protocols[protocols["target"].eq(target) & protocols["size"].astype(str).eq(str(size))]
        maes = {r.mode: f"{r.mae:.3g}" for r in prot.itertuples()}
        tuned = by["scratch_tuned"]
        lines.append(
            f"| {target} | {size} | {g['mae_transfer'].iloc[0]:.3g} ({g['transfer_mode'].iloc[0]}) | "
            + " | ".join(maes.get(m, "") for m in modes)
            + f" | `{tuned.scratch_mode}` | {_test_text(by['scratch'])} | {_test_text(tuned)} |"
        )
    return "\n".join(lines)


def summary_markdown(tests: pd.DataFrame, protocols: pd.DataFrame, checked: pd.DataFrame) -> str:
    """The folder's ``summary.md``."""
    lines = [
        "# The transfer against scratch given the same protocol budget (scratch-protocol-cpu)",
        "",
        same_cells_text(checked),
        "",
        f"One Holm family (`{FAMILY}`, {int(tests['family_size'].iloc[0])} tests); difference = transfer − scratch "
        "(negative: the transfer is better).",
        "",
        page_block(tests, protocols),
        "",
        "| target | n | versus | scratch mode | scratch MAE | transfer MAE | difference [95 % CI] | p | p Holm | q BH "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tests.itertuples():
        lines.append(
            f"| {r.target} | {r.size} | {r.versus} | {r.scratch_mode} | {r.mae_scratch:.4g} | {r.mae_transfer:.4g} "
            f"| {r.mean_diff:+.4g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}] | {_fmt_p(r.p_value)} | {_fmt_p(r.p_holm)} "
            f"| {_fmt_p(r.q_bh)} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"


def _read(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    tables = Path(folder) / "tables"
    return (
        pd.read_csv(tables / "comparison.csv", dtype={"size": str}),
        pd.read_csv(tables / "scratch_protocols.csv", dtype={"size": str}),
    )


def rewrite_page(folder: str | Path, page: str | Path) -> None:
    """The page's scratch-budget block from the folder's tables."""
    write_block(page, page_block(*_read(folder)), PAGE_BEGIN, PAGE_END)


def check_page(folder: str | Path, page: str | Path) -> list[str]:
    """Problems: the page's block is not the one the folder's tables give."""
    if not block_is(page, page_block(*_read(folder)), PAGE_BEGIN, PAGE_END):
        return [f"{page}: the scratch-budget table differs from {Path(folder) / 'tables'}"]
    return []


def publish(run_metrics: str | Path, study: str | Path, out: str | Path) -> pd.DataFrame:
    """Check, compare and write ``out``. Returns the tests."""
    run, pub, checked = load_pair(run_metrics, study, is_scratch)
    tests = compare(run, pub)
    protocols = protocol_table(scratch_candidates(run, pub))
    write_folder(
        out,
        run=run,
        tests=tests,
        checked=checked,
        run_metrics=run_metrics,
        study=study,
        summary=summary_markdown(tests, protocols, checked),
        info={"family": FAMILY, "opponents": OPPONENTS},
        tables={"scratch_protocols.csv": protocols},
    )
    return tests


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        argv,
        command="scratch-budget",
        description="Pair a scratch-protocol run with a published study seed by seed and test the study's transfer "
        "against scratch chosen on validation among its protocols (tlcgcnn.report.scratch_budget).",
        example_out="docs/results/scratch-protocol-cpu",
        publish=publish,
        rewrite_page=rewrite_page,
        check_page=check_page,
        family=FAMILY,
    )
