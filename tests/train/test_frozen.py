"""The frozen-features transfer mode: config, crystal vectors, the cell, and a tiny workflow.

A frozen mode (``{pretrained: <source>, estimator: ridge, features: frozen}``) fits a
scikit-learn estimator on the source network's crystal vectors; it is a transfer mode for the
statistics and figures, runs in its own rule, and never lets a test crystal reach the fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, random_graphs, save_graphs
from sklearn.model_selection import GridSearchCV

from tlcgcnn import config as C
from tlcgcnn.report.figures import labels, needs
from tlcgcnn.utils import fileio as io

FROZEN = {"pretrained": "ef_all", "estimator": "ridge", "features": "frozen"}


def _raw(**modes) -> dict:
    raw = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    raw["finetune"]["modes"].update(modes)
    return raw


# --------------------------------------------------------------------------- config
def test_frozen_mode_resolves_to_a_transfer_cell_of_its_own_rule():
    cfg = C.load(_raw(ef_ridge=FROZEN, rf={"estimator": "rf"}, ridge={"estimator": "ridge"}))
    mode = cfg.modes["ef_ridge"]
    assert (mode.family, mode.kind) == ("transfer", "frozen")
    assert (
        cfg.frozen_modes == ["ef_ridge"]
        and cfg.baseline_modes == ["rf", "ridge"]
        and cfg.gnn_modes == ["scratch", "transfer"]
    )
    assert (cfg.modes["ridge"].family, cfg.modes["ridge"].kind) == ("baseline", "baseline")
    cell = cfg.cell("gap_nonmetal", 25, "ef_ridge")
    assert cell.kind == "frozen" and cell.model is None and cell.train is None
    assert cell.pretrain is not None and cell.pretrain.name == "ef_all" and cell.seeds == [0, 1, 2]
    params = cell.as_params()
    assert params["mode"]["features"] == "frozen" and params["mode"]["family"] == "transfer"
    # the other modes' settings (and so their run keys and Snakemake params) do not change
    assert "features" not in cfg.cell("gap_nonmetal", 25, "transfer").as_params()["mode"]
    # graph-model only: external sets and the zoo's "best" choice leave frozen modes out
    assert [c.mode.name for c in cfg.external_cells("gap_nonmetal")] == ["scratch", "transfer"] * 3


def test_frozen_mode_takes_its_sources_network_whatever_its_model_variant():
    raw = _raw(ef_ridge=FROZEN)
    raw["model_variants"] = {"att": {"kind": "attention"}}
    raw["pretrain"][0]["model"] = "att"
    raw["finetune"]["modes"]["transfer"]["model"] = "att"
    assert C.load(raw).modes["ef_ridge"].kind == "frozen"


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            {"pretrained": "nope", "estimator": "ridge", "features": "frozen"},
            "pretrained = 'nope' is not a pretrain name",
        ),
        ({"pretrained": "ef_all", "features": "frozen"}, "features: frozen needs an estimator"),
        ({"estimator": "ridge", "features": "frozen"}, "features: frozen needs pretrained"),
        ({"pretrained": "ef_all", "estimator": "ridge"}, "add features: frozen"),
        ({**FROZEN, "model": "att"}, "frozen-features mode bad cannot have model"),
        ({**FROZEN, "freeze": 2}, "freeze / reinit change a fine-tuned graph model"),
        ({**FROZEN, "reinit": "head"}, "freeze / reinit change a fine-tuned graph model"),
        ({**FROZEN, "features": "thawed"}, "'thawed' is not one of ['frozen', 'readout', 'zero_shot',"),
        ({"pretrained": "ef_all", "features": "delta"}, "features: delta needs an estimator"),
        ({"pretrained": "ef_all", "features": "zero_shot", "estimator": "ridge"}, "zero_shot fits no estimator"),
        ({"pretrained": "ef_all", "features": "recalibrated", "freeze": 1}, "freeze, reinit and model do not apply"),
        ({"features": "recalibrated"}, "features: recalibrated needs pretrained"),
        ({**FROZEN, "estimator": "xgboost"}, "'xgboost' is not one of"),
    ],
)
def test_bad_frozen_modes_fail_with_the_reason(mode, message):
    raw = _raw(bad=mode)
    raw["model_variants"] = {"att": {"kind": "attention"}}
    with pytest.raises(C.ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        C.load(raw)


def test_zoo_best_never_picks_a_frozen_mode():
    raw = _raw(ef_ridge=FROZEN)
    raw["zoo"] = {"models": [{"name": "gap", "target": "gap_nonmetal", "mode": "best", "size": 25}]}
    assert C.load(raw).zoo_model("gap")["modes"] == ["transfer"]
    raw["finetune"]["modes"] = {"scratch": {}, "ef_ridge": FROZEN}
    with pytest.raises(C.ConfigError, match="mode best chooses among transfer modes"):
        C.load(raw)


def test_figures_describe_frozen_modes_as_transfer_schemes():
    assert labels.scheme(0, "none", "frozen", "ridge") == "frozen features + ridge"
    assert not labels.fine_tunes_all(0, "none", "frozen") and labels.fine_tunes_all(0, "none", np.nan)
    assert (
        labels.scheme_key(3, "unfrozen")
        < labels.scheme_key(0, "none", "frozen", "ridge")
        < labels.scheme_key(0, "none", "frozen", "rf")
    )
    row = {
        "family": "transfer",
        "model_kind": "ridge",
        "features": "frozen",
        "pretrain_property": "formation_energy_per_atom",
        "pretrain_subset": "all",
        "pretrain_size": 2980,
        "freeze": 0,
        "reinit": "none",
    }
    assert labels.mode_label(row) == "TL ΔEf, n=2980: frozen features + ridge"
    uses = {u.mode: u for u in needs.mode_uses(C.load(_raw(ef_ridge=FROZEN, ridge={"estimator": "ridge"})))}
    assert (uses["ef_ridge"].family, uses["ef_ridge"].model_kind, uses["ridge"].family) == (
        "transfer",
        "ridge",
        "baseline",
    )
    # beside the fine-tuned transfer mode of the same source: two schemes, a freeze heatmap
    assert needs.has_scheme_comparison(C.load(_raw(ef_ridge=FROZEN))) and not needs.has_scheme_comparison(
        C.load(_raw())
    )


# --------------------------------------------------------------------------- crystal vectors
def _checkpoint(kind: str, tmp_path: Path, h_fea_len: int = 24) -> tuple[dict, Path]:
    from tlcgcnn.features import atom_features
    from tlcgcnn.nn import build_model
    from tlcgcnn.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    table = torch.from_numpy(atom_features.load_matrix(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv"))
    model = build_model({"kind": kind, "atom_fea_len": 8, "n_conv": 2, "h_fea_len": h_fea_len, "n_h": 2}, table)
    for m in model.modules():  # non-trivial running statistics: eval mode must use them
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = {
        "format_version": 1,
        "model_config": model.config.to_dict(),  # type: ignore[union-attr]
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "normalizer": {"kind": "zscore", "mean": 1.5, "std": 2.0, "scale": 0.5},
        "target": {"name": "ef", "property": "formation_energy_per_atom"},
        "split": {"train": [f"p{i}" for i in range(7)], "val": [], "test": []},
        "train_config": {"eval_batch_size": 5},
        "featurize": None,
    }
    path = tmp_path / f"{kind}.pt"
    save_checkpoint(ckpt, path)
    return ckpt, path


def test_a_checkpoint_source_of_another_architecture_serves_frozen_features(tmp_path):
    """A frozen mode embeds with the file's own network: only the featurization must agree."""
    _, path = _checkpoint("cgcnn", tmp_path)  # 8 / 2 / 24 wide, unlike the config's model
    raw = _raw()
    raw["pretrain"] = [{"name": "shared", "checkpoint": str(path)}]
    raw["finetune"]["modes"] = {
        "scratch": {},
        "frozen": {"pretrained": "shared", "estimator": "rf", "features": "frozen"},
    }
    cfg = C.load(raw)
    assert cfg.cell("gap_nonmetal", 25, "frozen").pretrain.checkpoint == str(path)  # type: ignore[union-attr]
    raw["finetune"]["modes"]["transfer"] = {"pretrained": "shared"}
    with pytest.raises(C.ConfigError, match="mode transfer: the architecture differs"):
        C.load(raw)


