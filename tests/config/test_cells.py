"""One typed cell from config to checkpoint: ``Cell.from_params`` inverts ``Cell.as_params``
(the Snakemake params), the run key of a cell is the one finished seeds were stamped with
before the cell was typed, and the per-seed loop every cell kind shares keeps and reuses the
finished seeds of a strategy with inputs only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import ROOT

from tlcgcnn import config as C
from tlcgcnn.config import Cell, Mode, PretrainSource, TargetSpec
from tlcgcnn.train.finetune import SeedRun, SeedStrategy, run_cell, run_key

CONFIGS = [p for p in sorted((ROOT / "config").glob("*.yaml")) if not p.name.startswith("download")]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_from_params_inverts_as_params_for_every_cell_and_source(path):
    cfg = C.load(path)
    cells = cfg.cells()
    assert cells
    for cell in cells:
        params = cell.as_params()
        again = Cell.from_params(params)
        assert again == cell, (cell.target.name, cell.size, cell.mode.name)
        assert again.as_params() == params
        assert json.dumps(again.as_params()) == json.dumps(params)  # byte for byte: Snakemake's params
    for source in cfg.pretrain_sources():
        assert PretrainSource.from_params(source.as_params()) == source
        assert json.dumps(PretrainSource.from_params(source.as_params()).as_params()) == json.dumps(source.as_params())
    for mode in cfg.modes.values():
        assert Mode.from_dict(mode.as_dict()) == mode


def test_from_params_refuses_what_as_params_never_writes():
    cfg = C.load(ROOT / "config" / "mp500.yaml")
    params = cfg.cell("gap_nonmetal", 25, "transfer").as_params()
    with pytest.raises(C.ConfigError, match=r"Cell params with unknown keys \['extra'\]"):
        Cell.from_params({**params, "extra": 1})
    with pytest.raises(C.ConfigError, match=r"Mode params with unknown keys \['lr_scale'\]"):
        Cell.from_params({**params, "mode": {**params["mode"], "lr_scale": 0.1}})
    with pytest.raises(C.ConfigError, match="family 'scratch' in its params, 'transfer' by its fields"):
        Cell.from_params({**params, "mode": {**params["mode"], "family": "scratch"}})


# --------------------------------------------------------------------------- the run key
MODEL = {
    "kind": "cgcnn",
    "atom_fea_len": 16,
    "n_conv": 2,
    "h_fea_len": 32,
    "n_h": 1,
    "gaussian_step": 0.2,
    "radius": 8.0,
}
TRAIN = {
    "epochs": 5,
    "batch_size": 16,
    "lr": 0.001,
    "weight_decay": 0.0,
    "patience": 3,
    "optimizer": "adam",
    "momentum": 0.9,
    "device": "cpu",
    "amp": "none",
    "schedule": "cosine",
    "warmup_epochs": 1.0,
    "min_lr_ratio": 0.01,
    "normalizer": "zscore",
    "threads": 1,
    "eval_batch_size": 512,
    "checkpoint_every": 1,
}
TARGET = TargetSpec(name="gap_nm", property="band_gap", transform="none", subset="nonmetal", task="regression")
SOURCE = PretrainSource(
    name="ef_all",
    target=TargetSpec(
        name="ef_all", property="formation_energy_per_atom", transform="none", subset="all", task="regression"
    ),
    size="all",
    seed=0,
    model=MODEL,
    train=TRAIN,
)
TRANSFER = Cell(
    target=TARGET,
    size=25,
    mode=Mode(
        name="slow",
        pretrained="ef_all",
        freeze=1,
        reinit="head",
        model=None,
        estimator=None,
        backbone_lr_scale=0.1,
        train={"lr": 0.0003},
        train_pool="all",
    ),
    seeds=[0, 1, 2],
    model=MODEL,
    train={**TRAIN, "lr": 0.0003},
    pretrain=SOURCE,
)
SCRATCH = Cell(
    target=TARGET,
    size="all",
    mode=Mode(name="scratch", pretrained=None, freeze=0, reinit="none", model=None, estimator=None),
    seeds=[0, 1],
    model=MODEL,
    train=TRAIN,
    pretrain=None,
)


def _inputs(d: Path) -> dict[str, str]:
    (d / "table.parquet").write_bytes(b"table bytes\n")
    (d / "split.json").write_text('{"test": ["a"]}\n')
    (d / "manifest.json").write_text('{"n": 3}\n')
    (d / "model.pt").write_bytes(b"pretrained bytes\n")
    return {"table": str(d / "table.parquet"), "split": str(d / "split.json"), "graphs": str(d / "manifest.json")}


def test_run_key_is_the_one_finished_seeds_were_stamped_with(tmp_path):
    """The keys below were computed by the dict-based run_key of train/finetune.py (on
    ``cell.as_params()``) before the cell was typed: a finished seed keeps its key."""
    inputs = _inputs(tmp_path)
    with_source = {**inputs, "pretrained": str(tmp_path / "model.pt")}
    assert run_key(TRANSFER, 1, with_source) == "1d5d6bea67b5ab29"
    assert run_key(SCRATCH, 0, inputs) == "fb3222bc43739af1"
    assert run_key(Cell.from_params(TRANSFER.as_params()), 1, with_source) == "1d5d6bea67b5ab29"
    # the list of seeds is not part of it; the seed, the settings and the inputs' contents are
    assert run_key(replace(SCRATCH, seeds=[0, 1, 2, 3]), 0, inputs) == "fb3222bc43739af1"
    assert run_key(SCRATCH, 1, inputs) != "fb3222bc43739af1"
    assert run_key(replace(SCRATCH, size=25), 0, inputs) != "fb3222bc43739af1"
    (tmp_path / "split.json").write_text('{"test": ["b"]}\n')
    assert run_key(SCRATCH, 0, inputs) != "fb3222bc43739af1"


# --------------------------------------------------------------------------- the per-seed loop
class Counting(SeedStrategy):
    """A strategy whose seed's record and predictions follow from the seed and an offset."""

    def __init__(self, inputs: dict[str, str] | None, offset: float = 0.0) -> None:
        self.inputs, self.offset, self.ran = inputs, offset, []
        self.fields = {"mode": "scratch", "family": "scratch"}

    def run_seed(self, seed: int, run: SeedRun | None) -> tuple[dict[str, Any], pd.DataFrame]:
        self.ran.append(seed)
        rec = {"error": seed + self.offset, "seed": seed, **self.fields}
        pred = pd.DataFrame({"material_id": ["a", "b"], "y_true": [0.0, 1.0], "y_pred": [seed, seed + self.offset]})
        if run is not None:
            assert (run.path / "run_key").read_text() == run.key
            rec["run_key"] = run.key
            pred.to_parquet(run.path / "predictions.parquet")
            (run.path / "metrics.json").write_text(json.dumps(rec))
        return rec, pred


