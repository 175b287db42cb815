"""Multi-task masked loss, classification objective, freezing and the target's normaliser."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ATOM_FEATURES, random_graphs, save_graphs

from tlcgcnn.data.targets import Target, target_from_spec
from tlcgcnn.nn import build_model
from tlcgcnn.nn.normalize import MultiNormalizer, Normalizer
from tlcgcnn.train.loop import TrainConfig, fit, train
from tlcgcnn.train.objectives import Objective, masked_mse
from tlcgcnn.train.transfer import TransferConfig, apply_transfer

CFG = {"atom_fea_len": 16, "n_conv": 3, "h_fea_len": 24, "radius": 6.0, "gaussian_step": 0.5}


def test_masked_mse_ignores_missing_labels():
    y = torch.tensor([[1.0, float("nan")], [2.0, 3.0], [float("nan"), 1.0]])
    w = torch.tensor([1.0, 0.5])
    out = torch.zeros(3, 2, requires_grad=True)
    loss = masked_mse(out, y, w)
    expected = 1.0 * (1.0 + 4.0) / 2 + 0.5 * (9.0 + 1.0) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert out.grad[0, 1] == 0 and out.grad[2, 0] == 0  # missing labels: no gradient
    assert out.grad[1, 0] != 0
    # changing a prediction where the label is missing changes nothing
    out2 = torch.zeros(3, 2)
    out2[0, 1] = 100.0
    out2[2, 0] = -7.0
    assert masked_mse(out2, y, w).item() == pytest.approx(expected)


def test_masked_mse_column_without_labels_adds_zero():
    y = torch.tensor([[1.0, float("nan")], [3.0, float("nan")]])
    out = torch.zeros(2, 2)
    assert masked_mse(out, y, torch.ones(2)).item() == pytest.approx((1 + 9) / 2)


def test_classification_objective_is_bce():
    obj = Objective(task="classification")
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    y = torch.tensor([1.0, 0.0, 0.0])
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), y)
    assert obj.loss(logits, y).item() == pytest.approx(ref.item())


def test_target_from_spec_multitask():
    t = target_from_spec({"name": "mt", "property": "a", "properties": ["a", "b", "c"], "weights": [1, 1, 0.5]})
    assert t.task == "multitask" and t.n_out == 3 and t.property == "a" and t.weights == [1.0, 1.0, 0.5]
    assert target_from_spec({"name": "m", "property": "is_metal", "task": "classification"}).n_out == 1
    with pytest.raises(ValueError, match="weights"):
        target_from_spec({"name": "mt", "property": "a", "properties": ["a", "b"], "weights": [1, 1, 1]})


def test_multi_normalizer_roundtrip_keeps_nan():
    y = np.array([[1.0, np.nan], [3.0, 10.0], [5.0, 20.0]])
    mn = MultiNormalizer.fit(y)
    t = torch.tensor(y, dtype=torch.float32)
    back = mn.denorm(mn.norm(t))
    assert torch.isnan(back[0, 1])
    torch.testing.assert_close(back[1:], t[1:])
    assert mn.parts[1].mean == pytest.approx(15.0)


def _pretrained(atom_table, kind="cgcnn", n_out=1):
    torch.manual_seed(123)
    model = build_model({**CFG, "kind": kind, "n_out": n_out}, atom_table)
    # give the batch norms non-trivial running statistics
    g = random_graphs(20, seed=5)
    model.train()
    with torch.no_grad():
        model(g.batch(torch.arange(len(g))))
    return {"model_config": model.config.to_dict(), "state_dict": copy.deepcopy(model.state_dict())}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_frozen_layers_and_bn_stats_unchanged_after_training(atom_table, graphs, k):
    pre = _pretrained(atom_table, n_out=3)  # a multi-task source: its head is not loaded
    torch.manual_seed(0)
    model = build_model({**CFG, "n_out": 1}, atom_table)
    frozen = apply_transfer(model, pre, TransferConfig(checkpoint="x", freeze=k, reinit="unfrozen"))
    assert len(frozen) == k + 1  # embedding + k convolutions
    before = copy.deepcopy(model.state_dict())
    # re-initialised: the first unfrozen conv differs from the pretrained one
    if k < 3:
        assert not torch.equal(before[f"convs.{k}.lin_self.weight"], pre["state_dict"][f"convs.{k}.lin_self.weight"])
    y = torch.randn(len(graphs))
    pos = torch.arange(len(graphs))
    fit(
        model,
        graphs,
        y,
        pos[:30],
        pos[30:],
        Normalizer.fit(y[:30].numpy()),
        TrainConfig(epochs=3, batch_size=8, lr=0.01, patience=10),
        seed=0,
        frozen=frozen,
        progress=False,
    )
    after = model.state_dict()
    frozen_prefixes = ["embedding."] + [f"convs.{i}." for i in range(k)]
    for key, val in after.items():
        if key == "atom_table":
            continue
        if any(key.startswith(p) for p in frozen_prefixes):  # weights and BN running stats
            assert torch.equal(val, pre["state_dict"][key]), key
        elif key.endswith(("weight", "bias")) and key.startswith(("convs.", "fc_out")):
            assert not torch.equal(val, before[key]), f"{key} did not train"
    assert all(not p.requires_grad for m in frozen for p in m.parameters())


def test_reinit_head_keeps_convs(atom_table):
    pre = _pretrained(atom_table)
    model = build_model(CFG, atom_table)
    apply_transfer(model, pre, TransferConfig(checkpoint="x", freeze=0, reinit="head"))
    sd = model.state_dict()
    assert torch.equal(sd["convs.2.lin_self.weight"], pre["state_dict"]["convs.2.lin_self.weight"])
    assert not torch.equal(sd["fc_out.weight"], pre["state_dict"]["fc_out.weight"])


def test_transfer_across_kinds_is_refused(atom_table):
    pre = _pretrained(atom_table, kind="attention")
    with pytest.raises(ValueError, match="does not match"):
        apply_transfer(build_model(CFG, atom_table), pre, TransferConfig(checkpoint="x"))


def _ckpt_file(tmp_path, atom_table, labels_mean):
    """A pretraining checkpoint trained on labels around ``labels_mean``."""
    g = random_graphs(40, seed=3)
    gdir = save_graphs(g, tmp_path / "graphs", radius=CFG["radius"])
    ids = [str(i) for i in g.ids]
    df = pd.DataFrame(
        {
            "material_id": ids,
            "src": labels_mean + np.arange(40.0),
            "tgt": np.linspace(-1, 1, 40),
            "flag": np.arange(40) % 2 == 0,
        }
    )
    model_cfg = {**CFG, "kind": "cgcnn"}
    cfg = TrainConfig(epochs=2, batch_size=8, patience=5)
    ck = train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:25], "val": ids[25:32], "test": ids[32:]},
        target=Target("src", "src"),
        model_cfg=model_cfg,
        train_cfg=cfg,
        seed=0,
        out_checkpoint=tmp_path / "pre.pt",
        progress=False,
    )
    return ck, df, gdir, ids, model_cfg, cfg


def test_finetuned_checkpoint_has_the_targets_normalizer(tmp_path, atom_table):
    pre, df, gdir, ids, model_cfg, cfg = _ckpt_file(tmp_path, atom_table, labels_mean=1000.0)
    assert pre["normalizer"]["mean"] > 900
    ck = train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:20], "val": ids[20:30], "test": ids[30:]},
        target=Target("tgt", "tgt"),
        model_cfg=model_cfg,
        train_cfg=cfg,
        seed=0,
        out_checkpoint=tmp_path / "ft.pt",
        transfer=TransferConfig(checkpoint=str(tmp_path / "pre.pt"), freeze=1, reinit="unfrozen"),
        progress=False,
    )
    expected = df.set_index("material_id").loc[ids[:20], "tgt"]
    assert ck["normalizer"]["mean"] == pytest.approx(float(expected.mean()))
    assert ck["normalizer"]["std"] == pytest.approx(float(expected.std(ddof=0)))


def test_classification_training_and_evaluation(tmp_path, atom_table):
    from tlcgcnn.analysis.evaluate import evaluate

    _, df, gdir, ids, model_cfg, cfg = _ckpt_file(tmp_path, atom_table, labels_mean=0.0)
    ck = train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:20], "val": ids[20:30], "test": ids[30:]},
        target=Target("metal", "flag", task="classification"),
        model_cfg=model_cfg,
        train_cfg=cfg,
        seed=0,
        out_checkpoint=tmp_path / "cls.pt",
        progress=False,
    )
    assert ck["normalizer"] == {"kind": "zscore", "mean": 0.0, "std": 1.0, "scale": 0.5}  # logits, not scaled labels
    rec = evaluate(tmp_path / "cls.pt", df, gdir, tmp_path / "m.json", tmp_path / "p.parquet", device="cpu")
    assert 0.0 <= rec["roc_auc"] <= 1.0 and rec["error"] == pytest.approx(1 - rec["roc_auc"])
    preds = pd.read_parquet(tmp_path / "p.parquet")
    assert preds["y_pred"].between(0, 1).all()


def test_multitask_training_with_missing_labels(tmp_path, atom_table):
    from tlcgcnn.analysis.evaluate import evaluate

    _, df, gdir, ids, model_cfg, cfg = _ckpt_file(tmp_path, atom_table, labels_mean=0.0)
    df["other"] = np.where(np.arange(40) % 3 == 0, np.nan, np.arange(40.0))
    tgt = target_from_spec({"name": "mt", "property": "tgt", "properties": ["tgt", "other"], "weights": [1.0, 0.5]})
    ck = train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:20], "val": ids[20:30], "test": ids[30:]},
        target=tgt,
        model_cfg=model_cfg,
        train_cfg=cfg,
        seed=0,
        out_checkpoint=tmp_path / "mt.pt",
        progress=False,
    )
    assert ck["model_config"]["n_out"] == 2
    assert np.isfinite(ck["result"]["best_val_mae"])
    rec = evaluate(tmp_path / "mt.pt", df, gdir, tmp_path / "m.json", tmp_path / "p.parquet", device="cpu")
    assert rec["n_test_other"] == int(np.isfinite(df["other"].to_numpy()[30:]).sum())


def test_task_heads_give_each_output_its_own_head(atom_table):
    """MT-CGCNN's form: per output a hidden layer on the shared crystal vector; an output's
    gradient reaches its own head and the shared layers, never another task's head."""
    g = random_graphs(6, seed=1)
    shared = build_model({**CFG, "n_out": 3}, atom_table)
    model = build_model({**CFG, "n_out": 3, "task_heads": 1}, atom_table)
    assert model.config.to_dict()["task_heads"] == 1 and "task_heads" not in shared.config.to_dict()
    h = CFG["h_fea_len"]
    extra = 3 * (h * h + h + h + 1) - (3 * h + 3)  # three heads instead of one shared Linear(h, 3)
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in shared.parameters()) == extra
    out = model(g.batch(torch.arange(6)))
    assert out.shape == (6, 3)
    out[:, 1].sum().backward()
    for k, head in enumerate(model.task_heads):
        grads = [p.grad for p in head.parameters()]
        if k == 1:
            assert all(gr is not None and gr.abs().sum() > 0 for gr in grads)
        else:
            assert all(gr is None or not gr.any() for gr in grads)
    assert model.conv_to_fc.weight.grad.abs().sum() > 0 and model.convs[0].lin_edge.weight.grad.abs().sum() > 0
    assert set(model.head_modules()) >= set(model.task_heads)
    with pytest.raises(ValueError, match="task_heads must be >= 0"):
        build_model({**CFG, "task_heads": -1}, atom_table)