@pytest.mark.parametrize("kind", ["cgcnn", "attention"])
def test_crystal_vectors_are_deterministic_have_h_fea_len_columns_and_feed_the_output_layer(kind, tmp_path):
    from tlcgcnn.analysis.evaluate import embed_ids, predict_ids
    from tlcgcnn.nn import build_model

    graphs = save_graphs(random_graphs(n=23, seed=1), tmp_path / "graphs")
    ckpt, path = _checkpoint(kind, tmp_path)
    ids = [f"c{i}" for i in range(23)]
    vec = embed_ids(ckpt, path, graphs, ids, device="cpu")
    assert vec.shape == (23, 24) and vec.dtype == np.float64 and np.isfinite(vec).all()
    # another order, another batching (eval mode: a crystal's vector ignores its batch)
    again = embed_ids({**ckpt, "train_config": {"eval_batch_size": 2}}, path, graphs, ids[::-1], device="cpu")[::-1]
    np.testing.assert_allclose(vec, again, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vec, embed_ids(ckpt, path, graphs, ids, device="cpu"))
    # the vector is what the output layer reads: prediction = denorm(fc_out(vector))
    fc = build_model(ckpt["model_config"], ckpt["state_dict"]["atom_table"]).fc_out
    fc.load_state_dict({"weight": ckpt["state_dict"]["fc_out.weight"], "bias": ckpt["state_dict"]["fc_out.bias"]})
    raw = fc(torch.from_numpy(vec).float()).detach().double().numpy().ravel()
    np.testing.assert_allclose(
        predict_ids(ckpt, path, graphs, ids, device="cpu"), 1.5 + 2.0 * raw, rtol=1e-4, atol=1e-5
    )


