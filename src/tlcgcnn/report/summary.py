"""Summary writing: a published folder's ``summary.md`` and the Markdown tables it shares.

Owns the formatting of numbers in the published results (:func:`fmt_error`,
:func:`fmt_change`, :func:`fmt_p`), the claims table (:func:`claim_cells`,
:func:`claims_table`; the results page's block is made of these, :mod:`.readme`) and
:func:`summary_markdown`: what ran (config, data, pretraining sources, targets, seeds,
modes, devices, job time), the claims, the paired t-tests per Holm family, the multi-task
comparison, the ΔEf–Eg correlation, every figure with its caption, the compute per rule and
links to the published tables. Torch-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.analysis.stats import FAMILIES
from tlcgcnn.report.claims import ALPHA, OTHER_FAMILY, property_label, selected_source
from tlcgcnn.report.figures.labels import scheme
from tlcgcnn.report.provenance import device_kind, devices, size_key

README_HEADER = (
    "id",
    "paper",
    "claim",
    "paper's number",
    "cell",
    "ours: mode vs compared (change)",
    "p (Holm)",
    "held",
)


def fmt_error(x: float) -> str:
    """A test error: 4 significant digits (1.385, 0.0934)."""
    return "–" if not math.isfinite(x) else f"{x:.4g}"


def fmt_change(pct: float) -> str:
    """A change in per cent with its sign (−46 %, +11 %)."""
    if not math.isfinite(pct):
        return "–"
    return f"{pct:+.0f} %".replace("-", "−")


def fmt_p(p: float) -> str:
    """A p-value: 2 significant digits, short exponents (0.0019, 6.9e-5, 1)."""
    if p is None or not math.isfinite(p):
        return "–"
    s = f"{p:.2g}"
    if "e" in s:
        mantissa, exp = s.split("e")
        s = f"{mantissa}e{int(exp)}"
    return s


def held_text(verdict_text: str) -> str:
    return "yes" if verdict_text == "held" else f"no: {verdict_text}"


def _cell(text: Any) -> str:
    """Text for a Markdown table cell (pipes escaped, one line)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def mode_label(written: str, resolved: str) -> str:
    """A claim's mode as tables show it: the name, or for ``selected:<source>`` e.g.
    "ef_head (selected on validation from zoo_ef)"."""
    src = selected_source(str(written))
    return str(resolved) if src is None else f"{resolved} (selected on validation from {src})"


def claim_cells(row: Mapping[str, Any]) -> list[str]:
    """The README / summary table cells of one claims.csv row (columns :data:`README_HEADER`)."""
    if str(row.get("kind") or "compare") == "multitask":
        mode, versus = f"multi-task {row['resolved_mode']}", f"single-task {row['resolved_versus']}"
        cell = f"{row['target_label']}, pretraining n = {row['size']} ({int(row['n_seeds'])} test crystals)"
    else:
        mode, versus = mode_label(row["mode"], row["resolved_mode"]), mode_label(row["versus"], row["resolved_versus"])
        cell = f"{row['target_label']}, n = {row['size']}"
    ours = (
        f"{mode} {fmt_error(float(row['ours_mode_error']))} vs {versus} "
        f"{fmt_error(float(row['ours_versus_error']))} ({fmt_change(float(row['change_pct']))})"
    )
    return [
        _cell(x)
        for x in (
            row["id"],
            row["paper"],
            row["claim"],
            row["paper_value"],
            cell,
            ours,
            fmt_p(float(row["p_holm"])),
            held_text(str(row["verdict"])),
        )
    ]


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def claims_table(claims: pd.DataFrame) -> str:
    """The claims as a Markdown table; a sentence when there are none."""
    if claims.empty:
        return "No claims are configured for this run (`report.claims`)."
    return _table(README_HEADER, (claim_cells(r) for r in claims.to_dict("records")))


def _thousands(n: Any) -> str:
    return f"{int(n):,}"


def _mode_text(name: str, mode: Mapping[str, Any], baseline: str) -> str:
    if mode.get("estimator") and mode.get("features") == "frozen":
        text = f"`{name}`: {mode['estimator']} on the crystal vector of `{mode.get('pretrained')}` (frozen)"
    elif mode.get("estimator"):
        text = f"`{name}`: {mode['estimator']} on composition descriptors"
    elif mode.get("pretrained"):
        text = f"`{name}`: from `{mode['pretrained']}`, {scheme(mode.get('freeze', 0), mode.get('reinit', 'none'))}"
    else:
        text = f"`{name}`: from scratch"
    if mode.get("model"):
        text += f" (model variant `{mode['model']}`)"
    return text + (" (the baseline)" if name == baseline else "")


