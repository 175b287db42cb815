"""Training that survives faults: non-finite values stop the run with a clear error, and a
killed run resumes from its last state to the bitwise-identical result (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ATOM_FEATURES, ROOT, random_graphs, save_graphs

from tlcgcnn.data.targets import Target
from tlcgcnn.train.loop import NonFiniteError, TrainConfig, train

CFG = {"kind": "cgcnn", "atom_fea_len": 16, "n_conv": 2, "h_fea_len": 24, "radius": 8.0, "gaussian_step": 0.5}
N = 160


def _data(tmp_path: Path) -> tuple[pd.DataFrame, Path, list[str]]:
    g = random_graphs(N, seed=5)
    gdir = save_graphs(g, tmp_path / "graphs")
    ids = [str(i) for i in g.ids]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"material_id": ids, "y": rng.normal(size=N)})
    return df, gdir, ids


def _split(ids: list[str]) -> dict[str, list[str]]:
    return {"train": ids[:120], "val": ids[120:145], "test": ids[145:]}


def test_nan_training_loss_names_target_epoch_and_seed(tmp_path):
    df, gdir, ids = _data(tmp_path)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e9, amp="none")  # diverges to inf / NaN
    with pytest.raises(
        NonFiniteError, match=r"dft_gap seed 7: non-finite (training loss|validation score) .* at epoch \d+.*seed 7"
    ):
        train(
            table_df=df,
            graph_dir=gdir,
            atom_table_path=ATOM_FEATURES,
            split_ids=_split(ids),
            target=Target("dft_gap", "y"),
            model_cfg=CFG,
            train_cfg=cfg,
            seed=7,
            out_checkpoint=tmp_path / "m.pt",
            progress=False,
        )
    assert not (tmp_path / "m.pt").exists()  # no checkpoint that looks finished


def test_nan_validation_score_is_an_error_not_a_silent_best(tmp_path):
    from tlcgcnn.nn import build_model, graphs
    from tlcgcnn.nn.normalize import Normalizer
    from tlcgcnn.train.loop import fit

    df, gdir, ids = _data(tmp_path)
    data = graphs.load(gdir, ids)
    y = torch.tensor(df["y"].to_numpy(), dtype=torch.float32)
    y[130] = float("nan")  # one validation label NaN: the validation MAE is NaN
    from tlcgcnn.features import atom_features

    model = build_model(CFG, torch.from_numpy(atom_features.load_matrix(ATOM_FEATURES)))
    with pytest.raises(NonFiniteError, match="non-finite validation score .* at epoch 0, seed 1"):
        fit(
            model,
            data,
            y,
            torch.arange(120),
            torch.arange(120, 145),
            Normalizer("zscore", 0.0, 1.0),
            TrainConfig(epochs=2, amp="none"),
            seed=1,
            progress=False,
        )


RUNNER = """
import sys
sys.path[:0] = [{src!r}, {tests!r}, {helpers!r}]
import pandas as pd
from tlcgcnn.data.targets import Target
from tlcgcnn.train.loop import TrainConfig, train
import test_train_faults as T
df = pd.read_parquet({table!r})
ids = list(df["material_id"])
train(table_df=df, graph_dir={gdir!r}, atom_table_path={atoms!r}, split_ids=T._split(ids), target=Target("y", "y"),
      model_cfg=T.CFG, train_cfg=TrainConfig(epochs={epochs}, batch_size=16, patience=100, amp="none", \
schedule="cosine", warmup_epochs=1, threads=2),
      seed=3, out_checkpoint={out!r}, progress=False, resume_path={state!r})
"""


def _runner(tmp_path: Path, df: pd.DataFrame, gdir: Path, name: str, epochs: int) -> tuple[list[str], Path, Path]:
    df.to_parquet(tmp_path / "table.parquet")
    out, state = tmp_path / f"{name}.pt", tmp_path / f"{name}.state.pt"
    code = RUNNER.format(
        src=str(ROOT / "src"),
        tests=str(Path(__file__).resolve().parent),
        helpers=str(Path(__file__).resolve().parents[1]),
        table=str(tmp_path / "table.parquet"),
        gdir=str(gdir),
        atoms=str(ATOM_FEATURES),
        epochs=epochs,
        out=str(out),
        state=str(state),
    )
    return [sys.executable, "-c", code], out, state


def test_killed_training_resumes_to_bitwise_identical_result(tmp_path):
    df, gdir, _ = _data(tmp_path)
    epochs = 40
    cmd, ref_out, _ = _runner(tmp_path, df, gdir, "uninterrupted", epochs)
    subprocess.run(cmd, check=True, timeout=600)

    cmd, out, state = _runner(tmp_path, df, gdir, "killed", epochs)
    proc = subprocess.Popen(cmd, start_new_session=True)
    killed_after = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                st = torch.load(state, weights_only=True)
            except Exception:  # noqa: BLE001 - renamed into place while we read
                continue
            if st["epoch"] >= 5:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_after = st["epoch"]
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_after is not None and proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists() and state.exists()
    assert torch.load(state, weights_only=True)["epoch"] < epochs - 1

    subprocess.run(cmd, check=True, timeout=600)  # started again: resumes from the state
    assert out.exists() and not state.exists()
    a, b = torch.load(ref_out, weights_only=True), torch.load(out, weights_only=True)
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert a["history"]["val_mae"] == b["history"]["val_mae"]
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["result"]["best_val_mae"] == b["result"]["best_val_mae"]
    assert a["result"]["best_epoch"] == b["result"]["best_epoch"]
    assert len(b["history"]["val_mae"]) == epochs