# --------------------------------------------------------------------------- the cell
@pytest.fixture
def cell_inputs(tmp_path):
    n = 90
    g = random_graphs(n=n, seed=2)
    graphs = save_graphs(g, tmp_path / "graphs")
    ckpt, path = _checkpoint("cgcnn", tmp_path)
    ids = [str(i) for i in g.ids]
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    table = tmp_path / "structures.parquet"
    pd.DataFrame({"material_id": ids, "band_gap": y}).to_parquet(table)
    split = tmp_path / "split.json"
    io.write_json(split, {"property": "band_gap", "test": ids[:30], "pool": ids[30:]})
    cfg = C.load(_raw(ef_ridge=FROZEN))
    cell = cfg.cell("gap_nonmetal", 25, "ef_ridge")
    return {
        "cell": cell,
        "table": str(table),
        "split": str(split),
        "graphs": str(graphs),
        "ckpt": str(path),
        "ids": ids,
        "tmp": tmp_path,
        "split_cfg": cfg.split_settings(),
    }


def _run_cell(inp, tmp_path):
    from tlcgcnn.train.frozen import frozen_cell

    return frozen_cell(
        cell=inp["cell"],
        table_path=inp["table"],
        split_path=inp["split"],
        graph_dir=inp["graphs"],
        pretrained=inp["ckpt"],
        split_cfg=inp["split_cfg"],
        threads=1,
        config=None,
        out_metrics=str(tmp_path / "cell" / "metrics.json"),
        out_predictions=str(tmp_path / "cell" / "predictions.parquet"),
        device="cpu",
    )


def test_no_test_crystal_reaches_the_estimator(cell_inputs, monkeypatch, tmp_path):
    """The embedding gets one extra column, the id's row number; a spy on the estimator's
    fit reads which crystals it was given: exactly the seed's training ids, never a test id."""
    import tlcgcnn.analysis.evaluate
    from tlcgcnn.data.split import train_val

    real_embed = tlcgcnn.analysis.evaluate.embed_ids
    all_ids = cell_inputs["ids"]
    tagged: list[str] = []

    def embed_with_row_tags(ckpt, checkpoint, graph_dir, ids, device="auto"):
        tagged[:] = list(ids)
        return np.column_stack([real_embed(ckpt, checkpoint, graph_dir, ids, device), np.arange(len(ids), dtype=float)])

    fitted: list[set[str]] = []
    real_fit = GridSearchCV.fit

    def spy(self, X_fit, y_fit=None, **kw):
        fitted.append({tagged[int(r)] for r in X_fit[:, -1]})
        assert len(fitted[-1]) == len(X_fit) and not np.isnan(y_fit).any()
        return real_fit(self, X_fit, y_fit, **kw)

    monkeypatch.setattr(tlcgcnn.analysis.evaluate, "embed_ids", embed_with_row_tags)
    monkeypatch.setattr(GridSearchCV, "fit", spy)
    records = _run_cell(cell_inputs, tmp_path)
    test = set(all_ids[:30])
    assert test <= set(tagged)  # the test crystals were embedded (and predicted) ...
    pool = all_ids[30:]
    for seed, seen in zip([0, 1, 2], fitted, strict=True):
        assert not seen & test  # ... but never fitted on
        assert seen == set(train_val(pool, 25, seed, 0.2, 10).train)
    assert [r["n_train"] for r in records] == [25, 25, 25] and all(r["n_val"] == 10 for r in records)


