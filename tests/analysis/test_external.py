"""Pretrained sources read from a checkpoint file, and evaluation on an outside labelled set,
on real Materials Project crystals (../shared/data; skipped where absent)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ATOM_FEATURES, MP500, ROOT, require_shared

from tlcgcnn import config as C
from tlcgcnn.analysis import external
from tlcgcnn.data import ingest, table
from tlcgcnn.data.targets import Target
from tlcgcnn.features.featurize import FeaturizeParams, featurize
from tlcgcnn.train import checkpoint_info
from tlcgcnn.train.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from tlcgcnn.train.loop import TrainConfig, train
from tlcgcnn.utils import fileio as io

TINY = {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8, "radius": 8.0}
PARAMS = FeaturizeParams(radius=8.0, max_neighbors=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """120 crystals of mp500 ingested and featurized; a tiny band-gap model trained on the
    first 60 (validation: the next 20; test: the next 20), 2 epochs."""
    raw = pd.read_csv(require_shared(MP500))
    d = tmp_path_factory.mktemp("external")
    main_raw = raw.iloc[:120][["material_id", "band_gap", "formation_energy_per_atom", "is_metal", "cif"]]
    df, _, _ = ingest.ingest_frame(main_raw, ingest.IngestOptions(), progress=False)
    assert len(df) == 120
    table.write(df, d / "structures.parquet")
    featurize(d / "structures.parquet", d / "graphs", PARAMS, progress=False)
    ids = df["material_id"].tolist()
    split = {"train": ids[:60], "val": ids[60:80], "test": ids[80:100]}
    model = d / "model.pt"
    train(
        table_df=df,
        graph_dir=d / "graphs",
        atom_table_path=ATOM_FEATURES,
        split_ids=split,
        target=Target("gap", "band_gap"),
        model_cfg=TINY,
        train_cfg=TrainConfig(epochs=2, batch_size=16, patience=50, device="cpu", amp="none"),
        seed=0,
        out_checkpoint=model,
        progress=False,
        meta={"stage": "pretrain", "mode": "pretrain", "size": 60},
    )
    return {"dir": d, "raw": raw, "df": df, "split": split, "model": model}


def _config(world, **model):
    raw = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    raw["dataset"]["path"] = str(MP500)
    raw["featurize"] = {"radius": PARAMS.radius, "max_neighbors": PARAMS.max_neighbors}
    raw["model"] = {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8, **model}
    raw["pretrain"] = [{"name": "zoo", "checkpoint": str(world["model"])}]
    raw["finetune"]["modes"] = {
        "scratch": {},
        "transfer": {"pretrained": "zoo"},
        "head": {"pretrained": "zoo", "reinit": "head"},
    }
    return raw


# --------------------------------------------------------------------------- checkpoint sources


def test_checkpoint_info_reads_what_torch_reads(world):
    assert checkpoint_info.CHECKPOINT_VERSION == CHECKPOINT_VERSION
    ck = load_checkpoint(world["model"])
    got = checkpoint_info.read(world["model"])
    assert got["model_config"] == ck["model_config"] and got["target"] == ck["target"] and got["split"] == ck["split"]
    assert got["featurize"] == ck["featurize"] and isinstance(
        got["state_dict"]["atom_table"], checkpoint_info.TensorStub
    )
    s = checkpoint_info.summary(world["model"])
    assert s["size"] == 60 and s["n_train"] == 60 and s["featurize"]["max_neighbors"] == 8


def test_a_checkpoint_source_runs_no_pretraining_and_describes_itself(world):
    cfg = C.load(_config(world))
    assert cfg.pretrain_names == ["zoo"] and cfg.trained_pretrain_names == []
    assert cfg.split_names() == ["gap_nonmetal"] and cfg.required_properties() == ["band_gap"]
    assert cfg.pretrained_checkpoint("zoo") == str(world["model"])
    cell = cfg.cell("gap_nonmetal", 25, "transfer")
    assert cell.pretrain is not None and cell.pretrain.checkpoint == str(world["model"])
    assert (
        cell.pretrain.target.property == "band_gap" and cell.pretrain.size == 60 and cell.pretrain.model == cell.model
    )
    assert cell.as_params()["pretrain"]["checkpoint"] == str(world["model"])
    # a trained source's params keep their old shape (no rerun of existing results)
    assert (
        "checkpoint"
        not in C.load(yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text()))
        .cell("gap_nonmetal", 25, "transfer")
        .as_params()["pretrain"]
    )


def test_incompatible_checkpoint_source_is_one_message_naming_file_and_differences(world):
    raw = _config(world, atom_fea_len=16)
    raw["featurize"]["radius"] = 6.0
    with pytest.raises(C.ConfigError) as err:
        C.load(raw)
    msg = str(err.value)
    assert msg.startswith(f"config: pretrain zoo: checkpoint {world['model']} does not fit this configuration")
    assert "featurization differs (radius: 8.0 in the checkpoint vs 6.0 in featurize)" in msg
    assert "mode head: the architecture differs (atom_fea_len: 8 in the checkpoint vs 16 in model" in msg
    assert "mode transfer: the architecture differs" in msg and "radius: 8.0 in the checkpoint vs 6.0 in model" in msg
    assert "mode scratch" not in msg and msg.count("\n") == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p.update(property="band_gap", size=100),
            r"a checkpoint source takes its target, size, seed and model from .*; remove \['property', 'size'\]",
        ),
        (
            lambda p: p.update(checkpoint="/nonexistent/model.pt"),
            r"pretrain zoo: /nonexistent/model.pt: no such checkpoint file",
        ),
        (lambda p: p.pop("checkpoint"), r"pretrain zoo: needs a `property` to be trained, or a `checkpoint` file"),
    ],
)
def test_bad_checkpoint_entries(world, change, message):
    raw = _config(world)
    change(raw["pretrain"][0])
    with pytest.raises(C.ConfigError, match=message):
        C.load(raw)


def test_a_file_that_is_not_a_checkpoint_is_named(world, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("not a model")
    raw = _config(world)
    raw["pretrain"][0]["checkpoint"] = str(bad)
    with pytest.raises(C.ConfigError, match=rf"pretrain zoo: {bad}: not a tlcgcnn checkpoint"):
        C.load(raw)


def test_another_atom_table_is_refused_when_the_job_starts(world, tmp_path):
    """The atom-feature table is a tensor, compared at job start (and by tlcgcnn finetune)."""
    from tlcgcnn.cli.runner import check_atom_table

    ck = copy.deepcopy(load_checkpoint(world["model"]))
    ck["state_dict"]["atom_table"][26] += 1.0
    save_checkpoint(ck, tmp_path / "other.pt")
    with pytest.raises(
        CheckpointError,
        match=rf"^{tmp_path / 'other.pt'}: incompatible checkpoint: "
        r"the atom-feature table does not match \(1 of .* Z = 26\)",
    ):
        check_atom_table(tmp_path / "other.pt")
    check_atom_table(world["model"])  # the package's own table: fine


def test_external_entries_are_validated(world):
    raw = _config(world)
    raw["external"] = [{"name": "other", "path": "x.csv", "property": "k_vrh"}]
    with pytest.raises(
        C.ConfigError,
        match=r"external other: no fine-tuning target with a graph model has property 'k_vrh' and transform 'none'",
    ):
        C.load(raw)
    raw["external"] = [{"name": "other", "path": "x.csv", "property": "band_gap"}]
    cfg = C.load(raw)
    assert cfg.external_pairs() == [("other", "gap_nonmetal")]
    assert {c.mode.name for c in cfg.external_cells("gap_nonmetal")} == {"scratch", "transfer", "head"}
    assert (
        cfg.external_ingest_settings("other")["path"] == "x.csv" and cfg.as_dict()["external"][0]["transform"] == "none"
    )


# --------------------------------------------------------------------------- external evaluation


def test_external_set_flags_training_materials_and_reports_mae_with_and_without(world, tmp_path):
    """External rows: 10 training ids, 5 test ids (in the main table, not in training), 5
    training structures under new ids, 40 materials the main table does not hold."""
    raw, split = world["raw"], world["split"]
    by_id = raw.set_index("material_id")
    same_train = split["train"][:10]
    same_test = split["test"][:5]
    renamed = by_id.loc[split["train"][10:15]].reset_index().assign(material_id=lambda f: "copy-" + f["material_id"])
    new = raw.iloc[200:240]
    ext_raw = pd.concat([by_id.loc[same_train + same_test].reset_index(), renamed, new], ignore_index=True)
    ext_raw[["material_id", "band_gap", "is_metal", "cif"]].to_csv(tmp_path / "ext.csv", index=False)

    d = tmp_path / "ext"
    ingest.ingest(
        tmp_path / "ext.csv",
        d / "structures.parquet",
        d / "dropped.csv",
        d / "summary.json",
        ingest.IngestOptions(required_properties=["band_gap"]),
        progress=False,
    )
    featurize(d / "structures.parquet", d / "graphs", PARAMS, progress=False)
    ov = external.overlap(
        d / "structures.parquet", world["dir"] / "structures.parquet", d / "overlap.parquet"
    ).set_index("material_id")
    assert ov.loc[same_train + same_test, "same_id"].all() and not ov.loc[renamed["material_id"], "same_id"].any()
    for r in renamed.itertuples():  # found by StructureMatcher among structures of the same formula
        assert r.material_id.removeprefix("copy-") in list(ov.at[r.material_id, "matches"])

    cell = tmp_path / "cell_metrics.json"
    io.write_json(
        cell,
        [
            {
                "checkpoint": str(world["model"]),
                "target": "gap",
                "size": 60,
                "mode": "scratch",
                "family": "scratch",
                "seed": 0,
                "mae": 0.5,
                "error": 0.5,
            }
        ],
    )
    split_cfg = {"metal_rule": "is_metal", "band_gap_threshold": 0.0}
    recs = external.evaluate_target(
        external="ext",
        cell_metrics=[str(cell)],
        table_path=str(d / "structures.parquet"),
        graph_dir=str(d / "graphs"),
        overlap_path=str(d / "overlap.parquet"),
        split_cfg=split_cfg,
        out_metrics=str(d / "metrics.json"),
        out_predictions=str(d / "predictions.parquet"),
        device="cpu",
    )
    (rec,) = recs
    preds = pd.read_parquet(d / "predictions.parquet").set_index("material_id")
    flagged = set(preds.index[preds["in_training"]])
    assert flagged == set(same_train) | set(renamed["material_id"])
    assert rec["n_external"] == 60 and rec["n_in_training"] == 15
    err = (preds["y_pred"] - preds["y_true"]).abs()
    assert rec["mae_external"] == pytest.approx(err.mean()) and rec["mae_external_no_overlap"] == pytest.approx(
        err[~preds["in_training"]].mean()
    )
    assert rec["mae_external"] != pytest.approx(rec["mae_external_no_overlap"]) and rec["mae_test"] == 0.5
    np.testing.assert_allclose(preds.loc[same_train, "y_true"], by_id.loc[same_train, "band_gap"])
    # the same model on the main graphs gives the same predictions for the same crystals
    from tlcgcnn.analysis.evaluate import predict_ids

    main_pred = predict_ids(
        load_checkpoint(world["model"]), world["model"], world["dir"] / "graphs", same_train, device="cpu"
    )
    np.testing.assert_allclose(preds.loc[same_train, "y_pred"], main_pred, rtol=1e-5, atol=1e-5)

    # a non-metal target scores only the set's non-metals
    ck = load_checkpoint(world["model"])
    ck["target"] = {**ck["target"], "subset": "nonmetal"}
    save_checkpoint(ck, tmp_path / "nonmetal.pt")
    io.write_json(
        cell,
        [
            {
                "checkpoint": str(tmp_path / "nonmetal.pt"),
                "target": "gap",
                "size": 60,
                "mode": "scratch",
                "seed": 0,
                "mae": 0.5,
            }
        ],
    )
    (rec_nm,) = external.evaluate_target(
        external="ext",
        cell_metrics=[str(cell)],
        table_path=str(d / "structures.parquet"),
        graph_dir=str(d / "graphs"),
        overlap_path=str(d / "overlap.parquet"),
        split_cfg=split_cfg,
        out_metrics=str(d / "m2.json"),
        out_predictions=str(d / "p2.parquet"),
        device="cpu",
    )
    assert rec_nm["n_external"] == int((~ext_raw["is_metal"].astype(bool)).sum())

    table_df = external.collect(
        [str(d / "metrics.json"), str(d / "m2.json")],
        [str(d / "predictions.parquet")],
        tmp_path / "external.csv",
        tmp_path / "all.parquet",
    )
    from tlcgcnn.analysis.stats import read_table

    back = read_table(tmp_path / "external.csv")
    assert len(back) == 2 and {"mae_external", "mae_external_no_overlap", "mae_test", "n_in_training"} <= set(
        back.columns
    )
    assert len(table_df) == 2 and len(pd.read_parquet(tmp_path / "all.parquet")) == 60


def test_external_parity_figure_draws(world, tmp_path):
    from tlcgcnn.report import figures

    rng = np.random.default_rng(0)
    rows, preds = [], []
    for mode in ("scratch", "transfer"):
        for seed in (0, 1):
            y = rng.normal(size=30)
            seen = np.arange(30) < 5
            preds.append(
                pd.DataFrame(
                    {
                        "external": "ext",
                        "target": "gap",
                        "size": "40",
                        "mode": mode,
                        "seed": seed,
                        "material_id": [f"m{i}" for i in range(30)],
                        "y_true": y,
                        "y_pred": y + rng.normal(0, 0.2, 30),
                        "in_training": seen,
                    }
                )
            )
            rows.append(
                {
                    "external": "ext",
                    "target": "gap",
                    "property": "band_gap",
                    "transform": "none",
                    "size": 40,
                    "mode": mode,
                    "seed": seed,
                    "n_external": 30,
                    "n_in_training": 5,
                    "mae_external": 0.2,
                    "mae_external_no_overlap": 0.21,
                    "mae_test": 0.3,
                }
            )
    io.write_csv(pd.DataFrame(rows), tmp_path / "stats" / "external.csv")
    io.write_parquet(pd.concat(preds), tmp_path / "stats" / "external_predictions.parquet")
    targets = [{"name": "gap", "property": "band_gap"}]
    ft = {"targets": targets, "sizes": [10], "seeds": [0], "modes": {"scratch": {}}}
    gap = {"name": "gap", "dataset": {"path": "data.csv"}, "finetune": ft}
    ext = {**gap, "external": [{"name": "ext", "path": "ext.csv", "property": "band_gap"}]}
    assert figures.requested(C.load(ext))[-1] == "external_parity"
    assert "external_parity" not in figures.requested(C.load(gap))
    figures.draw(
        "external_parity",
        figures.input_paths("external_parity", str(tmp_path)),
        tmp_path / "p.png",
        tmp_path / "p.pdf",
        {"gap": "band gap"},
    )
    assert (tmp_path / "p.png").stat().st_size > 10_000 and (tmp_path / "p.pdf").stat().st_size > 1_000
    assert "StructureMatcher" in figures.caption("external_parity", ROOT / "report")
