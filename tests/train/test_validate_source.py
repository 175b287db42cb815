"""``validate_source``: a source fine-tuned on its own quantity keeps its normaliser, and the
source as it is competes on validation as epoch -1, so fine-tuning that never beats it on
validation leaves it unchanged (tlcgcnn.train.loop.fit's ``score_start``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ATOM_FEATURES, copy_state_of_epoch, random_graphs, save_graphs

from tlcgcnn import config as C
from tlcgcnn.data.targets import Target
from tlcgcnn.nn import graphs
from tlcgcnn.nn.normalize import Normalizer
from tlcgcnn.train.checkpoint import describe_checkpoint, format_description, load_checkpoint, model_from_checkpoint
from tlcgcnn.train.loop import TrainConfig, predict, prepare, train
from tlcgcnn.train.transfer import TransferConfig

MODEL = {"kind": "cgcnn", "atom_fea_len": 16, "n_conv": 2, "h_fea_len": 24, "radius": 6.0, "gaussian_step": 0.5}


@pytest.fixture(scope="module")
def crystals(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vs")
    g = random_graphs(70, seed=11)
    gdir = save_graphs(g, tmp / "graphs", radius=MODEL["radius"])
    ids = [str(i) for i in g.ids]
    rng = np.random.default_rng(1)
    # a label the graphs determine (mean atomic number) plus noise, far from zero mean
    z_mean = [float(g.z[g.offsets[i] : g.offsets[i + 1]].float().mean()) for i in range(len(ids))]
    y = 5.0 + 0.05 * np.asarray(z_mean) + 0.05 * rng.normal(size=len(ids))
    df = pd.DataFrame({"material_id": ids, "y": y})
    source = tmp / "source.pt"
    train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:40], "val": ids[40:50], "test": ids[60:]},
        target=Target("y", "y"),
        model_cfg=MODEL,
        train_cfg=TrainConfig(epochs=12, batch_size=8, lr=3e-3, amp="none", compile="none"),
        seed=2,
        out_checkpoint=source,
        progress=False,
    )
    return df, gdir, ids, source


def _finetune(crystals, out, *, lr, validate_source=True, epochs=3, state=None):
    df, gdir, ids, source = crystals
    return train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[50:58], "val": ids[58:64], "test": ids[64:]},  # crystals the source never saw
        target=Target("y", "y"),
        model_cfg=MODEL,
        train_cfg=TrainConfig(epochs=epochs, batch_size=4, lr=lr, patience=50, amp="none", compile="none"),
        seed=0,
        out_checkpoint=out,
        transfer=TransferConfig(str(source), validate_source=validate_source),
        progress=False,
        resume_path=state,
    )


def _test_predictions(ckpt_path, crystals) -> np.ndarray:
    df, gdir, ids, _ = crystals
    ck = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ck)
    data = graphs.load(gdir, ids[64:])
    raw = predict(model, data, torch.arange(len(ids[64:])), 64)
    return Normalizer.from_dict(ck["normalizer"]).denorm(raw[:, 0]).numpy()


def test_a_fine_tuning_that_never_beats_the_source_keeps_it_unchanged(crystals, tmp_path):
    """A learning rate that wrecks the model: every epoch is worse on validation than the
    source, so the cell's model is the source, weights, normaliser and predictions."""
    ck = _finetune(crystals, tmp_path / "ft.pt", lr=5.0)
    src = load_checkpoint(crystals[3])
    assert ck["result"]["best_epoch"] == -1
    assert ck["result"]["best_val_mae"] == ck["result"]["start_val_mae"]
    assert min(ck["history"]["val_mae"]) > ck["result"]["start_val_mae"]
    assert ck["normalizer"] == src["normalizer"]
    for k, v in src["state_dict"].items():
        assert torch.equal(ck["state_dict"][k], v), k
    kept, source = _test_predictions(tmp_path / "ft.pt", crystals), _test_predictions(crystals[3], crystals)
    np.testing.assert_array_equal(kept, source)
    assert "competed on validation" in format_description(describe_checkpoint(tmp_path / "ft.pt"))


