"""Publishing a run: the folder ``<report.dir>/<name>/`` and its check against its own tables.

``<report.dir>/<name>/`` (default ``docs/results/<name>/``) is what a finished run puts into the
repository, built only when asked for (rules/report.smk):

* ``tables/*.csv``: copies of the run's statistics tables (``results/<name>/stats/``,
  ``protocol.csv`` included; :func:`copy_file`, rule ``report_copy``);
* ``figures/*.png``: copies of the figures the config requests (the registry's ``requested``);
* ``claims.csv``: one row per claim of the papers (:mod:`.claims`);
* ``summary.md``: what ran, the claims, the paired t-tests per Holm family, every figure with
  its caption (:mod:`.summary`);
* ``provenance.json``: the data and config hashes the run records carry, the resolved config,
  the code version (and whether the working tree differed from it), the machine
  (:mod:`.provenance`), and the wall time per rule summed from the run's benchmark files
  (:func:`wall_times`).

:func:`publish` (rule ``report``) writes the last three; :func:`check_published` verifies that a
published folder's claims.csv is what its published tables give and that every figure its
summary links exists. Torch-free.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.analysis.stats import read_table
from tlcgcnn.report.claims import NUMERIC_COLUMNS, SPEC_COLUMNS, ReportError, build_claims, read_claims
from tlcgcnn.report.provenance import code_state, machine, provenance
from tlcgcnn.report.summary import fmt_p, mode_label, summary_markdown
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

# rules named by their benchmark files below results/<name>/benchmarks/ (rules/*.smk)
_BENCHMARK_RULES: tuple[tuple[str, str], ...] = (
    (r"evaluate/pretrain/[^/]+\.tsv", "evaluate_pretrain"),
    (r"external/[^/]+/ingest\.tsv", "ingest_external"),
    (r"external/[^/]+/featurize\.tsv", "featurize_external"),
    (r"external/[^/]+/overlap\.tsv", "external_overlap"),
    (r"external/[^/]+/[^/]+\.tsv", "evaluate_external"),
    (r"figures/[^/]+\.tsv", "figure"),
    (r"pretrain/[^/]+\.tsv", "pretrain"),
    (r"([^/]+)\.tsv", r"\1"),
)
REPORT_BENCHMARKS = "report"  # the report rules' own benchmark folder: not summed


def benchmark_rule(
    relpath: str,
    baseline_modes: Iterable[str] = (),
    frozen_modes: Iterable[str] = (),
    readout_modes: Iterable[str] = (),
) -> str | None:
    """The rule that wrote a benchmark file (path below ``results/<name>/benchmarks/``, as
    rules/*.smk name them); None for the report rules' own files. A fine-tuning cell of a
    scikit-learn baseline mode is ``finetune_baseline``, of a frozen-features mode
    ``finetune_frozen``, of a backbone read-out mode ``finetune_readout``."""
    rel = relpath.replace(os.sep, "/")
    if rel.split("/")[0] == REPORT_BENCHMARKS:
        return None
    m = re.fullmatch(r"finetune/[^/]+/n[^/]+/([^/]+)\.tsv", rel)
    if m:
        mode = m.group(1)
        return (
            "finetune_baseline"
            if mode in set(baseline_modes)
            else "finetune_frozen"
            if mode in set(frozen_modes)
            else "finetune_readout"
            if mode in set(readout_modes)
            else "finetune"
        )
    m = re.fullmatch(r"backbones/([^/]+)\.tsv", rel)
    if m:  # one embedding rule per backbone package (rules/backbones.smk)
        from tlcgcnn.features.backbones import BACKBONES

        bb = BACKBONES.get(m.group(1))
        return "embed_backbone_sevenn" if bb is not None and bb.package == "sevenn" else "embed_backbone"
    for pattern, rule in _BENCHMARK_RULES:
        hit = re.fullmatch(pattern, rel)
        if hit:
            return hit.expand(rule)
    return rel.removesuffix(".tsv")


def wall_times(
    bench_dir: str | Path,
    baseline_modes: Iterable[str] = (),
    frozen_modes: Iterable[str] = (),
    readout_modes: Iterable[str] = (),
) -> dict[str, Any]:
    """Wall time (the ``s`` column of Snakemake's benchmark files) summed per rule, with the
    number of jobs, and the total; the report rules' own files are left out. Where the files
    have Snakemake's ``cpu_time`` column its sum is ``cpu_s`` (CPU seconds: unlike the wall
    time, not inflated when other work shared the machine); ``jobs`` counts the benchmark
    files (one per job)."""
    root = Path(bench_dir)
    per: dict[str, dict[str, Any]] = {}
    jobs = 0
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rule = benchmark_rule(str(path.relative_to(root)), baseline_modes, frozen_modes, readout_modes)
        if rule is None:
            continue
        df = pd.read_csv(path, sep="\t")
        if "s" not in df.columns:
            raise ReportError(f"{path}: a benchmark file without the `s` (seconds) column")
        jobs += 1
        entry = per.setdefault(rule, {"s": 0.0, "jobs": 0})
        entry["s"] += float(df["s"].sum())
        entry["jobs"] += 1
        if "cpu_time" in df.columns:
            entry["cpu_s"] = entry.get("cpu_s", 0.0) + float(
                pd.to_numeric(df["cpu_time"], errors="coerce").fillna(0.0).sum()
            )
    per = {
        k: {"s": round(v["s"], 2), "jobs": v["jobs"], **({"cpu_s": round(v["cpu_s"], 2)} if "cpu_s" in v else {})}
        for k, v in sorted(per.items())
    }
    out = {"per_rule": per, "total_s": round(sum(v["s"] for v in per.values()), 2), "jobs": jobs, "source": str(root)}
    if any("cpu_s" in v for v in per.values()):
        out["total_cpu_s"] = round(sum(v.get("cpu_s", 0.0) for v in per.values()), 2)
    return out


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Workflow entry (rule report_copy): publish one table or figure, written atomically."""
    with io.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    log.info("published %s -> %s", src, dst)


def publish(
    *,
    tests: str | Path,
    metrics: str | Path,
    ingest_summary: str | Path,
    pretrain_metrics: Sequence[str | Path],
    tables: Sequence[str | Path],
    figures: Sequence[str | Path],
    out_claims: str | Path,
    out_summary: str | Path,
    out_provenance: str | Path,
    settings: Mapping[str, Any],
    protocol: str | Path | None = None,
    multitask: str | Path | None = None,
    correlation: str | Path | None = None,
) -> pd.DataFrame:
    """Workflow entry (rule report): claims.csv, summary.md and provenance.json. ``protocol``:
    the run's stats/protocol.csv (resolves ``selected:`` claims; published as tables/protocol.csv);
    ``multitask``: its stats/multitask.csv (``kind: multitask`` claims), where the run has one;
    ``correlation``: its stats/ef_eg_correlation.json (the ΔEf–Eg Pearson r, in the summary).

    ``settings``: ``config`` (resolved, Config.as_dict), ``config_sha256``, ``configfiles``,
    ``baseline``, ``baseline_modes``, ``frozen_modes``, ``readout_modes``, ``claims`` (Config.claims),
    ``labels`` (target labels),
    ``captions`` (figure stem → caption), ``results`` (the run's results folder), ``repo`` and
    ``report_dir`` (left out of the dirty check)."""
    tests_df, metrics_df = read_table(tests), read_table(metrics)
    protocol_df = read_table(protocol) if protocol is not None else pd.DataFrame()
    multitask_df = read_table(multitask) if multitask is not None else pd.DataFrame()
    claims = build_claims(
        settings.get("claims") or [],
        tests_df,
        metrics_df,
        settings["baseline"],
        settings.get("labels"),
        (str(tests), str(metrics), str(protocol or "stats/protocol.csv"), str(multitask or "stats/multitask.csv")),
        protocol_df,
        multitask_df,
    )
    io.write_csv(claims, out_claims)
    for r in claims.itertuples():
        log.info(
            "claim %s: %s %.4g vs %s %.4g, p_holm=%s: %s",
            r.id,
            mode_label(r.mode, r.resolved_mode),
            r.ours_mode_error,
            mode_label(r.versus, r.resolved_versus),
            r.ours_versus_error,
            fmt_p(r.p_holm),
            r.verdict,
        )
    ingest = io.read_json(ingest_summary)
    pretrain = [io.read_json(p) for p in pretrain_metrics]
    wall = wall_times(
        Path(settings["results"]) / "benchmarks",
        settings.get("baseline_modes") or (),
        settings.get("frozen_modes") or (),
        settings.get("readout_modes") or (),
    )
    here = Path(out_summary).parent
    figs = [(Path(f).stem, Path(os.path.relpath(f, here)).as_posix()) for f in figures]
    tabs = [Path(os.path.relpath(t, here)).as_posix() for t in tables]
    corr = io.read_json(correlation) if correlation is not None else None
    io.write_text(
        out_summary,
        summary_markdown(
            settings, claims, tests_df, metrics_df, ingest, pretrain, figs, tabs, wall, multitask_df, corr
        ),
    )
    repo = settings.get("repo") or "."
    exclude = []
    rd = settings.get("report_dir")
    if rd:
        rel = os.path.relpath(Path(rd).resolve(), Path(repo).resolve())
        if not rel.startswith(".."):
            exclude.append(Path(rel).as_posix())
    io.write_json(
        out_provenance, provenance(settings, metrics_df, pretrain, ingest, wall, code_state(repo, exclude), machine())
    )
    return claims


def _figure_links(summary: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", summary)


def _spec_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The config entry a claims.csv row was built from (what build_claims needs again)."""
    if str(row.get("kind") or "compare") == "multitask":
        return {
            **{k: row[k] for k in ("id", "paper", "claim", "paper_value", "size", "direction")},
            "kind": "multitask",
            "property": row["target"],
        }
    return {k: row[k] for k in SPEC_COLUMNS}


def check_published(folder: str | Path) -> list[str]:
    """Problems with a published folder: a figure summary.md links that is missing, or a
    claims.csv number or resolved mode that its tables (tables/ttests.csv, tables/metrics.csv,
    tables/protocol.csv where published) do not give."""
    f = Path(folder)
    problems = []
    for name in ("summary.md", "claims.csv", "provenance.json"):
        if not (f / name).is_file():
            problems.append(f"{f / name}: missing")
    if problems:
        return problems
    for link in _figure_links((f / "summary.md").read_text(encoding="utf-8")):
        if not (f / link).is_file():
            problems.append(f"{f / 'summary.md'} links {link}, which does not exist")
    claims = read_claims(f / "claims.csv")
    if claims.empty:
        return problems
    prov = io.read_json(f / "provenance.json")
    baseline = prov["config"]["finetune"]["baseline"]
    labels = dict(zip(claims["target"], claims["target_label"], strict=True))
    specs = [_spec_of(r) for r in claims.to_dict("records")]
    tabs = [f / "tables" / f"{t}.csv" for t in ("ttests", "metrics", "protocol", "multitask")]
    try:
        protocol, multitask = (read_table(t) if t.is_file() else pd.DataFrame() for t in tabs[2:])
        again = build_claims(
            specs,
            read_table(tabs[0]),
            read_table(tabs[1]),
            baseline,
            labels,
            [str(t) for t in tabs],
            protocol,
            multitask,
        )
    except (ReportError, FileNotFoundError) as err:
        return [*problems, f"{f / 'claims.csv'}: cannot be recomputed from its tables: {err}"]
    for (_, mine), (_, want) in zip(claims.iterrows(), again.iterrows(), strict=True):
        for col in NUMERIC_COLUMNS:
            a, b = float(mine[col]), float(want[col])
            if not (a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9)):
                problems.append(f"{f / 'claims.csv'}: claim {mine['id']}: {col} = {a!r}, its tables give {b!r}")
        for col in ("resolved_mode", "resolved_versus", "holm_family", "verdict", "held", "metric", "kind"):
            if str(mine[col]) != str(want[col]):
                problems.append(
                    f"{f / 'claims.csv'}: claim {mine['id']}: {col} = {mine[col]!r}, its tables give {want[col]!r}"
                )
    return problems
