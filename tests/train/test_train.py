from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from tlcgcnn.data import split, table
from tlcgcnn.data.targets import Target
from tlcgcnn.features.featurize import FeaturizeParams, featurize
from tlcgcnn.nn.normalize import Normalizer, inverse_transform, transform
from tlcgcnn.train.checkpoint import load_checkpoint, model_from_checkpoint
from tlcgcnn.train.loop import TrainConfig, train
from tlcgcnn.train.transfer import TransferConfig, apply_transfer, set_train_mode


def test_normalizer_round_trip():
    y = np.array([0.1, 2.0, 3.5, 7.0, -1.0])
    for kind in ("zscore", "tanh"):
        n = Normalizer.fit(y, kind)
        t = torch.tensor(y)
        assert torch.allclose(n.denorm(n.norm(t)), t, atol=1e-5)
        assert Normalizer.from_dict(n.to_dict()) == n
    z = Normalizer.fit(y).norm(torch.tensor(y))
    assert abs(float(z.mean())) < 1e-9 and abs(float(z.std(unbiased=False)) - 1) < 1e-9
    assert np.allclose(inverse_transform(transform(np.array([10.0, 250.0]), "log10"), "log10"), [10.0, 250.0])
    with pytest.raises(ValueError):
        transform(np.array([0.0]), "log10")


def test_split_reproducibility():
    df = pd.DataFrame(
        {
            "material_id": [f"m{i}" for i in range(200)],
            "k_vrh": np.r_[np.full(150, 50.0), np.full(50, np.nan)],
            "is_metal": [i % 3 == 0 for i in range(200)],
        }
    )
    subs = split.subsets(df)
    assert len(subs["metal"]) + len(subs["nonmetal"]) == 200
    a = split.target_split(df, "k_vrh", subs["all"], 0.2, None, seed=7)
    b = split.target_split(df, "k_vrh", subs["all"], 0.2, None, seed=7)
    c = split.target_split(df, "k_vrh", subs["all"], 0.2, None, seed=8)
    assert a == b and a["test"] != c["test"] and len(a["test"]) == 30 and a["n_labelled"] == 150
    assert not set(a["test"]) & set(a["pool"])
    t25 = split.train_val(a["pool"], 25, 0, 0.2, 10)
    t50 = split.train_val(a["pool"], 50, 0, 0.2, 10)
    assert t25.train == t50.train[:25] and len(t25.val) == 10 and len(t50.val) == 10
    assert not set(t50.train) & set(t50.val)
    assert split.train_val(a["pool"], 25, 1, 0.2, 10).train != t25.train
    with pytest.raises(ValueError, match="pool has only"):
        split.train_val(a["pool"], 115, 0, 0.2, 10)
    gap = split.subsets(pd.DataFrame({"material_id": ["a", "b", "c"], "band_gap": [0.0, 1.0, np.nan]}), rule="band_gap")
    assert gap == {"all": ["a", "b", "c"], "metal": ["a"], "nonmetal": ["b"]}


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        a = 3.5 + rng.random() * 2.5
        s = Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ).get_primitive_structure()
        rows.append({"material_id": f"t{i}", "source": "toy", **table.structure_arrays(s), "k_vrh": 400.0 / a**3 * 10})
    df = pd.DataFrame(rows)
    d = tmp_path_factory.mktemp("toy")
    table.write(df, d / "t.parquet")
    featurize(d / "t.parquet", d / "g", FeaturizeParams(), progress=False)
    ids = df["material_id"].tolist()
    return df, d, {"train": ids[:40], "val": ids[40:50], "test": ids[50:]}


def _train(toy_set, out, transfer=None, epochs=5):
    df, d, sp = toy_set
    return train(
        table_df=df,
        graph_dir=d / "g",
        atom_table_path=ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv",
        split_ids=sp,
        target=Target("k", "k_vrh", "log10"),
        model_cfg={"atom_fea_len": 16, "n_conv": 3, "h_fea_len": 16},
        train_cfg=TrainConfig(epochs=epochs, batch_size=16, patience=50),
        seed=3,
        out_checkpoint=out,
        transfer=transfer,
        progress=False,
    )