def test_cell_writes_the_records_the_statistics_read(cell_inputs, tmp_path):
    from tlcgcnn.analysis import stats

    records = _run_cell(cell_inputs, tmp_path)
    assert [r["seed"] for r in records] == [0, 1, 2]
    r = records[0]
    assert (r["mode"], r["family"], r["model_kind"], r["features"], r["pretrained"], r["pretrain_size"]) == (
        "ef_ridge",
        "transfer",
        "ridge",
        "frozen",
        "ef_all",
        7,
    )
    assert (
        r["error"] == r["mae"] > 0
        and r["n_test"] == 30
        and r["best_val_mae"] > 0
        and r["n_features"] == 24
        and r["cv_folds"] == 5
    )
    assert set(r["best_params"]) == {"m__alpha"} and r["stage"] == "finetune" and r["size"] == 25
    preds = pd.read_parquet(tmp_path / "cell" / "predictions.parquet")
    assert (
        len(preds) == 90
        and set(preds["seed"]) == {0, 1, 2}
        and set(preds["material_id"]) == set(cell_inputs["ids"][:30])
    )
    assert json.loads((tmp_path / "cell" / "metrics.json").read_text()) == json.loads(json.dumps(records))
    # the validation error is the estimator's on the graph models' validation ids of the seed
    scratch = [{**x, "mode": "scratch", "family": "scratch", "error": x["error"] * 1.2} for x in records]
    tests = stats.error_tests(pd.DataFrame(records + scratch))
    assert tests["holm_family"].tolist() == ["transfer_vs_scratch"] and tests["n_pairs"].tolist() == [3]


# --------------------------------------------------------------------------- the workflow
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def tiny_config(data: Path) -> dict:
    """ΔEf source (2 epochs, a tiny network) on a seeded slice of the committed MP-2018 subset;
    HSE gap at one size, three seeds, scratch and frozen ΔEf features + ridge."""
    return {
        "name": "frozen-tiny",
        "dataset": {
            "source": "local",
            "path": str(data),
            "sample": {"n": 40, "seed": 0, "keep": {"band_gap_hse": 110}},
        },
        "split": {"test_fraction": 0.2, "test_max": 25, "val_fraction": 0.2, "val_min": 10, "seed": 42},
        "model": {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16},
        "train": {
            "epochs": 2,
            "batch_size": 32,
            "patience": 5,
            "threads": 1,
            "device": "cpu",
            "amp": "none",
            "checkpoint_every": 0,
        },
        "pretrain": [{"name": "ef", "property": "formation_energy_per_atom", "size": 60}],
        "finetune": {
            "targets": [{"name": "hse_gap", "property": "band_gap_hse", "label": "HSE gap"}],
            "sizes": [30],
            "seeds": [0, 1, 2],
            "baseline": "scratch",
            "modes": {"scratch": {}, "ef_ridge": {"pretrained": "ef", "estimator": "ridge", "features": "frozen"}},
        },
    }


