"""The seeds of a cell trained as one vmapped ensemble (tlcgcnn.train.ensemble.fit_seeds) end
where each seed trained alone ends (CPU), resume from the ensemble's state, and a cell with
`train.ensemble: on` writes the same per-seed checkpoints and records as one without."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ATOM_FEATURES, random_graphs, save_graphs

from tlcgcnn.data.targets import Target
from tlcgcnn.train import ensemble
from tlcgcnn.train.loop import TrainConfig, fit, prepare, train
from tlcgcnn.train.transfer import TransferConfig

CFG = {"kind": "cgcnn", "atom_fea_len": 16, "n_conv": 2, "h_fea_len": 24, "radius": 6.0, "gaussian_step": 0.5}
SEEDS = (0, 1, 2)


@pytest.fixture
def data(tmp_path):
    g = random_graphs(60, seed=4)
    gdir = save_graphs(g, tmp_path / "graphs", radius=CFG["radius"])
    ids = [str(i) for i in g.ids]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"material_id": ids, "y": rng.normal(size=60), "src": rng.normal(size=60) + 3})
    return df, gdir, ids


def _split(ids: list[str], seed: int) -> dict[str, list[str]]:
    """Each seed its own training and validation crystals (as a cell's seeds have), one test set."""
    pool = list(np.random.default_rng(seed).permutation(ids[:48]))
    return {"train": pool[:24], "val": pool[24:34], "test": ids[48:]}


def _prepare(df, gdir, ids, seed, cfg, transfer=None):
    return prepare(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids=_split(ids, seed),
        target=Target("y", "y"),
        model_cfg=CFG,
        train_cfg=cfg,
        seed=seed,
        transfer=transfer,
    )


def _alone(df, gdir, ids, cfg, transfer=None):
    out = []
    for seed in SEEDS:
        p = _prepare(df, gdir, ids, seed, cfg, transfer)
        r = fit(p.model, p.data, p.y, p.train_pos, p.val_pos, p.normalizer, cfg, seed, p.frozen,
                progress=False, objective=p.objective, param_groups=p.groups,
                score_start=transfer is not None and transfer.validate_source)  # fmt: skip
        out.append((r, {k: v.clone() for k, v in p.model.state_dict().items()}))
    return out


def _source(df, gdir, ids, tmp_path):
    train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:40], "val": ids[40:48], "test": ids[48:]},
        target=Target("src", "src"),
        model_cfg=CFG,
        train_cfg=TrainConfig(epochs=3, batch_size=8, amp="none", compile="none"),
        seed=7,
        out_checkpoint=tmp_path / "src.pt",
        progress=False,
    )
    return str(tmp_path / "src.pt")


