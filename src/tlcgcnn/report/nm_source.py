"""Does a source pretrained on non-metals only transfer better to non-metal targets? TL-CGCNN's
T6, cell by cell.

A non-metal-source run (``config/nm-source-cpu.yaml``: the ΔEf source pretrained on the
non-metals only, fine-tuned on the study's non-metal targets) is paired with a published study
folder (``docs/results/paper-cpu``) seed by seed, after
:func:`~tlcgcnn.report.backbones.check_same_cells` proves from the descriptor SVR both ran that
every (target, size, seed) has the same training, validation and test crystals.

Per (target, size) and non-metal-source mode, paired by seed, the non-metal source's error minus
(negative: the non-metal source is better):

* ``all_source``: the study's transfer from the all-materials source of the same property,
  fine-tuned the same way (same head re-initialisation, same frozen layers, fine-tuned weights,
  not frozen features); of several such sources, the largest;
* ``scratch``: the study's CGCNN from scratch.

One Holm family (:data:`FAMILY`), BH q-values beside.

A second family (:data:`KEEP_FAMILY`, for runs that have them): each source fine-tuned with
``validate_source`` (the source as it is competing on validation as epoch -1, the labels in its
own units), paired by seed with

* ``fine_tuned``: the same source fine-tuned without it (the run's mode, or the study's where
  the run does not have one: paper-cpu's ``ef_ft`` from the same checkpoint);
* ``zero_shot``: the same source's own prediction (the run's zero-shot control).

``python -m tlcgcnn.report nm-source RUN_METRICS STUDY OUT [--page PAGE]`` writes
``OUT/tables/`` (``metrics.csv``: the run's records, ``comparison.csv``, ``keep_source.csv``,
``same_cells.csv``: the check), ``OUT/figures/nm_source.png``, ``OUT/summary.md`` and
``OUT/provenance.json``; with ``--page`` it rewrites the blocks between :data:`PAGE_BEGIN` and
:data:`PAGE_END` (and :data:`KEEP_BEGIN` / :data:`KEEP_END`) of a results page.
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
    SCRATCH,
    ComparisonError,
    _errors,
    _fmt_p,
    _normalise,
    _title,
    adjust_family,
    block_is,
    draw_row,
    is_backbone,
    judge,
    load_pair,
    page_functions,
    paired_fields,
    picked_points,
    plot_series,
    run_cli,
    same_cells_text,
    sort_tests,
    write_block,
    write_folder,
)
from tlcgcnn.report.controls import _median_best_epoch, is_control

FAMILY = "nonmetal_source"
ALPHA = 0.05
SUBSET = "nonmetal"
OPPONENTS = {
    "all_source": "the all-materials source of the same property, fine-tuned the same way",
    "scratch": "CGCNN from scratch",
}
PAGE_BEGIN = "<!-- nm-source:begin -->"
PAGE_END = "<!-- nm-source:end -->"
KEEP_FAMILY = "keep_source"
KEEP_OPPONENTS = {
    "fine_tuned": "the same source fine-tuned without it (labels scaled on the n training crystals)",
    "zero_shot": "the same source's own prediction, nothing fitted",
}
KEEP_TABLE = "keep_source.csv"
KEEP_BEGIN = "<!-- keep-source:begin -->"
KEEP_END = "<!-- keep-source:end -->"


def is_kept(df: pd.DataFrame) -> pd.Series:
    """Records of a mode with ``validate_source`` (the source competing on validation)."""
    if "validate_source" not in df:
        return pd.Series(False, index=df.index)
    return df["validate_source"].astype(str).str.lower().eq("true")


def is_subset_source(df: pd.DataFrame) -> pd.Series:
    """Transfer records whose source was pretrained on the non-metals only."""
    if "pretrain_subset" not in df:
        return pd.Series(False, index=df.index)
    return df["family"].eq("transfer") & df["pretrain_subset"].eq(SUBSET)


def _tested(df: pd.DataFrame) -> pd.Series:
    """The non-metal source's modes that are paired: fine-tuned or frozen features, not a control,
    not a ``validate_source`` mode (those are :data:`KEEP_FAMILY`'s)."""
    return is_subset_source(df) & ~is_control(df) & ~is_kept(df)


def zero_shot_mae(run: pd.DataFrame, target: str, size: str) -> float:
    """The mean test MAE of the run's zero-shot control from the non-metal source in a cell (NaN
    where it has none): the source's prediction as is, what fine-tuning starts from."""
    if "features" not in run:
        return math.nan
    z = run[is_subset_source(run) & run["features"].eq("zero_shot") & run["target"].eq(target) & run["size"].eq(size)]
    return float(z["error"].mean()) if len(z) else math.nan


def _same_way(records: pd.DataFrame, like: pd.Series) -> pd.Series:
    """Which of ``records`` are fine-tuned like the record ``like``: the same re-initialisation and
    frozen layers (missing values compared as such)."""
    ok = pd.Series(True, index=records.index)
    for col in ("reinit", "freeze", "features"):
        if col in records:
            want = like.get(col)
            ok &= records[col].isna() if pd.isna(want) else records[col].astype(str).eq(str(want))
    return ok


def all_source_mode(cell: pd.DataFrame, like: pd.Series) -> str:
    """The study's mode of ``cell`` (one target and size) from an all-materials source of the
    property of ``like``'s source, fine-tuned the same way; of several, the largest source."""
    tl = cell[
        cell["family"].eq("transfer")
        & cell["pretrain_subset"].eq("all")
        & cell["pretrain_property"].eq(like["pretrain_property"])
        & ~is_control(cell)
        & ~is_backbone(cell)
    ]
    tl = tl[_same_way(tl, like)]
    if tl.empty:
        raise ComparisonError(
            f"{like['target']} n={like['size']}: the study has no transfer from an all-materials "
            f"{like['pretrain_property']} source fine-tuned like {like['mode']}"
        )
    sizes = tl.groupby("mode")["pretrain_size"].max().sort_index()
    return str(sizes.idxmax())


def compare(run: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """The family's paired tests (see the module docstring). Columns: target, size, mode,
    pretrain_size, versus, versus_mode, versus_pretrain_size, n_pairs, means and spreads,
    mean_diff (non-metal source − opponent) with its 95 % CI, improvement_rate, p_value, p_holm,
    q_bh, verdict."""
    run, study = _normalise(run), _normalise(study)
    nm = run[_tested(run)]
    if nm.empty:
        raise ComparisonError(f"the run has no transfer record from a source pretrained on the {SUBSET}s only")
    rows: list[dict[str, Any]] = []
    for (target, size, mode), g in nm.groupby(["target", "size", "mode"], sort=False):
        cell = study[study["target"].eq(target) & study["size"].eq(size)]
        mine = _errors(nm, target, size, mode)
        opponents = {"all_source": all_source_mode(cell, g.iloc[0]), "scratch": SCRATCH}
        zero_shot, best_epoch = zero_shot_mae(run, target, size), _median_best_epoch(g)
        for name, versus in opponents.items():
            theirs = _errors(study, target, size, versus)
            seeds = sorted(set(mine.index) & set(theirs.index))
            if len(seeds) < 2:
                raise ComparisonError(f"{target} n={size}: {mode} and the study's {versus} share {len(seeds)} seeds")
            res = paired(theirs.loc[seeds].to_numpy(), mine.loc[seeds].to_numpy())
            source_size = cell.loc[cell["mode"].eq(versus), "pretrain_size"]
            rows.append(
                {
                    "target": target,
                    "size": size,
                    "mode": mode,
                    "pretrain_size": float(g["pretrain_size"].iloc[0]),
                    "versus": name,
                    "versus_mode": versus,
                    "versus_pretrain_size": float(source_size.iloc[0]) if len(source_size) else math.nan,
                    "mae_zero_shot": zero_shot,
                    "best_epoch_median": best_epoch,
                    **paired_fields(res, "nonmetal", "versus"),
                }
            )
    out = sort_tests(pd.DataFrame(rows), "versus", list(OPPONENTS))
    return adjust_family(out, FAMILY, verdict)


verdict = judge("non-metal source better", "non-metal source worse")
"""The family's verdict for a difference and its Holm p."""


def _same_source(records: pd.DataFrame, like: pd.Series) -> pd.DataFrame:
    """Records of ``like``'s target, size and source (its ``pretrained`` name)."""
    return records[
        records["target"].eq(like["target"])
        & records["size"].eq(like["size"])
        & records["pretrained"].astype(str).eq(str(like["pretrained"]))
    ]


def keep_opponents(run: pd.DataFrame, study: pd.DataFrame, like: pd.Series) -> dict[str, tuple[pd.DataFrame, str]]:
    """Where each of :data:`KEEP_OPPONENTS` of the ``validate_source`` record ``like`` is: the
    records and the mode (the run's fine-tuned mode of the same source before the study's)."""
    out: dict[str, tuple[pd.DataFrame, str]] = {}
    for records in (run, study):
        same = _same_source(records, like)
        plain = same[same["family"].eq("transfer") & ~is_control(same) & ~is_kept(same) & _same_way(same, like)]
        if len(plain) and "fine_tuned" not in out:
            out["fine_tuned"] = (records, str(plain["mode"].iloc[0]))
    same = _same_source(run, like)
    zero = same[same["features"].eq("zero_shot")] if "features" in same else same.iloc[0:0]
    if len(zero):
        out["zero_shot"] = (run, str(zero["mode"].iloc[0]))
    missing = sorted(set(KEEP_OPPONENTS) - set(out))
    if missing:
        raise ComparisonError(
            f"{like['target']} n={like['size']}: {like['mode']} (validate_source from {like['pretrained']}) "
            f"has no {', '.join(missing)} mode of the same source in the run or the study"
        )
    return out


def keep_source_tests(run: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """The :data:`KEEP_FAMILY` tests (see the module docstring), empty for a run without a
    ``validate_source`` mode. Columns: target, size, mode, source, pretrain_subset,
    pretrain_size, versus, versus_mode, kept_seeds (seeds whose best epoch is -1: the source
    unchanged), best_epoch_median, the paired fields (mode ``kept``), p_holm, q_bh, verdict."""
    run, study = _normalise(run), _normalise(study)
    kept = run[is_kept(run)]
    if kept.empty:
        return pd.DataFrame()
    rows: list[dict[str, Any]] = []
    for (target, size, mode), g in kept.groupby(["target", "size", "mode"], sort=False):
        like = g.iloc[0]
        mine = _errors(run, target, size, mode)
        epochs = pd.to_numeric(g["best_epoch"], errors="coerce")
        for name, (records, versus) in keep_opponents(run, study, like).items():
            theirs = _errors(records, target, size, versus)
            seeds = sorted(set(mine.index) & set(theirs.index))
            if len(seeds) < 2:
                raise ComparisonError(f"{target} n={size}: {mode} and {versus} share {len(seeds)} seeds")
            res = paired(theirs.loc[seeds].to_numpy(), mine.loc[seeds].to_numpy())
            rows.append(
                {
                    "target": target,
                    "size": size,
                    "mode": mode,
                    "source": like["pretrained"],
                    "pretrain_subset": like["pretrain_subset"],
                    "pretrain_size": float(like["pretrain_size"]),
                    "versus": name,
                    "versus_mode": versus,
                    "kept_seeds": int((epochs == -1).sum()),
                    "best_epoch_median": _median_best_epoch(g),
                    **paired_fields(res, "kept", "versus"),
                }
            )
    out = pd.DataFrame(rows).sort_values(["pretrain_subset", "target"], kind="stable")
    out = pd.concat([sort_tests(part, "versus", list(KEEP_OPPONENTS)) for _, part in out.groupby("source", sort=False)])
    return adjust_family(out.reset_index(drop=True), KEEP_FAMILY, keep_verdict)


keep_verdict = judge("kept source better", "kept source worse")
"""The verdict of a :data:`KEEP_FAMILY` test (negative difference: keeping the source is better)."""


# --------------------------------------------------------------------------- figure
SERIES_STYLE = {
    "scratch": ("CGCNN from scratch", "black", "o"),
    "all_source": ("transfer from the all-materials ΔEf source", "tab:blue", "s"),
    "nonmetal": ("transfer from the non-metal ΔEf source", "tab:red", "D"),
}


def curve_points(run: pd.DataFrame, study: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Mean test MAE with its 95 % t interval over seeds, per target, size and series."""
    run, study = _normalise(run), _normalise(study)

    def picks(g: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str]]:
        return {"nonmetal": (run, str(g["mode"].iloc[0])), **{r.versus: (study, r.versus_mode) for r in g.itertuples()}}

    return picked_points(tests, picks)


def draw(run: pd.DataFrame, study: pd.DataFrame, tests: pd.DataFrame, png: str | Path) -> None:
    """One panel per target: test MAE against training crystals for scratch and both sources."""
    title = "Non-metal vs all-materials ΔEf source: mean test MAE, 95 % CI over seeds"
    draw_row(curve_points(run, study, tests), _normalise(run), SERIES_STYLE, title, png, log_y=True)


KEEP_STYLE = {
    "scratch": ("CGCNN from scratch", "black", "o"),
    "fine_tuned": ("source fine-tuned, labels scaled on the n crystals", "tab:blue", "s"),
    "zero_shot": ("source as it is, nothing fitted", "tab:grey", "x"),
    "kept": ("source fine-tuned with validate_source (drawn last: it lies on the source where kept)", "tab:red", "D"),
}


def keep_points(run: pd.DataFrame, study: pd.DataFrame, keep: pd.DataFrame) -> pd.DataFrame:
    """Mean test MAE with its 95 % t interval over seeds per panel (source and target), size and
    :data:`KEEP_STYLE` series: scratch from the study, the opponents where
    :func:`keep_opponents` finds them."""
    run, study = _normalise(run), _normalise(study)

    def picks(g: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str]]:
        first = g.iloc[0]
        like = run[run["target"].eq(first["target"]) & run["size"].eq(first["size"]) & run["mode"].eq(first["mode"])]
        return {"scratch": (study, SCRATCH), **keep_opponents(run, study, like.iloc[0]), "kept": (run, first["mode"])}

    parts = [
        picked_points(g, picks).assign(panel=f"{source}|{target}")
        for (source, target), g in keep.groupby(["source", "target"], sort=False)
    ]
    return pd.concat(parts, ignore_index=True)


def draw_keep(run: pd.DataFrame, study: pd.DataFrame, keep: pd.DataFrame, png: str | Path) -> None:
    """One panel per source and target: test MAE against training crystals for scratch, the
    plain fine-tuning, validate_source and the source as it is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker

    from tlcgcnn.report.figures.labels import source_label
    from tlcgcnn.report.figures.style import error_label, save

    pts, records = keep_points(run, study, keep), _normalise(run)
    panels = list(dict.fromkeys(pts["panel"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=True):
        source, target = panel.split("|")
        first = keep[keep["source"].eq(source) & keep["target"].eq(target)].iloc[0]
        mine = records[records["target"].eq(target)]
        plot_series(ax, pts[pts["panel"].eq(panel)], KEEP_STYLE)
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(mticker.LogLocator(subs=(2.0, 3.0, 5.0)))  # labels that do not collide
        ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(mticker.FormatStrFormatter("%g"))
        ax.set_ylabel(error_label(mine))
        src = source_label(
            records.loc[records["pretrained"].eq(source), "pretrain_property"].iloc[0], first["pretrain_subset"]
        )
        ax.set_title(f"{src} source → {_title(mine.iloc[0])}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.suptitle("Keeping a same-quantity source: mean test MAE, 95 % CI over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.14, 1, 0.95))
    save(fig, png)
    plt.close(fig)


# --------------------------------------------------------------------------- summary and page
def _cell_text(r: Any) -> str:
    """A test as the page shows it: the relative difference (over the opponent's MAE), Holm p,
    ✓ the non-metal source significantly better, ✗ significantly worse."""
    rel = 100.0 * r.mean_diff / r.mae_versus if r.mae_versus else math.nan
    mark = {"non-metal source better": " ✓", "non-metal source worse": " ✗"}.get(r.verdict, "")
    return f"{rel:+.0f} % ({_fmt_p(r.p_holm)}){mark}"


def page_block(tests: pd.DataFrame) -> str:
    """The results page's table: per (target, n) scratch's, both sources' and the non-metal
    source's zero-shot test MAE, its median best epoch, and the non-metal source against each
    opponent."""
    lines = [
        "| target | n | seeds | scratch | all-materials source (mode) | non-metal source (mode, median best epoch) "
        "| non-metal source as is | vs all-materials source | vs scratch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (target, size), g in tests.groupby(["target", "size"], sort=False):
        by = {r.versus: r for r in g.itertuples()}
        a, s = by["all_source"], by["scratch"]
        zero = f"{a.mae_zero_shot:.3g}" if np.isfinite(a.mae_zero_shot) else "–"
        lines.append(
            f"| {target} | {size} | {a.n_pairs} | {s.mae_versus:.3g} | {a.mae_versus:.3g} ({a.versus_mode}) "
            f"| {a.mae_nonmetal:.3g} ({a.mode}, {a.best_epoch_median:g}) | {zero} | {_cell_text(a)} | {_cell_text(s)} |"
        )
    return "\n".join(lines)


def _interval(r: Any) -> str:
    """A test's 95 % CI as text, "–" where it has none (no spread in the differences)."""
    if not (np.isfinite(r.ci_low) and np.isfinite(r.ci_high)):
        return "[–]"
    return f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}]"


def _keep_text(r: Any) -> str:
    """A :data:`KEEP_FAMILY` test as the page shows it (relative difference, Holm p, ✓ / ✗)."""
    rel = 100.0 * r.mean_diff / r.mae_versus if r.mae_versus else math.nan
    mark = {"kept source better": " ✓", "kept source worse": " ✗"}.get(r.verdict, "")
    return f"{rel:+.0f} % ({_fmt_p(r.p_holm)}){mark}"


def keep_block(keep: pd.DataFrame) -> str:
    """The results page's table of the :data:`KEEP_FAMILY` tests: per source and n, the plain
    fine-tuning's, the kept source's and the source's own test MAE, how many seeds kept the
    source unchanged, and the tests."""
    lines = [
        "| source | target | n | seeds | fine-tuned (mode) | source as is | validate_source (mode, seeds kept as is) "
        "| vs fine-tuned | vs as is |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (source, target, size), g in keep.groupby(["source", "target", "size"], sort=False):
        by = {r.versus: r for r in g.itertuples()}
        f, z = by["fine_tuned"], by["zero_shot"]
        lines.append(
            f"| {source} ({f.pretrain_subset}, {f.pretrain_size:,.0f}) | {target} | {size} | {f.n_pairs} "
            f"| {f.mae_versus:.3g} ({f.versus_mode}) | {z.mae_versus:.3g} | {f.mae_kept:.3g} ({f.mode}, "
            f"{f.kept_seeds} of {f.n_pairs}) | {_keep_text(f)} | {_keep_text(z)} |"
        )
    return "\n".join(lines)


def summary_markdown(tests: pd.DataFrame, checked: pd.DataFrame, name: str, keep: pd.DataFrame | None = None) -> str:
    """The folder's ``summary.md``: what was compared, the check, every test."""
    first = tests[tests["versus"].eq("all_source")].iloc[0]
    lines = [
        f"# A non-metal ΔEf source for non-metal targets ({name})",
        "",
        f"The non-metal source ({first['pretrain_size']:,.0f} training crystals) against the study's "
        f"all-materials source ({first['versus_pretrain_size']:,.0f}) fine-tuned the same way, and against "
        "CGCNN from scratch.",
        "",
        same_cells_text(checked),
        "",
        f"One Holm family (`{FAMILY}`, {int(tests['family_size'].iloc[0])} tests); difference = non-metal source "
        "− opponent (negative: the non-metal source is better).",
        "",
        "| target | n | mode | versus | versus mode | non-metal MAE | versus MAE | difference [95 % CI] | p "
        "| p Holm | q BH | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tests.itertuples():
        lines.append(
            f"| {r.target} | {r.size} | {r.mode} | {r.versus} | {r.versus_mode} | {r.mae_nonmetal:.4g} "
            f"| {r.mae_versus:.4g} | {r.mean_diff:+.4g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}] | {_fmt_p(r.p_value)} "
            f"| {_fmt_p(r.p_holm)} | {_fmt_p(r.q_bh)} | {r.verdict} |"
        )
    lines += ["", "![non-metal vs all-materials source](figures/nm_source.png)", ""]
    if keep is not None and len(keep):
        lines += [
            "## Keeping the source (validate_source)",
            "",
            "Each source of the target's own quantity fine-tuned with every weight kept, the labels in its own "
            "units and the source as it is competing on validation as epoch -1, against the same source "
            "fine-tuned without it and against its own prediction (no interval or p where every seed kept the "
            f"source: no spread). One Holm family (`{KEEP_FAMILY}`, {int(keep['family_size'].iloc[0])} "
            "tests); difference = validate_source − opponent.",
            "",
            "| source | target | n | mode | versus | versus mode | seeds kept as is | MAE | versus MAE "
            "| difference [95 % CI] | p | p Holm | q BH | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in keep.itertuples():
            lines.append(
                f"| {r.source} | {r.target} | {r.size} | {r.mode} | {r.versus} | {r.versus_mode} | {r.kept_seeds} "
                f"| {r.mae_kept:.4g} | {r.mae_versus:.4g} | {r.mean_diff:+.2g} {_interval(r)} "
                f"| {_fmt_p(r.p_value)} | {_fmt_p(r.p_holm)} | {_fmt_p(r.q_bh)} | {r.verdict} |"
            )
        lines += ["", "![keeping the source](figures/keep_source.png)", ""]
    return "\n".join(lines)


_rewrite_nm, _check_nm = page_functions(page_block, PAGE_BEGIN, PAGE_END, "non-metal source")


def read_keep(folder: str | Path) -> pd.DataFrame | None:
    """A published folder's :data:`KEEP_TABLE` (None where the run had no such mode)."""
    path = Path(folder) / "tables" / KEEP_TABLE
    return pd.read_csv(path, dtype={"size": str}) if path.is_file() else None


def rewrite_page(folder: str | Path, page: str | Path) -> None:
    """The page's non-metal-source block, and its keep-source block where the folder has one."""
    _rewrite_nm(folder, page)
    keep = read_keep(folder)
    if keep is not None:
        write_block(page, keep_block(keep), KEEP_BEGIN, KEEP_END)


def check_page(folder: str | Path, page: str | Path) -> list[str]:
    """Problems of the page's blocks against the folder's tables (empty: none)."""
    problems = _check_nm(folder, page)
    keep = read_keep(folder)
    if keep is not None and not block_is(page, keep_block(keep), KEEP_BEGIN, KEEP_END):
        problems.append(f"{page}: the keep-source table differs from {Path(folder) / 'tables' / KEEP_TABLE}")
    return problems


def publish(run_metrics: str | Path, study: str | Path, out: str | Path) -> pd.DataFrame:
    """Check, compare and write ``out`` (see the module docstring). Returns the tests."""
    run, pub, checked = load_pair(run_metrics, study, is_subset_source)
    tests = compare(run, pub)
    keep = keep_source_tests(run, pub)
    write_folder(
        out,
        run=run,
        tests=tests,
        checked=checked,
        run_metrics=run_metrics,
        study=study,
        summary=summary_markdown(tests, checked, Path(out).name, keep),
        info={
            "family": FAMILY,
            "opponents": OPPONENTS,
            **({"keep_family": KEEP_FAMILY, "keep_opponents": KEEP_OPPONENTS} if len(keep) else {}),
        },
        figure=("nm_source.png", lambda png: draw(run, pub, tests, png)),
        tables={KEEP_TABLE: keep} if len(keep) else None,
    )
    if len(keep):
        draw_keep(run, pub, keep, Path(out) / "figures" / "keep_source.png")
    return tests


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        argv,
        command="nm-source",
        description="Pair a non-metal-source run with a published study seed by seed and test the non-metal "
        "source against the all-materials one and scratch (tlcgcnn.report.nm_source).",
        example_out="docs/results/nm-source-cpu",
        publish=publish,
        rewrite_page=rewrite_page,
        check_page=check_page,
        family=FAMILY,
    )