def test_run_cell_reuses_finished_seeds_of_a_strategy_with_inputs(tmp_path):
    inputs = _inputs(tmp_path)
    out = tmp_path / "cell"
    first = Counting(inputs)
    records = run_cell(SCRATCH, first, str(out / "metrics.json"), str(out / "predictions.parquet"))
    assert first.ran == [0, 1] and [r["error"] for r in records] == [0.0, 1.0]
    assert (out / "runs" / "s1" / "run_key").read_text() == run_key(SCRATCH, 1, inputs)
    preds = pd.read_parquet(out / "predictions.parquet")
    assert list(preds.columns) == ["material_id", "y_true", "y_pred", "seed"] and list(preds["seed"]) == [0, 0, 1, 1]
    assert json.loads((out / "metrics.json").read_text()) == records

    # a second job: seed 1 killed before it finished, seed 0 kept (its record gains new fields)
    (out / "runs" / "s1" / "metrics.json").unlink()
    again = Counting(inputs, offset=10.0)
    again.fields = {**again.fields, "added": True}
    records = run_cell(SCRATCH, again, str(out / "metrics.json"), str(out / "predictions.parquet"))
    assert again.ran == [1] and [r["error"] for r in records] == [0.0, 11.0] and records[0]["added"] is True

    # changed inputs: a new key for every seed, the stale folders are started again
    (tmp_path / "table.parquet").write_bytes(b"other table\n")
    third = Counting(inputs, offset=20.0)
    records = run_cell(SCRATCH, third, str(out / "metrics.json"), str(out / "predictions.parquet"))
    assert third.ran == [0, 1] and [r["error"] for r in records] == [20.0, 21.0]


def test_run_cell_keeps_nothing_per_seed_for_a_strategy_without_inputs(tmp_path):
    out = tmp_path / "cell"
    for _ in range(2):
        strategy = Counting(None)
        records = run_cell(SCRATCH, strategy, str(out / "metrics.json"), str(out / "predictions.parquet"))
        assert strategy.ran == [0, 1] and [r["seed"] for r in records] == [0, 1]
    assert not (out / "runs").exists() and sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "predictions.parquet",
    ]
