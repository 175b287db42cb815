"""benchmarks/gpu.sh: the GPU timing script, dry-run on the CPU with tiny settings (one
pretraining epoch and a 2-seed cell at n = 50 on 200 crystals of the embedded table)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
TABLE = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"


def _run(*args: str, work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)


def test_script_parses_and_asks_for_a_table(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    res = _run(work=tmp_path)
    assert res.returncode == 2 and "usage: bash benchmarks/gpu.sh TABLE" in res.stderr


def test_cpu_dry_run_times_both_rules_calls(tmp_path):
    work = tmp_path / "work"
    res = _run(
        str(TABLE),
        "--device",
        "cpu",
        "--sample",
        "200",
        "--epochs",
        "1",
        "--size",
        "50",
        "--seeds",
        "2",
        "--work",
        str(work),
        work=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["measurement"] for r in lines] == ["pretrain", "finetune_cell", "finetune_cell"]
    pre, cell, together = lines
    assert cell["seeds_as"] == "one after another" and together["seeds_as"] == "one vmapped ensemble"
    assert together["seeds"] == 2 and math.isfinite(together["accuracy"]["test_mae_log10_GPa_mean"])
    assert pre["epochs"] == 1 and len(pre["epoch_s"]) == 1 and pre["seconds"] > 0 and pre["device"]
    assert pre["train_crystals"] + pre["val_crystals"] < 200
    assert math.isfinite(pre["accuracy"]["val_mae_eV_per_atom"])
    assert cell["size"] == 50 and cell["seeds"] == 2 and cell["seconds"] > 0 and cell["device"] == pre["device"]
    assert math.isfinite(cell["accuracy"]["test_mae_log10_GPa_mean"]) and cell["accuracy"]["test_crystals"] > 0
    # the rules' own outputs, where the rules would write them
    assert (work / "pretrain" / "ef" / "model.pt").exists()
    cells = work / "finetune" / "log_kvrh" / "n50"
    assert len(json.loads((cells / "scratch_ensemble_off" / "metrics.json").read_text())) == 2
    records = json.loads((cells / "scratch_ensemble_on" / "metrics.json").read_text())
    assert [r["runtime"]["ensemble"] for r in records] == ["2", "2"]
    assert "best val MAE" in (work / "gpu_timing.log").read_text()
