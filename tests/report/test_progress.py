"""tlcgcnn.report.progress: the cells of an unfinished run, its time left, and its interim claims."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from tlcgcnn import config as C
from tlcgcnn.report import progress
from tlcgcnn.utils import fileio as io
from tlcgcnn.utils.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = np.array([1.00, 1.10, 0.95, 1.05, 1.02])


def _cfg() -> C.Config:
    """The quickstart config with two claims: one whose cells are finished, one waiting."""
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    claim = {"paper": "TL-CGCNN", "claim": "x", "paper_value": "y", "size": 50, "direction": "lower"}
    raw["report"] = {
        "claims": [
            {**claim, "id": "eg_hse", "target": "hse_gap", "mode": "eg_ft"},
            {**claim, "id": "ef_kvrh", "target": "log_kvrh", "mode": "ef_ft"},
        ]
    }
    return C.load(raw)


def _cell(
    results: Path,
    target: str,
    mode: str,
    errors: np.ndarray,
    seconds: float | None,
    size: int = 50,
    hardware: str | None = None,
) -> None:
    records = [
        {
            "target": target,
            "size": size,
            "mode": mode,
            "seed": s,
            "error": float(e),
            "mae": float(e),
            "task": "regression",
            "family": "scratch" if mode == "scratch" else "transfer",
            "pretrained": None if mode == "scratch" else mode.split("_")[0],
            "best_val_mae": float(e),
            "device": "cpu",
            **({"hardware": hardware} if hardware else {}),
            **({"seconds": seconds / len(errors), "epochs_run": 10} if seconds else {}),
        }
        for s, e in enumerate(errors)
    ]
    io.write_json(Layout(results).cell_metrics(target, size, mode), records)
    if seconds is not None:
        bench = Layout(results).cell_benchmark(target, size, mode)
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\n{seconds}\t0:00:{int(seconds) % 60:02d}\n")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    results = tmp_path / "results" / "quickstart"
    _cell(results, "hse_gap", "scratch", SCRATCH, 50.0)  # 10 s a seed
    _cell(results, "hse_gap", "eg_ft", SCRATCH - np.array([0.40, 0.42, 0.38, 0.41, 0.39]), 50.0)
    _cell(results, "log_kvrh", "scratch", SCRATCH, 60.0)  # 12 s a seed
    for seed in (0, 1):  # ef_ft at n = 50 has 2 of its 5 seeds
        io.write_json(Layout(results).seed_metrics("log_kvrh", 50, "ef_ft", seed), {"seed": seed})
    return results


def test_cells_and_the_time_they_have_left(run):
    cells = progress.cell_status(_cfg(), run)
    assert len(cells) == 2 * 8 * 4 and int(cells["done"].sum()) == 3
    ef = cells[(cells["target"] == "log_kvrh") & (cells["mode"] == "ef_ft") & (cells["size"] == 50)].iloc[0]
    assert not ef["done"] and ef["seeds_done"] == 2 and ef["seeds"] == 5
    seed_s = cells.set_index(["target", "size", "mode"])["seed_s"]
    assert seed_s[("hse_gap", 50, "scratch")] == 10.0 and seed_s[("log_kvrh", 50, "scratch")] == 12.0
    left = progress.estimate_left(cells).set_index(["target", "size", "mode"])
    assert len(left) == 64 - 3
    assert left.loc[("log_kvrh", 50, "ef_ft"), "estimate_s"] == pytest.approx(
        10.0 * 3
    )  # median of 10, 10, 12 a seed, 3 seeds left
    assert left.loc[("log_kvrh", 200, "scratch"), "estimate_s"] == pytest.approx(
        10.0 * 200 / 50 * 5
    )  # scaled from n = 50
    assert "scaled to n = 200" in left.loc[("log_kvrh", 200, "scratch"), "basis"]
    frozen = left.loc[("hse_gap", 50, "zoo_mt_ridge")]
    assert math.isnan(frozen["estimate_s"]) and frozen["basis"] == "no finished frozen cell to compare with"


def test_times_from_another_cpu_are_scaled_by_what_cells_timed_on_both_say(run):
    """A results folder copied from a faster host: eg_ft ran on this CPU at 2.5 s an epoch, the two
    scratch cells on another at 1.0 and 1.2 s (per epoch: early stopping varies the epochs
    of a seed) -> this CPU takes 2.5 / 1.1 of their time."""
    _cell(run, "hse_gap", "eg_ft", SCRATCH - 0.4, 125.0, hardware="Test CPU")
    cells = progress.cell_status(_cfg(), run, cpu="Test CPU")
    assert sorted(cells.loc[cells["done"], "this_cpu"]) == [False, False, True]
    assert sorted(cells.loc[cells["done"], "epoch_s"]) == pytest.approx([1.0, 1.2, 2.5])
    factor, groups = progress.cpu_factor(cells)
    assert factor == pytest.approx(2.5 / 1.1) and groups == 1
    left = progress.estimate_left(cells).set_index(["target", "size", "mode"])
    assert left.loc[("log_kvrh", 50, "ef_ft"), "estimate_s"] == pytest.approx(
        25.0 * 3
    )  # median of 10 f, 25, 12 f a seed (f = 2.27)
    assert left.loc[("log_kvrh", 200, "scratch"), "estimate_s"] == pytest.approx(25.0 * 200 / 50 * 5)
    text = progress.progress_markdown(_cfg(), run, parallel=2)
    assert "scaled by ×" not in text  # this machine's CPU is not "Test CPU": no factor there
    assert progress.cpu_factor(progress.cell_status(_cfg(), run, cpu="Another"))[0] is None


def test_interim_claims_test_the_finished_cells_and_name_what_the_others_wait_for(run):
    cfg = _cfg()
    claims, waiting = progress.interim_claims(cfg, run, progress.cell_status(cfg, run))
    assert list(claims["id"]) == ["eg_hse"] and claims.iloc[0]["verdict"] == "held" and claims.iloc[0]["n_seeds"] == 5
    assert waiting == [("ef_kvrh", "log_kvrh: waiting for ef_ft at n = 50")]
    text = progress.progress_markdown(cfg, run, parallel=2)
    assert "**3 of 64 finished**" in text and "| hse_gap | 50 | 2 / 8 | 10 / 40 |" in text
    assert "| eg_hse | TL-CGCNN |" in text and "* `ef_kvrh`: log_kvrh: waiting for ef_ft at n = 50" in text
    assert "Not estimated (no finished cell of their kind): 8 cells." in text


def test_cli_reads_a_config_and_refuses_a_missing_results_folder(run, tmp_path, capsys, monkeypatch):
    cfg_file = tmp_path / "quick.yaml"
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg_file.write_text(yaml.safe_dump(raw))
    assert progress.main(["--configfile", str(cfg_file), "--results", str(tmp_path / "nope")]) == 2
    assert "no results folder" in capsys.readouterr().err
    out = tmp_path / "progress.md"
    assert progress.main(["--configfile", str(cfg_file), "--results", str(run), "--out", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out and "# Progress of `quickstart`" in out.read_text()