def test_a_multitask_source_with_task_heads_fine_tunes_into_either_output_layer(tmp_path, atom_table):
    _, df, gdir, ids, model_cfg, cfg = _ckpt_file(tmp_path, atom_table, labels_mean=0.0)
    df["other"] = np.arange(40.0) ** 0.5
    tgt = target_from_spec({"name": "mt", "property": "tgt", "properties": ["tgt", "other"]})
    ck = train(
        table_df=df,
        graph_dir=gdir,
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:20], "val": ids[20:30], "test": ids[30:]},
        target=tgt,
        model_cfg={**model_cfg, "task_heads": 1},
        train_cfg=cfg,
        seed=0,
        out_checkpoint=tmp_path / "mt_heads.pt",
        progress=False,
    )
    assert ck["model_config"]["task_heads"] == 1 and "task_heads.1.2.weight" in ck["state_dict"]
    from tlcgcnn.analysis.evaluate import evaluate

    rec = evaluate(tmp_path / "mt_heads.pt", df, gdir, tmp_path / "m.json", tmp_path / "p.parquet", device="cpu")
    assert np.isfinite(rec["mae_tgt"]) and np.isfinite(rec["mae_other"])  # the checkpoint loads and predicts
    sd = ck["state_dict"]
    tc = TransferConfig(checkpoint=str(tmp_path / "mt_heads.pt"))
    # a single-output model with one shared output layer: the shared layers kept, the output new
    plain = build_model({**CFG, "n_out": 1}, atom_table)
    fresh = copy.deepcopy(plain.fc_out.state_dict())
    apply_transfer(plain, ck, tc)
    assert torch.equal(plain.conv_to_fc.weight, sd["conv_to_fc.weight"])
    assert torch.equal(plain.convs[2].lin_nbr.weight, sd["convs.2.lin_nbr.weight"])
    assert all(torch.equal(v, plain.fc_out.state_dict()[k]) for k, v in fresh.items())
    # a single-output model with a task head: it starts from the first task's head
    headed = build_model({**CFG, "n_out": 1, "task_heads": 1}, atom_table)
    apply_transfer(headed, ck, tc)
    assert torch.equal(headed.task_heads[0][0].weight, sd["task_heads.0.0.weight"])
    # reinit head: every task head re-initialised, the convolutions kept
    apply_transfer(headed, ck, TransferConfig(checkpoint=str(tmp_path / "mt_heads.pt"), reinit="head"))
    assert not torch.equal(headed.task_heads[0][0].weight, sd["task_heads.0.0.weight"])
    assert torch.equal(headed.convs[0].lin_self.weight, sd["convs.0.lin_self.weight"])