def test_checkpoint_round_trip_and_determinism(toy_set, tmp_path):
    ck = _train(toy_set, tmp_path / "a.pt")
    _train(toy_set, tmp_path / "b.pt")
    a = load_checkpoint(tmp_path / "a.pt")  # weights_only=True inside
    b = load_checkpoint(tmp_path / "b.pt")
    assert a["split"] == toy_set[2] and a["target"]["transform"] == "log10"
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])  # same seed, same weights
    model = model_from_checkpoint(a)
    assert all(torch.equal(model.state_dict()[k], ck["state_dict"][k]) for k in ck["state_dict"])
    assert len(a["history"]["val_mae"]) == 5 and a["result"]["best_val_mae"] == min(a["history"]["val_mae"])
    norm = Normalizer.from_dict(a["normalizer"])
    y_train = np.log10(toy_set[0].set_index("material_id").loc[toy_set[2]["train"], "k_vrh"].to_numpy())
    assert norm.mean == pytest.approx(y_train.mean())  # fitted on the training split only


def test_frozen_layers_stay_frozen(toy_set, tmp_path):
    _train(toy_set, tmp_path / "pre.pt")
    pre = load_checkpoint(tmp_path / "pre.pt")
    ck = _train(toy_set, tmp_path / "ft.pt", TransferConfig(str(tmp_path / "pre.pt"), freeze=2, reinit="none"))
    for key, value in pre["state_dict"].items():
        frozen = key.startswith(("embedding.", "convs.0.", "convs.1."))
        same = torch.equal(value, ck["state_dict"][key])
        if frozen:
            assert same, f"{key} changed although frozen"  # BatchNorm running stats included
        elif key.startswith("convs.2.lin") or key.startswith("fc_out"):
            assert not same, f"{key} did not train"
    assert ck["result"]["n_trainable"] < ck["result"]["n_params"]


def test_reinit_head_and_unfrozen(toy_set, tmp_path, atom_table):
    _train(toy_set, tmp_path / "pre.pt", epochs=2)
    pre = load_checkpoint(tmp_path / "pre.pt")
    from tlcgcnn.nn import build_model

    m = build_model(pre["model_config"], atom_table)
    frozen = apply_transfer(m, pre, TransferConfig("x", freeze=1, reinit="unfrozen"))
    sd = m.state_dict()
    assert torch.equal(sd["convs.0.lin_self.weight"], pre["state_dict"]["convs.0.lin_self.weight"])
    assert not torch.equal(sd["convs.1.lin_self.weight"], pre["state_dict"]["convs.1.lin_self.weight"])
    set_train_mode(m, frozen)
    assert not m.convs[0].bn1.training and m.convs[1].bn1.training
    with pytest.raises(ValueError, match="cannot freeze 4"):
        apply_transfer(build_model(pre["model_config"], atom_table), pre, TransferConfig("x", freeze=4))