def _seeds_text(ft: Mapping[str, Any]) -> str:
    seeds = list(ft.get("seeds") or [])
    text = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"
    if ft.get("seeds_large") and ft.get("large_from") is not None:
        text += f"; {len(ft['seeds_large'])} from size {ft['large_from']} on"
    return text


def _what_ran(
    s: Mapping[str, Any],
    ingest: Mapping[str, Any],
    pretrain: Sequence[Mapping[str, Any]],
    metrics: pd.DataFrame,
    wall: Mapping[str, Any],
) -> list[str]:
    cfg = s["config"]
    ft = cfg["finetune"]
    files = ", ".join(f"`{f}`" for f in s.get("configfiles") or []) or "(given on the command line)"
    out = [
        f"* Config: {files}, name `{cfg['name']}` "
        f"(resolved config sha256 `{s['config_sha256'][:12]}…`; all of it in provenance.json)."
    ]
    out.append(
        f"* Data: `{ingest.get('input')}` (sha256 `{str(ingest.get('input_sha256'))[:12]}…`): "
        f"{_thousands(ingest.get('rows_kept', 0))} crystals kept of {_thousands(ingest.get('rows_in', 0))}."
    )
    pre_by_name = {str(p.get("pretrain", p.get("target"))): p for p in pretrain}
    for src in cfg.get("pretrain") or []:
        t = src["target"]
        what = "+".join(t.get("properties") or [t["property"]])
        line = f"* Pretraining source `{src['name']}`: {what}"
        if src.get("checkpoint"):
            line += f", checkpoint file `{src['checkpoint']}`"
        else:
            line += f" ({t.get('subset', 'all')} crystals, size {src['size']}, seed {src['seed']})"
        m = pre_by_name.get(src["name"])
        if m is not None and m.get("mae") is not None:
            line += (
                f": test MAE {fmt_error(float(m['mae']))} on {_thousands(m['n_test'])} test crystals "
                f"after training on {_thousands(m['n_train'])}"
            )
        out.append(line + ".")
    labels = s.get("labels") or {}
    for t in ft["targets"]:
        sizes = t.get("sizes") or ft["sizes"]
        out.append(
            f"* Target `{t['name']}` ({labels.get(t['name'], t['name'])}): {t['property']}"
            f"{', log10' if t.get('transform') == 'log10' else ''}, {t.get('subset', 'all')} crystals, "
            f"{t.get('task', 'regression')}; "
            f"training sizes {', '.join(map(str, sizes))}."
        )
    out.append(
        f"* Seeds: {_seeds_text(ft)}. Modes: "
        + "; ".join(_mode_text(n, m, s["baseline"]) for n, m in ft["modes"].items())
        + "."
    )
    if not metrics.empty:
        cells = metrics.drop_duplicates(["target", "size", "mode"]).shape[0]
        out.append(
            f"* Runs: {_thousands(len(metrics))} fine-tuning runs in {_thousands(cells)} cells, "
            "each scored on its target's fixed test set."
        )
    out.extend(_devices_text(devices(metrics, pretrain)))
    if wall.get("jobs"):
        out.append(
            f"* Job time: {_duration(wall['total_s'])}, "
            f"the wall times of {_thousands(wall['jobs'])} jobs summed (jobs that ran "
            "in parallel overlap, so the run itself took less; per rule in provenance.json)"
            + (f"; CPU time {_duration(wall['total_cpu_s'])}" if wall.get("total_cpu_s") is not None else "")
            + "."
        )
    return out


