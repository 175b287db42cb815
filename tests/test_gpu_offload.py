"""benchmarks/gpu.py carries a study's jobs to a borrowed machine and back: pack here, run
there (a fresh copy of the checkout with no results), unpack here, and Snakemake takes the
jobs as done; a job stopped at the deadline comes back with its resumable state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_mp500_config
from test_snapshot import _checkout_copy
from test_workflow import SNAKEMAKE, ran_rules
from tlcgcnn.config import load
from tlcgcnn.provenance import cpu_model
from tlcgcnn.report import wall_times

GPU = ["benchmarks/gpu.py"]


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run([*args], cwd=cwd, capture_output=True, text=True, timeout=1500, env={**os.environ, **(env or {})})
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res.stdout + res.stderr


@pytest.mark.e2e
def test_jobs_run_elsewhere_come_back_as_done_or_resumable(tmp_path: Path):
    name = "offload-test"
    cfg, _ = tiny_mp500_config(tmp_path, name)
    cfg["train"].update(epochs=4, patience=4)
    cfg["pretrain"] = [{"name": "ef_small", "property": "formation_energy_per_atom", "subset": "all", "size": 100, "seed": 0}]
    cfg["finetune"].update(sizes=[25, 50], seeds=[0, 1], modes={"scratch": {}, "transfer": {"pretrained": "ef_small"}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    here = _checkout_copy(tmp_path / "here")
    r = f"results/{name}"
    def smk(*args: str) -> str:  # targets before --configfile, which takes several values
        return _run(here, *SNAKEMAKE, *args, "--cores", "2", "--configfile", str(path))

    smk(f"{r}/splits/gap_nonmetal.split.json", f"{r}/splits/ef_small.split.json", f"{r}/data/structures.parquet", f"{r}/graphs/{load(path).graph_key()}")
    before = ran_rules(smk("-n"))
    assert before.count("pretrain") == 1 and before.count("finetune") == 4, before

    # the source and the n = 50 cells go elsewhere; the n = 25 cells stay
    pack = tmp_path / "pack"
    _run(here, sys.executable, *GPU, "pack", "--configfile", str(path), "--workdir", str(here), "--sources", "ef_small", "--sizes", "50", "--out", str(pack))
    jobs = json.loads((pack / "jobs.json").read_text())["jobs"]
    assert [j["name"] for j in jobs] == ["ef_small", "gap_nonmetal/n50/scratch", "gap_nonmetal/n50/transfer"]

    there = _checkout_copy(tmp_path / "there")  # no results, no .git: only the checkout's files and the pack
    shutil.copytree(pack, there / ".gpu")
    out = tmp_path / "out"
    # one process at a time, so the transfer cell starts after its source is trained
    log = _run(there, sys.executable, *GPU, "run", "--pack", ".gpu", "--bench-epochs", "1", "--max-parallel", "1", "--part-mb", "0.02", "--out", str(out), env={"TLCGCNN_GIT_COMMIT": "0" * 40})
    report = json.loads((out / "gpu.json").read_text())
    assert all(j["finished"] for j in report["jobs"].values()), log[-3000:]
    assert report["epochs"]["none"]["precision"] == "fp32" and len(report["epochs"]["bf16"]["epoch_s"]) == 1

    parts = sorted(out.glob("results.tar.gz*"))  # cut into parts for a lender that returns small files only
    assert len(parts) > 1 and report["archive_parts"] == [p.name for p in parts]
    _run(here, sys.executable, *GPU, "unpack", "--archive", *map(str, parts), "--pack", str(pack), "--workdir", str(here), "--report", str(out / "gpu.json"))
    # each job's time there is a benchmark file of its rule, summed apart (this CPU-only run: "CPU <model>")
    device = f"CPU {cpu_model()}" if not report["machine"].get("gpu") else report["machine"]["gpu"]
    wall = wall_times(here / r / "benchmarks")["per_rule"]
    assert wall[f"pretrain on {device}"]["jobs"] == 1 and wall[f"finetune on {device}"]["jobs"] == len(report["jobs"]) - 1, wall
    assert wall[f"finetune on {device}"]["s"] == pytest.approx(sum(j["wall_s"] for j in report["jobs"].values() if j["rule"] == "finetune"), abs=0.01)
    _run(here, sys.executable, *GPU, "timings", "--report", str(out / "gpu.json"), "--results", r, "--workdir", str(here))
    assert wall_times(here / r / "benchmarks")["per_rule"] == wall  # written once, not summed twice
    model = torch.load(here / r / "pretrain" / "ef_small" / "model.pt", map_location="cpu", weights_only=False)
    assert model["meta"]["git_commit"] == "0" * 40  # the shipped tree's commit, named by the caller
    after = ran_rules(smk("-n"))
    assert "pretrain" not in after and after.count("finetune") == 2, after  # only the n = 25 cells are left
    assert "seed 1: error" in (here / r / "logs" / "finetune" / "gap_nonmetal" / "n50" / "transfer.log").read_text()
    recs = json.loads((here / r / "finetune" / "gap_nonmetal" / "n50" / "transfer" / "metrics.json").read_text())
    assert {(x["device"], x["hardware"]) for x in recs} == {("cpu", cpu_model())}  # each run names the chip it ran on
    # the pack's arguments are the rule's: the same cell run here by Snakemake gives the same runs
    assert ran_rules(smk(f"{r}/finetune/gap_nonmetal/n50/transfer/metrics.json", "--forcerun", "finetune")) == ["finetune"]
    again = json.loads((here / r / "finetune" / "gap_nonmetal" / "n50" / "transfer" / "metrics.json").read_text())
    assert {x["git_commit"] for x in recs} == {"0" * 40} != {x["git_commit"] for x in again}  # these ran here
    same = ("seed", "run_key", "config_sha256", "data_sha256", "n_train", "n_val", "lr", "epochs_run", "best_epoch", "error")
    assert [{k: x[k] for k in same} for x in again] == [{k: x[k] for k in same} for x in recs]

    # a deadline that stops a job midway: its state comes back and is put in place
    pack2 = tmp_path / "pack2"
    _run(here, sys.executable, *GPU, "pack", "--configfile", str(path), "--workdir", str(here), "--sizes", "25", "--out", str(pack2))
    jobs2 = json.loads((pack2 / "jobs.json").read_text())
    jobs2["jobs"] = jobs2["jobs"][:1]
    jobs2["jobs"][0]["kwargs"]["cell"]["train"].update(epochs=100000, patience=100000)  # cannot finish before the deadline
    (pack2 / "jobs.json").write_text(json.dumps(jobs2))
    shutil.rmtree(there / ".gpu")
    shutil.copytree(pack2, there / ".gpu")
    out2 = tmp_path / "out2"
    _run(there, sys.executable, *GPU, "run", "--pack", ".gpu", "--bench-epochs", "0", "--deadline", "25", "--out", str(out2))
    stopped = json.loads((out2 / "gpu.json").read_text())["jobs"]["gap_nonmetal/n25/scratch"]
    assert stopped["returncode"] == "killed at the deadline" and not stopped["finished"]
    placed = _run(here, sys.executable, *GPU, "unpack", "--archive", str(out2 / "results.tar.gz"), "--pack", str(pack2), "--workdir", str(here))
    assert "placed" in placed
    assert (here / r / "finetune" / "gap_nonmetal" / "n25" / "scratch" / "runs" / "s0" / "state.pt").exists()

    # a started cell is packed only when asked (--started); its runs/ travel, and it resumes there
    def packed(out_dir: Path, *extra: str) -> dict:
        _run(here, sys.executable, *GPU, "pack", "--configfile", str(path), "--workdir", str(here), "--sizes", "25", *extra, "--out", str(out_dir))
        return json.loads((out_dir / "jobs.json").read_text())

    cell = "gap_nonmetal/n25/scratch"
    assert cell not in [j["name"] for j in packed(tmp_path / "pack3a")["jobs"]]
    jobs3 = packed(tmp_path / "pack3", "--started")
    job3 = next(j for j in jobs3["jobs"] if j["name"] == cell)
    assert f"{r}/finetune/{cell}/runs/s0/state.pt" in job3["ship"] and not any(f.endswith("model.pt") for f in job3["ship"])
    job3["kwargs"]["cell"]["train"].update(epochs=100000, patience=100000)  # the settings it started with
    jobs3["jobs"] = [job3]
    (tmp_path / "pack3" / "jobs.json").write_text(json.dumps(jobs3))
    there3 = _checkout_copy(tmp_path / "there3")
    shutil.copytree(tmp_path / "pack3", there3 / ".gpu")
    _run(there3, sys.executable, *GPU, "run", "--pack", ".gpu", "--bench-epochs", "0", "--deadline", "15", "--out", str(tmp_path / "out3"))
    assert "resumed from" in (there3 / r / "logs" / "finetune" / f"{cell}.log").read_text()