def test_discriminative_learning_rates_per_parameter_group(atom_table, graphs, monkeypatch):
    """backbone_lr_scale: trained parameters that keep pretrained values learn at lr × scale,
    re-initialised (and not loaded) ones at lr; warm-up / schedule scale each group's own lr."""
    import tlcgcnn.train.loop as T
    from tlcgcnn.nn import build_model
    from tlcgcnn.nn.normalize import Normalizer
    from tlcgcnn.train.transfer import param_groups, pretrained_parameter_names

    cfg = {"atom_fea_len": 8, "n_conv": 2, "h_fea_len": 8, "radius": 6.0, "gaussian_step": 0.5}
    torch.manual_seed(0)
    src = build_model({**cfg, "n_out": 1}, atom_table)
    pre = {"model_config": src.config.to_dict(), "state_dict": src.state_dict()}
    torch.manual_seed(1)
    model = build_model({**cfg, "n_out": 1}, atom_table)
    tcfg = TransferConfig("x", freeze=1, reinit="head", backbone_lr_scale=0.1)
    frozen = apply_transfer(model, pre, tcfg)
    kept = pretrained_parameter_names(model, pre, tcfg)
    head = {n for m in model.head_modules() for n, _ in m.named_parameters(prefix=_prefix(model, m))}
    assert {n for n, _ in model.named_parameters() if n.startswith("convs.1.")} <= kept and not head & kept
    groups = {g["name"]: g for g in param_groups(model, kept, 1e-3, 0.1)}
    assert groups["pretrained"]["lr"] == pytest.approx(1e-4) and groups["new"]["lr"] == 1e-3
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["new"]["params"]} == head
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    in_groups = {id(p) for g in groups.values() for p in g["params"]}
    assert not frozen_ids & in_groups and in_groups == {id(p) for p in model.parameters() if p.requires_grad}
    # `unfrozen` re-initialises every trained layer: only the frozen ones keep pretrained values
    other = build_model({**cfg, "n_out": 1}, atom_table)
    ucfg = TransferConfig("x", freeze=1, reinit="unfrozen", backbone_lr_scale=0.1)
    apply_transfer(other, pre, ucfg)
    assert {
        n.split(".")[0] + "." + n.split(".")[1]
        for n in pretrained_parameter_names(other, pre, ucfg)
        if n.startswith("convs.")
    } == {"convs.0"}
    assert [g["name"] for g in param_groups(other, pretrained_parameter_names(other, pre, ucfg), 1e-3, 0.1)] == ["new"]
    assert len(param_groups(model, kept, 1e-3, 1.0)) == 1

    made = []
    real = T.make_optimizer
    monkeypatch.setattr(T, "make_optimizer", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    y = torch.randn(len(graphs))
    pos = torch.arange(len(graphs))
    train_cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, patience=10, warmup_epochs=4.0)
    res = T.fit(
        model,
        graphs,
        y,
        pos[:30],
        pos[30:],
        Normalizer.fit(y[:30].numpy()),
        train_cfg,
        seed=0,
        frozen=frozen,
        progress=False,
        param_groups=param_groups(model, kept, 1e-3, 0.1),
    )
    lrs = {g["name"]: g["lr"] for g in made[0].param_groups}
    factor = T.lr_factor(train_cfg, 1 + 3 / 4)  # the last step: epoch 1, step 3 of 4, inside the warm-up
    assert 0 < factor < 1
    assert lrs["pretrained"] == pytest.approx(1e-4 * factor) and lrs["new"] == pytest.approx(1e-3 * factor)
    assert res.history["lr"][-1] == pytest.approx(1e-3 * factor)