def _devices_text(dev: Mapping[str, Any]) -> list[str]:
    runs = dev["finetune_runs"]
    out = []
    if runs:
        parts = [
            f"{_thousands(sum(by.values()))} on {where} "
            f"({', '.join(f'{p} {_thousands(n)}' for p, n in sorted(by.items()))})"
            for where, by in sorted(runs.items(), key=lambda kv: -sum(kv[1].values()))
        ]
        line = "* Devices: fine-tuning runs " + "; ".join(parts) + "."
        off = dev["cells_off_main_device"]
        if off:
            cells = []
            for cell, v in off.items():
                seeds = "; ".join(
                    f"{n} of {v['of']} on {w}" for w, n in v["seeds"].items() if device_kind(w) != dev["main_device"]
                )
                cells.append(f"`{cell}` ({seeds})")
            line += f" Cells with seeds off {dev['main_device']}: " + ", ".join(cells) + "."
        out.append(line)
    by_where: dict[str, list[str]] = {}
    for name, where in dev["pretrain"].items():
        by_where.setdefault(where or "device not recorded", []).append(f"`{name}`")
    if len(by_where) > 1:
        out.append(
            "* Pretraining sources by device: "
            + "; ".join(f"{w}: {', '.join(n)}" for w, n in sorted(by_where.items()))
            + "."
        )
    elif by_where and "device not recorded" not in by_where:
        out.append(f"* Pretraining sources: all on {next(iter(by_where))}.")
    return out


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m} min {sec} s" if h else f"{m} min {sec} s"


def compute_table(wall: Mapping[str, Any]) -> str:
    """Job time per rule (:func:`wall_times`), longest first, with the total: the rule,
    its jobs, the summed wall time of its jobs and, where recorded, their CPU time."""
    per = sorted((wall.get("per_rule") or {}).items(), key=lambda kv: -kv[1]["s"])
    rows = [
        (f"`{rule}`", _thousands(v["jobs"]), _duration(v["s"]), _duration(v["cpu_s"]) if "cpu_s" in v else "–")
        for rule, v in per
    ]
    cpu_total = wall.get("total_cpu_s")
    rows.append(
        (
            "**total**",
            _thousands(wall.get("jobs", 0)),
            _duration(float(wall.get("total_s", 0.0))),
            _duration(cpu_total) if cpu_total is not None else "–",
        )
    )
    return _table(("rule", "jobs", "job time", "CPU time"), rows)


def _family_table(tests: pd.DataFrame, labels: Mapping[str, str]) -> str:
    header = (
        "target",
        "n",
        "mode",
        "compared with",
        "error (compared)",
        "error (mode)",
        "change",
        "p",
        "p (Holm)",
        "pairs",
    )
    rows = []
    ordered = tests.assign(_size=tests["size"].map(size_key)).sort_values(["target", "_size", "mode"])
    for r in ordered.to_dict("records"):
        change = 100.0 * (r["mae_mode"] - r["mae_baseline"]) / r["mae_baseline"]
        rows.append(
            [
                _cell(x)
                for x in (
                    labels.get(r["target"], r["target"]),
                    r["size"],
                    r["mode"],
                    r["baseline"],
                    fmt_error(r["mae_baseline"]),
                    fmt_error(r["mae_mode"]),
                    fmt_change(change),
                    fmt_p(r["p_value"]),
                    fmt_p(r["p_holm"]),
                    int(r["n_pairs"]),
                )
            ]
        )
    return _table(header, rows)


def correlation_text(c: Mapping[str, Any]) -> str:
    """One sentence on two properties' correlation (stats/ef_eg_correlation.json)."""
    return (
        f"Over the {_thousands(c['n'])} crystals with both, "
        f"{property_label(str(c['x']))} and {property_label(str(c['y']))} "
        f"have Pearson r = {float(c['pearson_r']):.3f} "
        f"(95 % CI {float(c['pearson_ci_low']):.3f} to {float(c['pearson_ci_high']):.3f}, "
        f"p = {fmt_p(float(c['pearson_p']))}) and Spearman ρ = {float(c['spearman_rho']):.3f}."
    )


def _multitask_table(mt: pd.DataFrame) -> str:
    header = (
        "property",
        "pretraining n",
        "multi-task",
        "single-task",
        "test crystals",
        "MAE (multi)",
        "MAE (single)",
        "change",
        "Spearman ρ (multi / single)",
        "p (Holm)",
    )
    rows = []
    ordered = mt.assign(_size=mt["size"].map(size_key)).sort_values(["property", "_size"])
    for r in ordered.to_dict("records"):
        rows.append(
            [
                _cell(x)
                for x in (
                    property_label(str(r["property"])),
                    r["size"],
                    r["mt_source"],
                    r["st_source"],
                    int(r["n_test"]),
                    fmt_error(float(r["mae_mt"])),
                    fmt_error(float(r["mae_st"])),
                    fmt_change(float(r["change_pct"])),
                    f"{float(r['spearman_mt']):.4f} / {float(r['spearman_st']):.4f}",
                    fmt_p(float(r["p_holm"])),
                )
            ]
        )
    return _table(header, rows)