def test_without_it_the_wrecked_run_keeps_its_best_epoch_and_the_targets_normaliser(crystals, tmp_path):
    ck = _finetune(crystals, tmp_path / "ft.pt", lr=5.0, validate_source=False)
    src = load_checkpoint(crystals[3])
    assert ck["result"]["best_epoch"] >= 0 and "start_val_mae" not in ck["result"]
    assert ck["normalizer"] != src["normalizer"]  # fitted on the 8 training labels


def test_an_epoch_that_beats_the_source_is_kept(crystals, tmp_path):
    ck = _finetune(crystals, tmp_path / "ft.pt", lr=1e-3, epochs=6)
    assert (
        ck["result"]["start_val_mae"]
        >= ck["result"]["best_val_mae"]
        == min([ck["result"]["start_val_mae"], *ck["history"]["val_mae"]])
    )


def test_a_resumed_run_remembers_the_sources_score(crystals, tmp_path):
    with copy_state_of_epoch(tmp_path / "after0.pt"):
        full = _finetune(crystals, tmp_path / "a.pt", lr=5.0, state=tmp_path / "state.pt")
    assert torch.load(tmp_path / "after0.pt", weights_only=True)["start_val"] == full["result"]["start_val_mae"]
    resumed = _finetune(crystals, tmp_path / "b.pt", lr=5.0, state=tmp_path / "after0.pt")
    assert resumed["result"]["best_epoch"] == full["result"]["best_epoch"] == -1
    assert resumed["result"]["start_val_mae"] == full["result"]["start_val_mae"]
    assert resumed["history"]["val_mae"] == full["history"]["val_mae"]


def test_a_source_of_another_kind_is_refused(crystals, tmp_path):
    df, gdir, ids, source = crystals
    with pytest.raises(ValueError, match="single-output regression target"):
        prepare(
            table_df=df.assign(flag=(df["y"] > df["y"].median()).astype(int)),
            graph_dir=gdir,
            atom_table_path=ATOM_FEATURES,
            split_ids={"train": ids[50:58], "val": ids[58:64], "test": ids[64:]},
            target=Target("flag", "flag", task="classification"),
            model_cfg=MODEL,
            train_cfg=TrainConfig(epochs=1, amp="none", compile="none"),
            seed=0,
            transfer=TransferConfig(str(source), validate_source=True),
        )


def _config(mode: dict) -> C.Config:
    return C.load(
        {
            "name": "t",
            "dataset": {"source": "local", "path": "x.csv"},
            "pretrain": [{"name": "ef", "property": "formation_energy_per_atom"}],
            "finetune": {
                "targets": [{"name": "ef_nm", "property": "formation_energy_per_atom", "subset": "nonmetal"}],
                "sizes": [50],
                "seeds": [0],
                "modes": {"scratch": {}, "m": mode},
            },
        }
    )


def test_the_config_takes_it_only_where_the_source_competes_as_it_is():
    mode = _config({"pretrained": "ef", "validate_source": True}).modes["m"]
    assert mode.validate_source and mode.as_dict()["validate_source"] is True
    assert C.Mode.from_dict(mode.as_dict()) == mode
    plain = _config({"pretrained": "ef"}).modes["m"]
    assert "validate_source" not in plain.as_dict()  # finished seeds keep their run keys
    assert C.Mode.from_dict(plain.as_dict()) == plain
    with pytest.raises(C.ConfigError, match="reinit 'head' changes the source"):
        _config({"pretrained": "ef", "reinit": "head", "validate_source": True})
    with pytest.raises(C.ConfigError, match="only a graph transfer mode"):
        _config({"validate_source": True})
    with pytest.raises(C.ConfigError, match="only a graph transfer mode"):
        _config({"pretrained": "ef", "features": "frozen", "estimator": "ridge", "validate_source": True})