@pytest.mark.parametrize("kind", ["scratch", "frozen_and_scaled_lr", "validate_source"])
def test_seeds_trained_together_end_where_each_seed_alone_ends(data, tmp_path, kind):
    """With SGD the runs agree to float rounding (the padded, stacked batches sum in another
    order). Adam turns rounding-level gradients (e.g. of a bias that batch norm cancels)
    into full-size steps, so there the runs agree statistically only (next test)."""
    df, gdir, ids = data
    cfg = TrainConfig(
        epochs=8, batch_size=8, patience=3, lr=3e-2, optimizer="sgd", amp="none", compile="none", threads=1
    )
    transfer = None
    if kind == "frozen_and_scaled_lr":  # the embedding and one convolution frozen, the rest re-initialised at 0.5x lr
        transfer = TransferConfig(
            checkpoint=_source(df, gdir, ids, tmp_path), freeze=1, reinit="head", backbone_lr_scale=0.5
        )
    elif kind == "validate_source":  # every weight kept, the source's normaliser, the source as epoch -1
        transfer = TransferConfig(checkpoint=_source(df, gdir, ids, tmp_path), freeze=1, validate_source=True)
    alone = _alone(df, gdir, ids, cfg, transfer)
    preps = [_prepare(df, gdir, ids, s, cfg, transfer) for s in SEEDS]
    together = ensemble.fit_seeds(preps, cfg, progress=False)
    for (ref, ref_state), res, prep in zip(alone, together, preps, strict=True):
        assert res.best_epoch == ref.best_epoch
        if kind == "validate_source":
            assert res.start_val_mae == pytest.approx(ref.start_val_mae, rel=1e-6) and res.start_val_mae is not None
        else:
            assert res.start_val_mae is None
        assert len(res.history["val_mae"]) == len(ref.history["val_mae"])  # the same early stop
        np.testing.assert_allclose(res.history["val_mae"], ref.history["val_mae"], rtol=1e-5)
        np.testing.assert_allclose(res.history["train_loss"], ref.history["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(res.history["lr"], ref.history["lr"], rtol=1e-12)
        for key, tensor in ref_state.items():
            torch.testing.assert_close(prep.model.state_dict()[key], tensor, rtol=1e-5, atol=1e-6, msg=key)
        assert res.runtime["ensemble"] == "3"
    if transfer is not None:  # the frozen layers kept the source's weights
        src = torch.load(transfer.checkpoint, weights_only=True)["state_dict"]
        for prep in preps:
            assert torch.equal(prep.model.embedding.weight, src["embedding.weight"])
            assert torch.equal(prep.model.convs[0].lin_self.weight, src["convs.0.lin_self.weight"])


def test_with_adam_the_ensemble_trains_as_well_as_the_seeds_alone(data):
    df, gdir, ids = data
    cfg = TrainConfig(epochs=8, batch_size=8, patience=3, lr=3e-3, amp="none", compile="none", threads=1)
    alone = _alone(df, gdir, ids, cfg)
    together = ensemble.fit_seeds([_prepare(df, gdir, ids, s, cfg) for s in SEEDS], cfg, progress=False)
    for (ref, _), res in zip(alone, together, strict=True):
        n = min(len(ref.history["val_mae"]), len(res.history["val_mae"]))
        np.testing.assert_allclose(res.history["val_mae"][:n], ref.history["val_mae"][:n], rtol=1e-2)
        assert res.best_val_mae == pytest.approx(ref.best_val_mae, rel=1e-2)


def test_an_interrupted_ensemble_resumes_to_the_same_result(data, tmp_path, monkeypatch):
    df, gdir, ids = data
    cfg = TrainConfig(epochs=6, batch_size=8, patience=10, amp="none", compile="none", threads=1)
    ref = ensemble.fit_seeds([_prepare(df, gdir, ids, s, cfg) for s in SEEDS], cfg, progress=False)
    state = tmp_path / "ensemble_state.pt"

    import tlcgcnn.train.loop as loop

    calls = {"n": 0}
    real = loop.predict

    def dying(*args, **kwargs):  # killed during the validation of epoch 3 (states of epochs 0-2 written)
        calls["n"] += 1
        if calls["n"] > 3 * len(SEEDS):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "predict", dying)
    with pytest.raises(KeyboardInterrupt):
        ensemble.fit_seeds([_prepare(df, gdir, ids, s, cfg) for s in SEEDS], cfg, state_path=state, progress=False)
    assert torch.load(state, weights_only=True)["epoch"] == 2
    monkeypatch.setattr(loop, "predict", real)
    preps = [_prepare(df, gdir, ids, s, cfg) for s in SEEDS]
    resumed = ensemble.fit_seeds(preps, cfg, state_path=state, progress=False)
    for a, b in zip(ref, resumed, strict=True):
        assert a.history["val_mae"] == b.history["val_mae"] and a.history["train_loss"] == b.history["train_loss"]
        assert a.best_epoch == b.best_epoch and a.best_val_mae == b.best_val_mae
    with pytest.raises(ValueError, match=r"ensemble state of seeds \[0, 1, 2\] / 6 epochs, not \[0, 1\] / 6"):
        ensemble.fit_seeds(preps[:2], cfg, state_path=state, progress=False)


def test_an_ensemble_needs_runs_of_one_size(data):
    df, gdir, ids = data
    cfg = TrainConfig(epochs=2, batch_size=8, amp="none", compile="none")
    a = _prepare(df, gdir, ids, 0, cfg)
    with pytest.raises(ValueError, match="at least two runs"):
        ensemble.fit_seeds([a], cfg, progress=False)
    b = prepare(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={**_split(ids, 1), "train": _split(ids, 1)["train"][:20]},
        target=Target("y", "y"),
        model_cfg=CFG,
        train_cfg=cfg,
        seed=1,
    )
    with pytest.raises(ValueError, match=r"equal training and validation sizes, not \[\(20, 10\), \(24, 10\)\]"):
        ensemble.fit_seeds([a, b], cfg, progress=False)