def _caption_text(rst: str) -> str:
    """A report caption (reStructuredText) as one Markdown line."""
    return " ".join(rst.replace("``", "`").split())


def summary_markdown(
    settings: Mapping[str, Any],
    claims: pd.DataFrame,
    tests: pd.DataFrame,
    metrics: pd.DataFrame,
    ingest: Mapping[str, Any],
    pretrain: Sequence[Mapping[str, Any]],
    figures: Sequence[tuple[str, str]],
    tables: Sequence[str],
    wall: Mapping[str, Any],
    multitask: pd.DataFrame | None = None,
    correlation: Mapping[str, Any] | None = None,
) -> str:
    """The human summary: ``figures`` are (stem, link relative to the summary), ``tables``
    links to the published tables; ``multitask`` (stats/multitask.csv) and ``correlation``
    (stats/ef_eg_correlation.json) get their own sections."""
    name = settings["config"]["name"]
    labels = settings.get("labels") or {}
    parts = [
        f"# Results: `{name}`",
        f"Published from `{settings['results']}/` by the rule `report` (`tlcgcnn.report`); "
        "data and config hashes, "
        "code commit, machine and wall time per rule are in [provenance.json](provenance.json). "
        f"Errors are test errors on each target's fixed test set (MAE in the target's units; 1 − ROC-AUC for "
        f"classification), mean over the paired seeds.",
        "## What ran",
        "\n".join(_what_ran(settings, ingest, pretrain, metrics, wall)),
        "## Claims of the papers",
        f"A claim holds when its mode's test error is lower (or, where claimed, higher) than the compared mode's "
        f"with a Holm-adjusted paired t-test p < {ALPHA}; *not significant*: p ≥ {ALPHA}; *reversed*: significant "
        f"the other way. Comparisons with the baseline are Holm-corrected within their family in "
        f"`tables/ttests.csv`; the claims' other comparisons within their own family (`{OTHER_FAMILY}`). "
        "All numbers: [claims.csv](claims.csv).",
        claims_table(claims),
        "## Paired t-tests against the baseline",
    ]
    if tests.empty:
        parts.append("No paired tests (no mode besides the baseline).")
    for fam, grp in tests.groupby("holm_family", sort=True) if not tests.empty else []:
        parts.append(f"### `{fam}`")
        parts.append(f"{FAMILIES.get(str(fam), str(fam))}; Holm correction over these {len(grp)} tests.")
        parts.append(_family_table(grp, labels))
    if multitask is not None and not multitask.empty:
        parts.append("## Multi-task vs single-task pretraining (MT-CGCNN)")
        parts.append(
            "Each multi-task source against the single-task source of one of its properties, "
            "trained on the same crystals and scored on the same test set; "
            "paired t-test over the test crystals' absolute errors, Holm-corrected over "
            f"these {len(multitask)} tests. Errors in the property's units."
        )
        parts.append(_multitask_table(multitask))
    if correlation:
        parts.append("## ΔEf and Eg (TL-CGCNN's density scatter)")
        parts.append(correlation_text(correlation))
    parts.append("## Figures")
    captions = settings.get("captions") or {}
    if not figures:
        parts.append("The config requests no figures.")
    for stem, link in figures:
        caption = _caption_text(captions.get(stem, stem))
        parts.append(f"**{stem}.** {caption}\n\n![{caption.replace('[', '(').replace(']', ')')}]({link})")
    if wall.get("per_rule"):
        parts.append("## Compute per rule")
        parts.append(
            "The wall time of each rule's jobs summed from Snakemake's benchmark files "
            "(jobs that ran in parallel overlap), "
            "and their CPU time where recorded."
        )
        parts.append(compute_table(wall))
    parts.append("## Tables")
    parts.append("\n".join(f"* [{Path(t).name}]({t})" for t in tables) or "None.")
    return "\n\n".join(parts) + "\n"


def table_rows(text: str, header: Sequence[str]) -> Iterator[list[str]]:
    """The cells of each data row of the Markdown table(s) in ``text``: lines starting with
    ``|``, split on unescaped bars, the ``header`` row and separator rows left out (the reverse
    of :func:`_table`, for the checks that a page's table equals its CSV)."""
    for line in text.splitlines():
        if not line.strip().startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if tuple(cells) == tuple(header) or all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        yield cells
