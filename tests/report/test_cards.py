"""Model cards (tlcgcnn.report.cards) of tiny checkpoints trained here on the committed real-data
subset (resources/mp2018/, so this runs on a fresh clone): a fine-tuned cell of two seeds
chosen by validation score (``mode: best``) and a pretraining source; the published
checkpoints load with weights_only=True and predict through ``tlcgcnn predict``."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ATOM_FEATURES, ROOT

from tlcgcnn.analysis import evaluate
from tlcgcnn.analysis.convergence import judge
from tlcgcnn.cli.main import main
from tlcgcnn.data import ingest, table
from tlcgcnn.data.targets import Target
from tlcgcnn.features.featurize import FeaturizeParams, featurize
from tlcgcnn.report import cards
from tlcgcnn.train.checkpoint import load_checkpoint
from tlcgcnn.train.loop import TrainConfig, train
from tlcgcnn.utils import fileio as io

SUBSET = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"
PARAMS = FeaturizeParams(radius=6.0, max_neighbors=8)


def _cell(
    d: Path, df: pd.DataFrame, split: dict, target: Target, seeds: tuple[int, ...], lr: float
) -> tuple[Path, Path]:
    """A fine-tuning cell's outputs as the finetune rule writes them: runs/s<seed>/ and the
    cell's metrics.json (one record per seed) and predictions.parquet (with a seed column)."""
    records, preds = [], []
    for seed in seeds:
        run = d / "runs" / f"s{seed}"
        train(
            table_df=df,
            graph_dir=d.parent / "graphs",
            atom_table_path=ATOM_FEATURES,
            split_ids=split,
            target=target,
            model_cfg={"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8, "radius": PARAMS.radius},
            train_cfg=TrainConfig(epochs=2, batch_size=16, lr=lr, patience=50, device="cpu"),
            seed=seed,
            out_checkpoint=run / "model.pt",
            progress=False,
            meta={
                "data_sha256": "f" * 64,
                "package_version": "0.1.0",
                "git_commit": "abc",
                "config_sha256": "c" * 64,
                "torch_version": str(torch.__version__),
                "stage": "finetune",
                "mode": d.name,
                "size": len(split["train"]),
            },
        )
        records.append(
            evaluate.evaluate(
                run / "model.pt",
                df,
                d.parent / "graphs",
                run / "metrics.json",
                run / "predictions.parquet",
                device="cpu",
            )
        )
        preds.append(pd.read_parquet(run / "predictions.parquet").assign(seed=seed))
    io.write_json(d / "metrics.json", records)
    io.write_parquet(pd.concat(preds, ignore_index=True), d / "predictions.parquet")
    return d / "metrics.json", d / "predictions.parquet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    raw = pd.read_parquet(SUBSET)
    rows = raw[raw["k_vrh"].notna()].head(60).reset_index(drop=True)
    d = tmp_path_factory.mktemp("cards")
    df, _, summary = ingest.ingest_frame(rows, ingest.IngestOptions(), path=str(SUBSET), progress=False)
    summary["input_sha256"] = io.sha256_file(SUBSET)
    io.write_json(d / "ingest_summary.json", summary)
    table.write(df, d / "structures.parquet")
    featurize(d / "structures.parquet", d / "graphs", PARAMS, progress=False)
    ids = df["material_id"].tolist()
    split = {"train": ids[:36], "val": ids[36:48], "test": ids[48:]}
    k = Target("log_kvrh", "k_vrh", "log10")
    cells = {mode: _cell(d / mode, df, split, k, (0, 1), lr) for mode, lr in (("ef_ft", 1e-3), ("mt_ft", 3e-3))}
    pre = d / "pretrain"
    train(
        table_df=df,
        graph_dir=d / "graphs",
        atom_table_path=ATOM_FEATURES,
        split_ids=split,
        target=Target("ef", "formation_energy_per_atom"),
        model_cfg={"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8, "radius": PARAMS.radius},
        train_cfg=TrainConfig(epochs=2, batch_size=16, device="cpu"),
        seed=0,
        out_checkpoint=pre / "model.pt",
        progress=False,
        meta={"stage": "pretrain", "mode": "pretrain", "size": "all"},
    )
    evaluate.evaluate(
        pre / "model.pt",
        df,
        d / "graphs",
        pre / "metrics.json",
        pre / "predictions.parquet",
        device="cpu",
        extra={"pretrain": "ef"},
    )
    return {"dir": d, "df": df, "rows": rows, "cells": cells, "pre": pre, "split": split}


def test_card_of_a_fine_tuned_cell_chosen_by_validation(trained, tmp_path):
    cells = trained["cells"]
    vals = {m: np.mean([r["best_val_mae"] for r in io.read_json(c[0])]) for m, c in cells.items()}
    expected = min(vals, key=vals.get)
    model = {
        "name": "mp2018-log_kvrh",
        "kind": "finetune",
        "target": "log_kvrh",
        "size": "all",
        "seeds": [0, 1],
        "modes": list(cells),
        "choice": "best",
    }
    out = tmp_path / "zoo" / "mp2018-log_kvrh"
    card = cards.publish(
        model,
        metrics={m: c[0] for m, c in cells.items()},
        predictions={m: c[1] for m, c in cells.items()},
        ingest_summary=trained["dir"] / "ingest_summary.json",
        out_dir=out,
        config_name="zoo",
        target_label="log10 K_VRH",
    )
    assert card["mode"] == expected and {c["mode"] for c in card["compared"]} == set(cells)
    assert sorted(p.name for p in out.iterdir()) == [
        "card.json",
        "card.md",
        "model_s0.pt",
        "model_s1.pt",
        "parity.png",
        "training_curve.png",
    ]
    written = json.loads((out / "card.json").read_text())
    assert (
        written["name"] == card["name"]
        and written["test"]["mae_mean"] == card["test"]["mae_mean"]
        and written["files"] == card["files"]
    )
    # what it predicts, in what units
    o = card["predicts"]["outputs"][0]
    assert (
        o["output"] == "log10(k_vrh / GPa)" and o["property_unit"] == "GPa" and card["predicts"]["transform"] == "log10"
    )
    # data and training size
    assert card["data"]["input_sha256"] == io.sha256_file(SUBSET) and card["data"]["input"] == SUBSET.name
    assert [t["n_train"] for t in card["training"]] == [36, 36] and [t["n_val"] for t in card["training"]] == [12, 12]
    # test metrics: the seeds' records, and the ensemble recomputed from the predictions
    recs = io.read_json(cells[expected][0])
    assert card["test"]["mae_mean"] == pytest.approx(np.mean([r["mae"] for r in recs])) and card["test"]["n_test"] == 12
    preds = pd.read_parquet(cells[expected][1]).groupby("material_id")[["y_true", "y_pred"]].mean()
    assert card["test"]["ensemble"]["mae"] == pytest.approx(float((preds["y_pred"] - preds["y_true"]).abs().mean()))
    # code and config version
    assert (
        card["code"]["git_commit"] == "abc"
        and card["code"]["config_sha256"] == "c" * 64
        and card["code"]["config_name"] == "zoo"
    )
    # the copies are the trained checkpoints, loadable with weights_only=True
    for seed in (0, 1):
        src = trained["dir"] / expected / "runs" / f"s{seed}" / "model.pt"
        assert (out / f"model_s{seed}.pt").read_bytes() == src.read_bytes()
        assert load_checkpoint(out / f"model_s{seed}.pt")["seed"] == seed
    assert (out / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "card.md").read_text()
    for needed in (
        f"{card['test']['mae_mean']:.4g}",
        "log10(k_vrh / GPa)",
        io.sha256_file(SUBSET),
        "tlcgcnn predict --model",
        "checkpoint:",
        "mean best validation score",
        "![parity](parity.png)",
        "![training curve](training_curve.png)",
        "CC-BY 4.0",
    ):
        assert needed in md, needed
    # each seed's convergence verdict, from its own history (the card's table and card.json)
    for row, seed in zip(card["training"], (0, 1), strict=True):
        ckpt = load_checkpoint(out / f"model_s{seed}.pt")
        verdict = judge(ckpt["history"]["val_mae"], ckpt["train_config"]["epochs"])
        assert isinstance(row["converged"], bool) and row["converged"] == verdict.converged
        assert row["convergence"] == verdict.text() and f"| {verdict.text()} |" in md


def test_published_models_predict_through_the_cli(trained, tmp_path):
    cells = trained["cells"]
    out = tmp_path / "m"
    cards.publish(
        {
            "name": "m",
            "kind": "finetune",
            "target": "log_kvrh",
            "size": 36,
            "seeds": [0, 1],
            "modes": ["ef_ft"],
            "choice": "ef_ft",
        },
        metrics={"ef_ft": cells["ef_ft"][0]},
        predictions={"ef_ft": cells["ef_ft"][1]},
        ingest_summary=trained["dir"] / "ingest_summary.json",
        out_dir=out,
        config_name="zoo",
    )
    structures = trained["rows"].tail(20)[["material_id", "cif"]]
    structures.to_csv(tmp_path / "s.csv", index=False)
    assert (
        main(
            [
                "predict",
                "-m",
                str(out / "model_s0.pt"),
                "-m",
                str(out / "model_s1.pt"),
                str(tmp_path / "s.csv"),
                "-o",
                str(tmp_path / "p.csv"),
                "-q",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 20 and pred["k_vrh"].gt(0).all() and pred["k_vrh_std"].ge(0).all()


def test_card_of_a_pretraining_source(trained, tmp_path):
    pre = trained["pre"]
    out = tmp_path / "ef"
    card = cards.publish(
        {"name": "mp2018-ef", "kind": "pretrain", "pretrain": "ef"},
        metrics={"ef": pre / "metrics.json"},
        predictions={"ef": pre / "predictions.parquet"},
        ingest_summary=trained["dir"] / "ingest_summary.json",
        out_dir=out,
        config_name="zoo",
        target_label="ef",
    )
    assert (
        card["files"] == ["model_s0.pt"]
        and card["mode"] is None
        and card["compared"] is None
        and card["transfer"] is None
    )
    assert card["predicts"]["outputs"][0]["unit"] == "eV/atom"
    assert (
        card["test"]["mae_mean"] == pytest.approx(io.read_json(pre / "metrics.json")["mae"])
        and card["test"]["mae_std"] is None
    )
    assert "eV/atom" in (out / "card.md").read_text()


def test_a_missing_checkpoint_is_named(trained, tmp_path):
    pre = trained["pre"]
    rec = io.read_json(pre / "metrics.json")
    rec["checkpoint"] = str(tmp_path / "gone.pt")
    io.write_json(tmp_path / "metrics.json", rec)
    with pytest.raises(cards.CardError, match=r"gone.pt of seed 0 does not exist"):
        cards.publish(
            {"name": "x", "kind": "pretrain", "pretrain": "ef"},
            metrics={"ef": tmp_path / "metrics.json"},
            predictions={"ef": pre / "predictions.parquet"},
            ingest_summary=trained["dir"] / "ingest_summary.json",
            out_dir=tmp_path / "x",
            config_name="zoo",
        )


def test_zoo_config_resolves_published_models():
    from tlcgcnn import config as C

    cfg = C.load(ROOT / "config" / "zoo.yaml")
    assert cfg.zoo_names == ["mp2018-ef", "mp2018-eg", "mp2018-mt", "mp2018-log_kvrh", "mp2018-hse_gap"]
    assert cfg.zoo_model("mp2018-mt") == {"name": "mp2018-mt", "kind": "pretrain", "pretrain": "mt"}
    k = cfg.zoo_model("mp2018-log_kvrh")
    assert (
        k["modes"] == ["ef_head", "mt_head"]
        and k["size"] == "all"
        and k["seeds"] == [0, 1, 2]
        and k["choice"] == "best"
    )
    assert cfg.zoo_model("mp2018-hse_gap")["modes"] == ["eg_ft", "mt_ft"]
    raw = yaml.safe_load((ROOT / "config" / "zoo.yaml").read_text())
    bad = [
        ({"name": "x", "pretrain": "nope"}, "pretrain 'nope' is not a pretrain name"),
        (
            {"name": "x", "target": "log_kvrh", "mode": "eg_ft"},
            "mode 'eg_ft' is not a graph-model mode of target log_kvrh",
        ),
        (
            {"name": "x", "target": "log_kvrh", "mode": "ef_head", "size": 100},
            "size 100 is not a size of target log_kvrh",
        ),
        ({"name": "x", "target": "log_kvrh"}, "needs mode"),
        ({"name": "x", "pretrain": "ef", "target": "log_kvrh"}, "either pretrain"),
        ({"name": "mp2018-ef", "pretrain": "eg"}, "repeated names"),
    ]
    for entry, message in bad:
        r = copy.deepcopy(raw)
        r["zoo"]["models"].append(entry)
        with pytest.raises(C.ConfigError, match=re.escape(message)):
            C.load(r)
    r = copy.deepcopy(raw)
    r["finetune"]["targets"][0]["modes"] = ["scratch"]
    with pytest.raises(C.ConfigError, match="mode best chooses among transfer modes"):
        C.load(r)


def test_embedded_input_may_be_the_download():
    from tlcgcnn import config as C

    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert C.load(raw).embedded_input() == "../shared/data/mp2018_36737.csv.gz"
    raw["embedded"] = {"input": "download"}
    with pytest.raises(C.ConfigError, match="embedded.input is 'download' but dataset.source is local"):
        C.load(raw).embedded_input()
    raw["dataset"] = {"source": "materials_project"}
    cfg = C.load(raw)
    assert cfg.embedded_input() == "results/quickstart/raw/materials_project.parquet"
    assert cfg.embedded_settings()["keep"] == {"k_vrh": 0, "band_gap_hse": 1500}