@pytest.mark.e2e
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed beside this interpreter")
def test_tiny_workflow_runs_a_frozen_cell_and_tests_it_against_scratch(tmp_path):
    data = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(data)))
    res = tmp_path / "results" / "frozen-tiny"
    cmd = [
        str(SNAKEMAKE),
        "results/frozen-tiny/stats/ttests.csv",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "2",
        "--configfile",
        str(cfg),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    took = time.perf_counter() - t0
    cell = res / "finetune" / "hse_gap" / "n30" / "ef_ridge"
    records = json.loads((cell / "metrics.json").read_text())
    assert [r["seed"] for r in records] == [0, 1, 2] and {r["family"] for r in records} == {"transfer"}
    assert all(
        r["n_train"] == 30 and r["n_val"] == 10 and r["best_val_mae"] > 0 and r["n_features"] == 16 for r in records
    )
    assert (res / "logs" / "finetune" / "hse_gap" / "n30" / "ef_ridge.log").exists()
    assert not (cell / "runs").exists()  # no graph model was trained for it
    scratch = json.loads((res / "finetune" / "hse_gap" / "n30" / "scratch" / "metrics.json").read_text())
    # the same training and validation sizes and the same fixed test set as the graph cell
    assert [(r["n_train"], r["n_val"], r["n_test"]) for r in scratch] == [
        (r["n_train"], r["n_val"], r["n_test"]) for r in records
    ]
    test_ids = set(json.loads((res / "splits" / "hse_gap.split.json").read_text())["test"])
    assert set(pd.read_parquet(cell / "predictions.parquet")["material_id"]) == test_ids
    tests = pd.read_csv(res / "stats" / "ttests.csv")
    row = tests[tests["mode"] == "ef_ridge"]
    assert len(row) == 1 and row["holm_family"].iloc[0] == "transfer_vs_scratch" and row["n_pairs"].iloc[0] == 3
    assert row["baseline"].iloc[0] == "scratch" and np.isfinite(row["p_value"].iloc[0])
    print(f"tiny frozen workflow: {took:.0f} s")


def test_a_train_pool_all_frozen_cell_draws_from_pool_all(cell_inputs, monkeypatch, tmp_path):
    """A frozen-features mode with train_pool: all embeds and fits the draws of pool_all
    (the other subset's crystals too) and is tested on the same test set."""
    import tlcgcnn.analysis.evaluate
    from tlcgcnn.data.split import train_val
    from tlcgcnn.train.frozen import cell_ids

    ids = cell_inputs["ids"]
    test, pool, other = ids[:30], ids[30:60], ids[60:]
    sp = {"property": "band_gap", "test": test, "pool": pool, "pool_all": other + pool}
    io.write_json(cell_inputs["split"], sp)
    cfg = C.load(_raw(ef_ridge=FROZEN, ef_ridge_all={**FROZEN, "train_pool": "all"}))
    cell = cfg.cell("gap_nonmetal", 25, "ef_ridge_all")
    assert cell.mode.train_pool == "all"
    embedded: list[str] = []
    real_embed = tlcgcnn.analysis.evaluate.embed_ids

    def spy(ckpt, checkpoint, graph_dir, want, device="auto"):
        embedded[:] = list(want)
        return real_embed(ckpt, checkpoint, graph_dir, want, device)

    monkeypatch.setattr(tlcgcnn.analysis.evaluate, "embed_ids", spy)
    records = _run_cell({**cell_inputs, "cell": cell}, tmp_path)
    draws = {s: train_val(other + pool, 25, s, 0.2, 10) for s in (0, 1, 2)}
    assert embedded == cell_ids(sp, 25, [0, 1, 2], cell_inputs["split_cfg"], "all")[1]
    assert set(embedded) == {i for tv in draws.values() for i in (*tv.train, *tv.val)} | set(test) and set(
        embedded
    ) & set(other)
    assert [r["train_pool"] for r in records] == ["all"] * 3 and all(r["n_test"] == 30 for r in records)
    with pytest.raises(ValueError, match="has no pool_all"):
        cell_ids({"property": "band_gap", "test": test, "pool": pool}, 25, [0], cell_inputs["split_cfg"], "all")


# --------------------------------------------------------------------------- source-output controls
def _control_inputs(cell_inputs, tmp_path, mode: dict, make_y) -> tuple[dict, pd.Series]:
    """cell_inputs with a ``mode`` cell and labels ``make_y(source output)``: the source
    checkpoint's own predictions of every crystal, computed here."""
    from tlcgcnn.analysis.evaluate import predict_ids
    from tlcgcnn.train.checkpoint import load_checkpoint

    ids = cell_inputs["ids"]
    src = pd.Series(
        predict_ids(
            load_checkpoint(cell_inputs["ckpt"]), cell_inputs["ckpt"], cell_inputs["graphs"], ids, device="cpu"
        ),
        index=ids,
    )
    assert src.std() > 0
    pd.DataFrame({"material_id": ids, "band_gap": make_y(src)}).to_parquet(cell_inputs["table"])
    cell = C.load(_raw(ctl=mode)).cell("gap_nonmetal", 25, "ctl")
    assert (cell.kind, cell.mode.family) == ("frozen", "transfer")
    return {**cell_inputs, "cell": cell}, src


def test_zero_shot_predicts_the_source_output_for_every_seed(cell_inputs, tmp_path):
    inp, src = _control_inputs(
        cell_inputs, tmp_path, {"pretrained": "ef_all", "features": "zero_shot"}, lambda s: s + 0.3
    )
    records = _run_cell(inp, tmp_path)
    preds = pd.read_parquet(tmp_path / "cell" / "predictions.parquet")
    test = cell_inputs["ids"][:30]
    for seed in (0, 1, 2):
        got = preds[preds["seed"] == seed].set_index("material_id").loc[test, "y_pred"].to_numpy()
        # float32 forward passes: the cell batches the crystals otherwise than this test did
        np.testing.assert_allclose(got, src.loc[test].to_numpy(), rtol=0, atol=1e-5)
    assert [r["mae"] for r in records] == pytest.approx([0.3] * 3, abs=1e-5)  # labels are source + 0.3
    assert {(r["model_kind"], r["features"], r["n_features"], r["best_params"]) for r in records} == {
        ("zero_shot", "zero_shot", 0, None)
    }


def test_recalibration_fits_a_line_on_the_training_crystals_only(cell_inputs, tmp_path):
    """Labels 3 + 2 × source output (+ noise on the test crystals only): the line fitted on each
    seed's training ids is that line, and the test error is the test noise."""
    from tlcgcnn.data.split import train_val

    rng = np.random.default_rng(3)
    noise = pd.Series(0.0, index=cell_inputs["ids"])
    noise.iloc[:30] = rng.normal(scale=0.1, size=30)  # the test crystals
    inp, src = _control_inputs(
        cell_inputs, tmp_path, {"pretrained": "ef_all", "features": "recalibrated"}, lambda s: 3 + 2 * s + noise
    )
    records = _run_cell(inp, tmp_path)
    for r in records:
        tv = train_val(cell_inputs["ids"][30:], 25, r["seed"], 0.2, 10)
        assert set(tv.train).isdisjoint(cell_inputs["ids"][:30])
        assert r["best_params"] == pytest.approx({"slope": 2.0, "intercept": 3.0}, abs=1e-5)
        assert r["mae"] == pytest.approx(float(noise.iloc[:30].abs().mean()), abs=1e-5)
        assert (r["model_kind"], r["n_features"]) == ("recalibrated", 1)


def test_delta_learning_adds_the_source_output_to_an_estimator_fitted_on_the_residual(cell_inputs, tmp_path):
    """Labels = source output + a function of the crystal vectors; delta's prediction is the
    source output plus the estimator fitted to the residual (computed here independently)."""
    from tlcgcnn.analysis.evaluate import embed_ids
    from tlcgcnn.data.split import train_val
    from tlcgcnn.train.baselines import fit_predict
    from tlcgcnn.train.checkpoint import load_checkpoint

    ids = cell_inputs["ids"]
    vec = pd.DataFrame(
        embed_ids(load_checkpoint(cell_inputs["ckpt"]), cell_inputs["ckpt"], cell_inputs["graphs"], ids, device="cpu"),
        index=ids,
    )
    extra = vec.iloc[:, 0] - vec.iloc[:, 0].mean()
    mode = {"pretrained": "ef_all", "features": "delta", "estimator": "ridge"}
    inp, src = _control_inputs(cell_inputs, tmp_path, mode, lambda s: s + extra)
    records = _run_cell(inp, tmp_path)
    preds = pd.read_parquet(tmp_path / "cell" / "predictions.parquet")
    test = ids[:30]
    for r in records:
        tv = train_val(ids[30:], 25, r["seed"], 0.2, 10)
        resid = pd.Series(extra.loc[tv.train].to_numpy(), index=tv.train)
        want, _ = fit_predict("ridge", "regression", vec, resid, tv.train, test, r["seed"], 1)
        got = preds[preds["seed"] == r["seed"]].set_index("material_id").loc[test, "y_pred"].to_numpy()
        np.testing.assert_allclose(got, src.loc[test].to_numpy() + want, rtol=0, atol=1e-5)
        assert (r["model_kind"], r["features"], r["n_features"]) == ("ridge", "delta", 24)


def test_a_multi_output_source_cannot_serve_a_control(cell_inputs, tmp_path, monkeypatch):
    import tlcgcnn.analysis.evaluate

    inp, _ = _control_inputs(cell_inputs, tmp_path, {"pretrained": "ef_all", "features": "zero_shot"}, lambda s: s)
    monkeypatch.setattr(tlcgcnn.analysis.evaluate, "predict_ids", lambda *a, **k: np.zeros((90, 2)))
    with pytest.raises(ValueError, match="2 outputs per crystal; features: zero_shot needs a source"):
        _run_cell(inp, tmp_path)