def _prefix(model, module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def test_backbone_lr_scale_is_recorded_in_the_checkpoint(toy_set, tmp_path):
    _train(toy_set, tmp_path / "pre.pt", epochs=1)
    ck = _train(
        toy_set,
        tmp_path / "ft.pt",
        TransferConfig(str(tmp_path / "pre.pt"), reinit="head", backbone_lr_scale=0.1),
        epochs=1,
    )
    assert ck["transfer"]["backbone_lr_scale"] == 0.1 and ck["train_config"]["lr"] == TrainConfig().lr


def test_resumed_fit_keeps_each_groups_learning_rate(atom_table, graphs, tmp_path, monkeypatch):
    """A run with two learning-rate groups, resumed from its state after epoch 1, ends
    bitwise-identical to the uninterrupted run (the groups' starting lrs are not taken from
    the resumed optimizer's scheduled ones)."""
    import tlcgcnn.train.loop as T
    from tlcgcnn.nn import build_model
    from tlcgcnn.nn.normalize import Normalizer
    from tlcgcnn.train.transfer import param_groups, pretrained_parameter_names

    cfg = {"atom_fea_len": 8, "n_conv": 2, "h_fea_len": 8, "radius": 6.0, "gaussian_step": 0.5}
    torch.manual_seed(0)
    src = build_model({**cfg, "n_out": 1}, atom_table)
    pre = {"model_config": src.config.to_dict(), "state_dict": src.state_dict()}
    tcfg = TransferConfig("x", reinit="head", backbone_lr_scale=0.1)
    y = torch.randn(len(graphs))
    pos = torch.arange(len(graphs))
    train_cfg = TrainConfig(
        epochs=4, batch_size=8, lr=3e-3, patience=10, warmup_epochs=1.5, schedule="cosine", amp="none"
    )
    save = torch.save

    def run(state: Path) -> tuple[dict, list[float]]:
        torch.manual_seed(1)
        model = build_model({**cfg, "n_out": 1}, atom_table)
        apply_transfer(model, pre, tcfg)
        groups = param_groups(model, pretrained_parameter_names(model, pre, tcfg), train_cfg.lr, 0.1)
        res = T.fit(
            model,
            graphs,
            y,
            pos[:30],
            pos[30:],
            Normalizer.fit(y[:30].numpy()),
            train_cfg,
            seed=0,
            progress=False,
            state_path=state,
            param_groups=groups,
        )
        return model.state_dict(), res.history["val_mae"]

    def keep_epoch_1(obj, f, *a, **k):
        save(obj, f, *a, **k)
        if isinstance(obj, dict) and obj.get("epoch") == 1:
            save(obj, tmp_path / "after1.pt")

    monkeypatch.setattr(torch, "save", keep_epoch_1)
    ref, ref_val = run(tmp_path / "full.pt")
    monkeypatch.setattr(torch, "save", save)
    assert (
        torch.load(tmp_path / "after1.pt", weights_only=True)["optimizer"]["param_groups"][0]["lr"] < 3e-4
    )  # a scheduled lr was saved
    got, got_val = run(tmp_path / "after1.pt")
    assert got_val == ref_val
    for key, tensor in ref.items():
        assert torch.equal(tensor, got[key]), key


def test_a_train_pool_all_cell_trains_on_metals_and_tests_on_its_subset(toy_set, tmp_path):
    """A non-metal target's cells (graph model, 2 epochs): scratch draws from the non-metal
    pool, scratch_all (train_pool: all) from pool_all, metals included; both test on the
    same non-metal test set, and only scratch_all's records say train_pool."""
    from tlcgcnn import config as C
    from tlcgcnn.train.finetune import finetune_cell
    from tlcgcnn.utils import fileio as io

    df, d, _ = toy_set
    ids = df["material_id"].tolist()
    metals = set(ids[::2])  # synthetic metal flag: every other crystal
    nonmetals = [i for i in ids if i not in metals]
    sp = split.target_split(df, "k_vrh", nonmetals, 0.2, None, 42, all_ids=ids)
    sp.update(name="k_nm", subset="nonmetal")
    io.write_json(tmp_path / "k_nm.split.json", sp)
    cfg = C.load(
        {
            "name": "t",
            "dataset": {"source": "local", "path": "x.csv"},
            "split": {"val_fraction": 0.2, "val_min": 5},
            "model": {"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16},
            "train": {
                "epochs": 2,
                "batch_size": 16,
                "patience": 5,
                "device": "cpu",
                "amp": "none",
                "checkpoint_every": 0,
            },
            "finetune": {
                "targets": [{"name": "k_nm", "property": "k_vrh", "transform": "log10", "subset": "nonmetal"}],
                "sizes": [10],
                "seeds": [0],
                "modes": {"scratch": {}, "scratch_all": {"train_pool": "all"}},
            },
        }
    )
    out = {}
    for mode in ("scratch", "scratch_all"):
        cell_dir = tmp_path / mode
        records = finetune_cell(
            cell=cfg.cell("k_nm", 10, mode),
            table_path=str(d / "t.parquet"),
            split_path=str(tmp_path / "k_nm.split.json"),
            graph_dir=str(d / "g"),
            atom_features_path=str(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv"),
            pretrained=None,
            split_cfg=cfg.split_settings(),
            threads=1,
            config=None,
            out_metrics=str(cell_dir / "metrics.json"),
            out_predictions=str(cell_dir / "predictions.parquet"),
            device="cpu",
        )
        out[mode] = (
            records[0],
            load_checkpoint(cell_dir / "runs" / "s0" / "model.pt")["split"],
            pd.read_parquet(cell_dir / "predictions.parquet"),
        )
    (rec, sp_scratch, pred), (rec_all, sp_all, pred_all) = out["scratch"], out["scratch_all"]
    assert sp_scratch["test"] == sp_all["test"] == sp["test"] and sorted(pred["material_id"]) == sorted(
        pred_all["material_id"]
    ) == sorted(sp["test"])
    assert set(sp_scratch["train"] + sp_scratch["val"]) <= set(sp["pool"]) and not metals & set(
        sp_scratch["train"] + sp_scratch["val"]
    )
    drawn = sp_all["train"] + sp_all["val"]
    assert set(drawn) <= set(sp["pool_all"]) and metals & set(sp_all["train"]) and not set(drawn) & set(sp["test"])
    assert (
        sp_all["train"] == split.train_val(sp["pool_all"], 10, 0, 0.2, 5).train
        and len(sp_all["val"]) == len(sp_scratch["val"]) == 5
    )
    assert rec_all["train_pool"] == "all" and "train_pool" not in rec and rec_all["n_train"] == rec["n_train"] == 10
    assert rec_all["n_test"] == rec["n_test"] == len(sp["test"])
    assert load_checkpoint(tmp_path / "scratch_all" / "runs" / "s0" / "model.pt")["meta"]["train_pool"] == "all"


def test_a_cell_with_ensemble_on_trains_its_pending_seeds_together(toy_set, tmp_path):
    """`train.ensemble: on`: the seeds still to train run as one ensemble in the cell's job,
    each ending with its own checkpoint, records and predictions as with `off` (SGD: equal to
    float rounding); a seed finished before is kept, not trained again; the ensemble's state
    is gone once the checkpoints are written."""
    from tlcgcnn import config as C
    from tlcgcnn.train.finetune import finetune_cell
    from tlcgcnn.utils import fileio as io

    df, d, _ = toy_set
    ids = df["material_id"].tolist()
    sp = split.target_split(df, "k_vrh", ids, 0.2, None, 42)
    sp.update(name="k", subset="all")
    io.write_json(tmp_path / "k.split.json", sp)

    def cell(ensemble: str):
        return C.load(
            {
                "name": "t",
                "dataset": {"source": "local", "path": "x.csv"},
                "split": {"val_fraction": 0.2, "val_min": 5},
                "model": {"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16},
                "train": {
                    "epochs": 4,
                    "batch_size": 8,
                    "patience": 5,
                    "lr": 0.02,
                    "optimizer": "sgd",
                    "device": "cpu",
                    "amp": "none",
                    "compile": "none",
                    "ensemble": ensemble,
                },
                "finetune": {
                    "targets": [{"name": "k", "property": "k_vrh", "transform": "log10"}],
                    "sizes": [20],
                    "seeds": [0, 1, 2],
                    "modes": {"scratch": {}},
                },
            }
        ).cell("k", 20, "scratch")

    def run(ensemble: str, folder: str):
        out = tmp_path / folder
        records = finetune_cell(
            cell=cell(ensemble),
            table_path=str(d / "t.parquet"),
            split_path=str(tmp_path / "k.split.json"),
            graph_dir=str(d / "g"),
            atom_features_path=str(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv"),
            pretrained=None,
            split_cfg={"val_fraction": 0.2, "val_min": 5},
            threads=1,
            config=None,
            out_metrics=str(out / "metrics.json"),
            out_predictions=str(out / "predictions.parquet"),
            device="cpu",
        )
        return records, out

    assert "ensemble" not in cell("auto").train and cell(True).train["ensemble"] is True  # YAML's bare `on`
    alone, _ = run("off", "off")
    # seed 1 finished before (copied from the sequential cell, under the ensemble cell's run key)
    together_dir = tmp_path / "on"
    (together_dir / "runs").mkdir(parents=True)
    shutil.copytree(tmp_path / "off" / "runs" / "s1", together_dir / "runs" / "s1")
    from tlcgcnn.train.finetune import run_key

    key = run_key(cell("on"), 1, {"table": str(d / "t.parquet"), "split": str(tmp_path / "k.split.json"),
                                 "graphs": str(d / "g" / "manifest.json")})  # fmt: skip
    io.write_text(together_dir / "runs" / "s1" / "run_key", key)
    rec = io.read_json(together_dir / "runs" / "s1" / "metrics.json")
    io.write_json(together_dir / "runs" / "s1" / "metrics.json", {**rec, "run_key": key})
    together, out = run("on", "on")
    assert [r["seed"] for r in together] == [0, 1, 2]
    for a, b in zip(alone, together, strict=True):
        assert b["error"] == pytest.approx(a["error"], rel=1e-5) and b["best_epoch"] == a["best_epoch"]
    assert together[0]["runtime"]["ensemble"] == "2" and together[2]["runtime"]["ensemble"] == "2"
    assert "ensemble" not in (together[1].get("runtime") or {})  # kept from before: trained alone
    assert not (out / "runs" / "ensemble_state.pt").exists()
    for seed in (0, 1, 2):
        assert load_checkpoint(out / "runs" / f"s{seed}" / "model.pt")["seed"] == seed


def test_a_validate_source_cell_records_the_sources_score_and_can_keep_it(toy_set, tmp_path):
    """The fine-tuning rule's path (Cell -> training job -> transfer): a mode with
    ``validate_source`` fine-tunes with the source's normaliser and says so in its records;
    with a learning rate that wrecks the model the cell keeps the source (best epoch -1)."""
    from tlcgcnn import config as C
    from tlcgcnn.train.finetune import finetune_cell
    from tlcgcnn.utils import fileio as io

    df, d, _ = toy_set
    _train(toy_set, tmp_path / "src.pt", epochs=8)
    sp = split.target_split(df, "k_vrh", df["material_id"].tolist(), 0.2, None, 42)
    sp.update(name="k", subset="all")
    io.write_json(tmp_path / "k.split.json", sp)
    cfg = C.load(
        {
            "name": "t",
            "dataset": {"source": "local", "path": "x.csv"},
            "split": {"val_fraction": 0.2, "val_min": 5},
            "model": {"atom_fea_len": 16, "n_conv": 3, "h_fea_len": 16},
            "train": {"epochs": 2, "batch_size": 8, "lr": 5.0, "device": "cpu", "amp": "none", "checkpoint_every": 0},
            "pretrain": [{"name": "src", "checkpoint": str(tmp_path / "src.pt")}],
            "finetune": {
                "targets": [{"name": "k", "property": "k_vrh", "transform": "log10"}],
                "sizes": [20],
                "seeds": [0, 1],
                "modes": {"scratch": {}, "refine": {"pretrained": "src", "validate_source": True}},
            },
        }
    )
    records = finetune_cell(
        cell=cfg.cell("k", 20, "refine"),
        table_path=str(d / "t.parquet"),
        split_path=str(tmp_path / "k.split.json"),
        graph_dir=str(d / "g"),
        atom_features_path=str(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv"),
        pretrained=str(tmp_path / "src.pt"),
        split_cfg=cfg.split_settings(),
        threads=1,
        config=None,
        out_metrics=str(tmp_path / "cell" / "metrics.json"),
        out_predictions=str(tmp_path / "cell" / "predictions.parquet"),
        device="cpu",
    )
    src = load_checkpoint(tmp_path / "src.pt")
    for rec in records:
        assert rec["validate_source"] is True and rec["best_epoch"] == -1
        ck = load_checkpoint(tmp_path / "cell" / "runs" / f"s{rec['seed']}" / "model.pt")
        assert ck["transfer"]["validate_source"] is True and ck["normalizer"] == src["normalizer"]
        assert all(torch.equal(ck["state_dict"][k], v) for k, v in src["state_dict"].items())
