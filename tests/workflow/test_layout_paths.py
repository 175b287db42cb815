"""tlcgcnn.utils.layout: the one place that spells result paths. Its paths are the ones the
rules write (a dry run's jobs, checked against the Layout for their wildcards), the ones
finished runs already have on disk, and the ones progress, the CLI, the API, the zoo and
the config read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from tlcgcnn import config as C
from tlcgcnn import zoo
from tlcgcnn.api import FinetuneResult
from tlcgcnn.cli import runner
from tlcgcnn.report import progress
from tlcgcnn.utils import fileio as io
from tlcgcnn.utils.layout import Layout, cell_seed, seed_number

BIN = Path(sys.executable).parent
SNAKEMAKE = [str(BIN / "snakemake")] if (BIN / "snakemake").exists() else [sys.executable, "-m", "snakemake"]


def test_paths_are_the_ones_finished_runs_have():
    """The strings the rules wrote before the Layout existed: a finished run stays valid."""
    lay = Layout.for_config("quickstart")
    expected = {
        lay.root: "results/quickstart",
        lay.raw("oqmd"): "results/quickstart/raw/oqmd.parquet",
        lay.raw_manifest("oqmd"): "results/quickstart/raw/oqmd.manifest.json",
        lay.raw_work("oqmd"): "results/quickstart/raw/oqmd.work",
        lay.table(): "results/quickstart/data/structures.parquet",
        lay.dropped(): "results/quickstart/data/dropped.csv",
        lay.ingest_summary(): "results/quickstart/data/ingest_summary.json",
        lay.descriptors(): "results/quickstart/data/descriptors.parquet",
        lay.subsets(): "results/quickstart/splits/subsets.json",
        lay.split("hse_gap"): "results/quickstart/splits/hse_gap.split.json",
        lay.graphs("7732ddcdb1c9"): "results/quickstart/graphs/7732ddcdb1c9",
        lay.pretrain_model("eg"): "results/quickstart/pretrain/eg/model.pt",
        lay.pretrain_metrics("eg"): "results/quickstart/pretrain/eg/metrics.json",
        lay.pretrain_predictions("eg"): "results/quickstart/pretrain/eg/predictions.parquet",
        lay.cell_dir("hse_gap", 50, "eg_ft"): "results/quickstart/finetune/hse_gap/n50/eg_ft",
        lay.cell_metrics("hse_gap", "all", "scratch"): "results/quickstart/finetune/hse_gap/nall/scratch/metrics.json",
        lay.cell_predictions("t", 5, "m"): "results/quickstart/finetune/t/n5/m/predictions.parquet",
        lay.seed_model("t", 5, "m", 3): "results/quickstart/finetune/t/n5/m/runs/s3/model.pt",
        lay.seed_metrics("t", 5, "m", 3): "results/quickstart/finetune/t/n5/m/runs/s3/metrics.json",
        lay.cell_log("t", 5, "m"): "results/quickstart/logs/finetune/t/n5/m.log",
        lay.cell_benchmark("t", 5, "m"): "results/quickstart/benchmarks/finetune/t/n5/m.tsv",
        lay.external("x").table(): "results/quickstart/external/x/data/structures.parquet",
        lay.external("x").graphs("k"): "results/quickstart/external/x/graphs/k",
        lay.external_overlap("x"): "results/quickstart/external/x/overlap.parquet",
        lay.external_eval("x", "t"): "results/quickstart/external/x/t",
        lay.stats("ttests.csv"): "results/quickstart/stats/ttests.csv",
        lay.figure("learning_curve"): "results/quickstart/figures/learning_curve.png",
        lay.figure("models", "pdf"): "results/quickstart/figures/models.pdf",
        lay.logs("pretrain", "eg.log"): "results/quickstart/logs/pretrain/eg.log",
        lay.benchmarks("ingest.tsv"): "results/quickstart/benchmarks/ingest.tsv",
    }
    assert {str(k): v for k, v in expected.items()} == {v: v for v in expected.values()}
    assert Layout.for_config("q", "/w").root == Path("/w/results/q")
    assert Layout("results/q") == Layout(Path("results/q")) == Layout.for_config("q")


@pytest.mark.parametrize(
    ("method", "names", "values"),
    [
        (Layout.split, ("split_name",), ("hse_gap",)),
        (Layout.pretrain_model, ("pretrain",), ("eg",)),
        (Layout.pretrain_predictions, ("pretrain",), ("eg",)),
        (Layout.backbone_embeddings, ("backbone",), ("chgnet-0.3.0",)),
        (Layout.backbone_info, ("backbone",), ("chgnet-0.3.0",)),
        (Layout.cell_metrics, ("target", "size", "mode"), ("hse_gap", 50, "eg_ft")),
        (Layout.cell_predictions, ("target", "size", "mode"), ("hse_gap", "all", "scratch")),
        (Layout.cell_log, ("target", "size", "mode"), ("t", 5, "m")),
        (Layout.cell_benchmark, ("target", "size", "mode"), ("t", 5, "m")),
        (Layout.seed_model, ("target", "size", "mode", "seed"), ("t", 5, "m", 2)),
        (Layout.external_eval, ("external", "target"), ("x", "t")),
        (Layout.figure, ("figure", "ext"), ("learning_curve", "pdf")),
    ],
)
def test_wildcards_make_patterns(method: Callable[..., Path], names: tuple[str, ...], values: tuple[Any, ...]):
    """Called with Snakemake wildcards, a method gives the pattern whose filled-in form is the
    path it gives for the values: what lets the rules build their patterns from it."""
    lay = Layout.for_config("quickstart")
    pattern = str(method(lay, *(f"{{{n}}}" for n in names)))
    assert pattern.format(**dict(zip(names, values, strict=True))) == str(method(lay, *values))


def test_seed_folders():
    assert cell_seed("c", 4) == Path("c/runs/s4")
    assert [seed_number(n) for n in ("s0", "s12", "s", "x1", "s1a", "model.pt")] == [0, 12, None, None, None, None]


# --------------------------------------------------------------------------- the rules


def _dry_run_jobs(configfile: Path, name: str) -> list[dict[str, Any]]:
    """Every job of a forced dry run: rule, wildcards and the input, output, log and benchmark paths."""
    cmd = [*SNAKEMAKE, "-n", "-F", "--cores", "1", "--configfile", str(configfile), "--config", f"name={name}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs: list[dict[str, Any]] = []
    for line in (res.stdout + res.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append({"rule": m.group(1), "wildcards": {}, "input": [], "output": [], "log": [], "benchmark": []})
        elif jobs and (m := re.match(r"^    (input|output|log|benchmark|wildcards): (.*)$", line)):
            key, items = m.group(1), m.group(2).split(", ")
            if key == "wildcards":
                jobs[-1]["wildcards"] = dict(i.split("=", 1) for i in items)
            else:
                jobs[-1][key] = items
    return jobs


def _expected(lay: Layout, cfg: C.Config, rule: str, w: dict[str, str]) -> dict[str, list[Path]] | None:
    """Output, log and benchmark of a job by the Layout (None: a rule this test does not cover)."""
    if rule in ("finetune", "finetune_baseline", "finetune_frozen"):
        cell = (w["target"], w["size"], w["mode"])
        return {
            "output": [lay.cell_metrics(*cell), lay.cell_predictions(*cell)],
            "log": [lay.cell_log(*cell)],
            "benchmark": [lay.cell_benchmark(*cell)],
        }
    if rule == "pretrain":
        p = w["pretrain"]
        return {
            "output": [lay.pretrain_model(p)],
            "log": [lay.logs("pretrain", f"{p}.log")],
            "benchmark": [lay.benchmarks("pretrain", f"{p}.tsv")],
        }
    if rule == "evaluate_pretrain":
        p = w["pretrain"]
        return {
            "output": [lay.pretrain_metrics(p), lay.pretrain_predictions(p)],
            "log": [lay.logs("evaluate", "pretrain", f"{p}.log")],
            "benchmark": [lay.benchmarks("evaluate", "pretrain", f"{p}.tsv")],
        }
    if rule == "split_target":
        return {"output": [lay.split(w["split_name"])], "log": [lay.logs("split", f"{w['split_name']}.log")]}
    if rule == "split_subsets":
        return {"output": [lay.subsets()], "log": [lay.logs("split", "subsets.log")]}
    if rule == "ingest":
        return {"output": [lay.table(), lay.dropped(), lay.ingest_summary()], "log": [lay.logs("ingest.log")]}
    if rule == "featurize":
        return {"output": [lay.graphs(cfg.graph_key())], "log": [lay.logs("featurize.log")]}
    if rule == "descriptors":
        return {"output": [lay.descriptors()], "log": [lay.logs("descriptors.log")]}
    if rule == "figure":
        return {"output": [lay.figure(w["figure"], "png"), lay.figure(w["figure"], "pdf")]}
    if rule == "stats":
        return {"output": [lay.stats("metrics.csv"), lay.stats("ttests.csv"), lay.stats("protocol.csv")]}
    if rule == "roc":
        return {
            "output": [lay.stats("roc.csv")],
            "log": [lay.logs("roc.log")],
            "benchmark": [lay.benchmarks("roc.tsv")],
        }
    return None


@pytest.mark.parametrize("configfile", ["config.yaml", "paper-small.yaml"])
def test_rules_write_where_the_layout_says(configfile: str):
    """Each job of a dry run writes (and logs, and times) exactly where the Layout puts it for
    its wildcards; every cell of the config is one fine-tuning job, which reads its target's
    split, the table and its source's model from the Layout's paths."""
    name = f"layout-paths-{os.getpid()}"
    raw = yaml.safe_load((ROOT / "config" / configfile).read_text())
    cfg = C.load({**raw, "name": name})
    lay = Layout.for_config(name)
    jobs = _dry_run_jobs(ROOT / "config" / configfile, name)
    checked: dict[str, int] = {}
    cells = set()
    for job in jobs:
        want = _expected(lay, cfg, job["rule"], job["wildcards"])
        if want is None:
            continue
        for key, paths in want.items():
            assert job[key] == [str(p) for p in paths], (job["rule"], job["wildcards"], key)
        checked[job["rule"]] = checked.get(job["rule"], 0) + 1
        if job["rule"].startswith("finetune"):
            w = job["wildcards"]
            cells.add((w["target"], w["size"], w["mode"]))
            assert str(lay.table()) in job["input"] and str(lay.split(w["target"])) in job["input"]
            source = cfg.modes[w["mode"]].pretrained
            if source:
                assert (cfg.pretrained_checkpoint(source) or str(lay.pretrain_model(source))) in job["input"]
    assert cells == {(c.target.name, str(c.size), c.mode.name) for c in cfg.cells()}
    for rule in ("finetune", "pretrain", "evaluate_pretrain", "split_target", "split_subsets", "ingest", "featurize"):
        assert checked.get(rule), f"{configfile}: no {rule} job in the dry run"
    assert checked["pretrain"] == len(cfg.trained_pretrain_names)
    assert checked["split_target"] == len(cfg.split_names())
    if configfile == "paper-small.yaml":  # the descriptor baselines and frozen features too
        assert checked.get("finetune_baseline") and checked.get("finetune_frozen") and checked.get("descriptors")
    # the ROC curves read every cell of a classification target (paper-small: metal_cls; the quickstart has none)
    classifier = [
        lay.cell_predictions(c.target.name, c.size, c.mode.name)
        for c in cfg.cells()
        if c.target.task == "classification"
    ]
    assert bool(classifier) == (configfile == "paper-small.yaml")
    assert [j["input"] for j in jobs if j["rule"] == "roc"] == ([[str(p) for p in classifier]] if classifier else [])


# --------------------------------------------------------------------------- its readers


def _quickstart() -> C.Config:
    return C.load(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def test_progress_reads_cells_where_the_layout_puts_them(tmp_path: Path):
    cfg = _quickstart()
    lay = Layout(tmp_path / "run")
    done, started = cfg.cells()[0], cfg.cells()[1]
    records = [{"seed": s, "seconds": 4.0, "epochs_run": 2} for s in done.seeds]
    io.write_json(lay.cell_metrics(done.target.name, done.size, done.mode.name), records)
    bench = lay.cell_benchmark(done.target.name, done.size, done.mode.name)
    bench.parent.mkdir(parents=True)
    bench.write_text(f"s\th:m:s\n{10.0 * len(done.seeds)}\t0:00:10\n")
    io.write_json(lay.seed_metrics(started.target.name, started.size, started.mode.name, started.seeds[0]), {})
    cells = progress.cell_status(cfg, lay.root, cpu="x").set_index(["target", "size", "mode"])
    first = cells.loc[(done.target.name, done.size, done.mode.name)]
    assert first["done"] and first["seed_s"] == 10.0 and first["epoch_s"] == 2.0
    second = cells.loc[(started.target.name, started.size, started.mode.name)]
    assert not second["done"] and second["seeds_done"] == 1
    assert int(cells["done"].sum()) == 1 and int(cells["seeds_done"].sum()) == len(done.seeds) + 1


def test_cli_api_zoo_and_config_use_the_layout(tmp_path: Path):
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    raw["external"] = [{"name": "x"}]
    target = raw["finetune"]["targets"][0]["name"]
    lay = Layout.for_config(raw["name"], tmp_path)
    assert runner.outputs(raw, tmp_path) == {
        "fine-tuned models": str(lay.seed_model(target, "<size>", "<mode>", "<seed>")),
        "test predictions": str(lay.cell_predictions(target, "<size>", "<mode>")),
        "paired t-tests (scratch vs transfer)": str(lay.stats("ttests.csv")),
        "learning curve": str(lay.figure("learning_curve")),
        "external sets": str(lay.stats("external.csv")),
        "external parity figure": str(lay.figure("external_parity")),
    }
    res = FinetuneResult(workdir=tmp_path, config=tmp_path / "c.yaml", results=lay.root, target=target, returncode=0)
    assert res.layout == lay and res.cell(50, "scratch") == lay.cell_dir(target, 50, "scratch")
    io.write_text(lay.stats("ttests.csv"), "a,b\n1,2\n")
    assert list(res.ttests.columns) == ["a", "b"]
    # a cell folder given to load_model: its seeds' models, where the Layout puts them, by seed
    for seed in (10, 2):
        io.write_text(lay.seed_model(target, 50, "scratch", seed), "")
    (lay.cell_dir(target, 50, "scratch") / "runs" / "notes").mkdir()
    assert zoo.resolve(res.cell(50, "scratch")) == [lay.seed_model(target, 50, "scratch", s) for s in (2, 10)]
    # the config's download, the embedded subset's input: the Layout's raw table of its source
    dl = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    dl.update(dataset={"source": "materials_project"}, embedded={"input": "download"})
    assert C.load(dl).embedded_input() == str(Layout.for_config(dl["name"]).raw("materials_project"))
