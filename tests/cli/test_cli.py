"""The ``tlcgcnn`` command on real Materials Project crystals: predict (CIF folder, CSV,
a three-seed ensemble, equality with the pipeline's own evaluation), info, and the
one-line errors for checkpoints that cannot be used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ATOM_FEATURES, MP500, ROOT, require_shared

from tlcgcnn.analysis import evaluate
from tlcgcnn.analysis.convergence import judge
from tlcgcnn.cli.main import main
from tlcgcnn.data import ingest, table
from tlcgcnn.data.targets import Target
from tlcgcnn.features.featurize import FeaturizeParams, featurize
from tlcgcnn.predict import default_dropped_path
from tlcgcnn.train.checkpoint import load_checkpoint, save_checkpoint
from tlcgcnn.train.loop import TrainConfig, train

SEEDS = (0, 1, 2)
PARAMS = FeaturizeParams(radius=6.0, max_neighbors=10)  # not the defaults: predict must use the stored ones


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three seeds of a tiny log10 K_VRH model trained on the ~40 labelled crystals of mp500
    (2 epochs), with the featurization parameters recorded and one seed evaluated."""
    raw = pd.read_csv(require_shared(MP500))
    labelled = raw[raw["k_vrh"] > 0].reset_index(drop=True)
    unlabelled = raw[raw["k_vrh"].isna()].head(12).reset_index(drop=True)
    d = tmp_path_factory.mktemp("cli")
    df, _, _ = ingest.ingest_frame(labelled[["material_id", "k_vrh", "cif"]], ingest.IngestOptions(), progress=False)
    table.write(df, d / "structures.parquet")
    manifest = featurize(d / "structures.parquet", d / "graphs", PARAMS, progress=False)
    ids = df["material_id"].tolist()
    n_test = 8
    split = {"train": ids[: -2 * n_test], "val": ids[-2 * n_test : -n_test], "test": ids[-n_test:]}
    models = []
    for seed in SEEDS:
        out = d / f"seed{seed}" / "model.pt"
        train(
            table_df=df,
            graph_dir=d / "graphs",
            atom_table_path=ATOM_FEATURES,
            split_ids=split,
            target=Target("k_vrh_log", "k_vrh", "log10"),
            model_cfg={"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16, "radius": PARAMS.radius},
            train_cfg=TrainConfig(epochs=2, batch_size=8, patience=50, device="cpu"),
            seed=seed,
            out_checkpoint=out,
            progress=False,
            meta={
                "data_sha256": "abc123",
                "package_version": "0.1.0",
                "torch_version": str(torch.__version__),
                "stage": "finetune",
                "mode": "scratch",
                "size": "all",
            },
        )
        ck = load_checkpoint(out)
        assert ck["featurize"] == {k: manifest[k] for k in ("format_version", "params", "key")}  # written by train()
        models.append(out)
    record = evaluate.evaluate(
        models[0],
        df,
        d / "graphs",
        models[0].parent / "metrics.json",
        models[0].parent / "predictions.parquet",
        device="cpu",
    )
    return {"dir": d, "raw": labelled, "unlabelled": unlabelled, "split": split, "models": models, "record": record}


def _write_cifs(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    for r in rows.itertuples():
        (folder / f"{r.material_id}.cif").write_text(r.cif)


def test_predict_equals_pipeline_evaluation(trained, tmp_path):
    """The same model on the same crystals: predict's numbers are evaluate's."""
    test_ids = trained["split"]["test"]
    rows = trained["raw"].set_index("material_id").loc[test_ids].reset_index()
    rows[["material_id", "cif"]].to_csv(tmp_path / "mine.csv", index=False)
    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained["models"][0]),
                str(tmp_path / "mine.csv"),
                "-o",
                str(out),
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    pred = pd.read_csv(out, dtype={"material_id": str})
    ref = pd.read_parquet(trained["models"][0].parent / "predictions.parquet")
    assert pred["material_id"].tolist() == ref["material_id"].tolist() == test_ids
    np.testing.assert_allclose(pred["log10_k_vrh"], ref["y_pred"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(pred["k_vrh"], ref["y_pred_k_vrh"], rtol=1e-5)
    assert "k_vrh_std" not in pred.columns  # one model: no spread
    dropped = pd.read_csv(default_dropped_path(out))
    assert len(dropped) == 0 and list(dropped.columns) == ["input", "row", "material_id", "reason", "detail"]


def test_predict_cif_folder_with_a_bad_cif(trained, tmp_path):
    folder = tmp_path / "cifs"
    _write_cifs(folder, trained["unlabelled"].head(6))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\nX1\n")
    (folder / "notes.txt").write_text("not an input")
    out, dropped = tmp_path / "p.csv", tmp_path / "why.csv"
    assert (
        main(["predict", "-m", str(trained["models"][0]), str(folder), "-o", str(out), "--dropped", str(dropped), "-q"])
        == 0
    )
    pred = pd.read_csv(out, dtype={"material_id": str})
    assert sorted(pred["material_id"]) == sorted(trained["unlabelled"].head(6)["material_id"])
    assert pred["k_vrh"].gt(0).all() and np.allclose(np.log10(pred["k_vrh"]), pred["log10_k_vrh"])
    assert pred["input"].str.endswith(".cif").all() and pred["nsites"].gt(0).all()
    why = pd.read_csv(dropped)
    assert why[["material_id", "reason"]].values.tolist() == [["broken", "unparsable_structure"]]
    assert why["input"].iloc[0].endswith("broken.cif") and why["detail"].iloc[0]


def test_predict_table_and_files_with_three_seeds(trained, tmp_path, capsys):
    """A CSV with a cif column (bad rows listed by row number) plus single CIF files, with an
    ensemble of three seeds: mean and a positive standard deviation in both units."""
    rows = trained["unlabelled"].head(8)[["material_id", "cif"]].copy()
    rows.loc[2, "cif"] = ""  # missing structure
    rows.loc[5, "material_id"] = rows.loc[4, "material_id"]  # duplicate id
    rows.to_csv(tmp_path / "t.csv", index=False)
    _write_cifs(tmp_path / "single", trained["unlabelled"].iloc[8:10])
    files = sorted(str(p) for p in (tmp_path / "single").glob("*.cif"))
    out = tmp_path / "ens.csv"
    argv = ["predict", str(tmp_path / "t.csv"), *files, "-o", str(out)]
    for m in trained["models"]:
        argv += ["--model", str(m)]
    assert main(argv) == 0
    pred = pd.read_csv(out, dtype={"material_id": str})
    assert len(pred) == 8 and not pred.duplicated("material_id").any()
    for col in ("k_vrh", "log10_k_vrh"):
        assert (pred[f"{col}_std"] > 0).all(), col
    each = []
    for m in trained["models"]:
        assert (
            main(["predict", "-m", str(m), str(tmp_path / "t.csv"), *files, "-o", str(tmp_path / "one.csv"), "-q"]) == 0
        )
        each.append(pd.read_csv(tmp_path / "one.csv")["k_vrh"].to_numpy())
    np.testing.assert_allclose(pred["k_vrh"], np.mean(each, axis=0), rtol=1e-6)
    np.testing.assert_allclose(pred["k_vrh_std"], np.std(each, axis=0, ddof=1), rtol=1e-5)
    why = pd.read_csv(default_dropped_path(out)).sort_values("row")
    assert why[["row", "reason"]].values.tolist() == [[3, "missing_structure"], [6, "duplicate_id"]]
    assert (why["input"] == str(tmp_path / "t.csv")).all()
    err = capsys.readouterr().err
    assert "predicted 8 crystals with 3 model(s)" in err and "k_vrh [GPa]" in err and "dropped 2" in err


def test_info(trained, capsys):
    path = trained["models"][0]
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    for part in (
        "k_vrh [GPa]",
        "transform log10",
        "sha256 abc123",
        f"{len(trained['split']['train'])} train / 8 val / 8 test",
        "'radius': 6.0",
        "'max_neighbors': 10",
        "atom_fea_len=16",
        "parameters",
        "at epoch",
        "mae_original_units",
        "tlcgcnn 0.1.0",
        f"torch {torch.__version__}",
        "transfer        none",
    ):
        assert part in text, part
    assert main(["info", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["target"]["units"] == {"k_vrh": "GPa"} and d["target"]["transform"] == "log10"
    assert d["featurization"]["params"] == asdict(PARAMS) and d["training_data"]["n_test"] == 8
    assert d["model"]["n_params"] > 0 and d["model"]["config"]["n_conv"] == 1
    assert d["metrics"]["test"]["mae"] == pytest.approx(trained["record"]["mae"])
    assert d["metrics"]["best_epoch"] in (0, 1) and d["transfer"] is None
    ckpt = load_checkpoint(path)  # the convergence verdict, from the checkpoint's own history
    verdict = judge(ckpt["history"]["val_mae"], ckpt["train_config"]["epochs"]).text()
    assert d["metrics"]["converged"] == verdict and f"; converged {verdict}" in text
    assert main(["info", str(trained["models"][1]), "--json"]) == 0  # no metrics.json next to it
    assert json.loads(capsys.readouterr().out)["metrics"]["test"] is None


def _bad_checkpoints(trained, tmp_path):
    good = load_checkpoint(trained["models"][0])
    (tmp_path / "a.cif").write_text(trained["raw"]["cif"].iloc[0])
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    save_checkpoint({**good, "format_version": 7}, tmp_path / "v7.pt")
    sd = dict(good["state_dict"])
    sd["atom_table"] = sd["atom_table"] * 2
    save_checkpoint({**good, "state_dict": sd}, tmp_path / "table.pt")
    other = dict(good)
    other["featurize"] = {**good["featurize"], "params": asdict(FeaturizeParams())}
    save_checkpoint(other, tmp_path / "feat.pt")
    return {
        "a.cif": "not a tlcgcnn checkpoint",
        "noise.pt": "not a tlcgcnn checkpoint",
        "v7.pt": "format version 7",
        "feat.pt": "must share featurization parameters",
    }


def test_cli_errors_are_one_line_with_status_2(trained, tmp_path, capsys):
    cases = _bad_checkpoints(trained, tmp_path)
    cif = tmp_path / "a.cif"
    for name, expected in cases.items():
        argv = [
            "predict",
            "-m",
            str(trained["models"][0]),
            "-m",
            str(tmp_path / name),
            str(cif),
            "-o",
            str(tmp_path / "o.csv"),
            "-q",
        ]
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"tlcgcnn: error: {tmp_path / name}") and expected in err, err
    assert main(["info", str(cif)]) == 2
    assert "not a tlcgcnn checkpoint" in capsys.readouterr().err
    assert (
        main(["predict", "-m", str(trained["models"][0]), str(tmp_path / "nothing.csv"), "-o", str(tmp_path / "o.csv")])
        == 2
    )
    assert "input does not exist" in capsys.readouterr().err
    (tmp_path / "nostruct.csv").write_text("material_id,crystal\nx,?\n")
    assert (
        main(
            ["predict", "-m", str(trained["models"][0]), str(tmp_path / "nostruct.csv"), "-o", str(tmp_path / "o.csv")]
        )
        == 2
    )
    assert "no structure column" in capsys.readouterr().err


def test_other_atom_table_and_architecture_name_the_file(trained, tmp_path):
    from tlcgcnn.features import atom_features
    from tlcgcnn.train.checkpoint import CheckpointError

    _bad_checkpoints(trained, tmp_path)
    table_now = torch.from_numpy(atom_features.load_matrix(ATOM_FEATURES))
    with pytest.raises(
        CheckpointError,
        match=rf"^{tmp_path / 'table.pt'}: incompatible checkpoint: the atom-feature table does not match",
    ):
        load_checkpoint(tmp_path / "table.pt", atom_table=table_now)
    with pytest.raises(CheckpointError, match="n_conv: 1 in the checkpoint vs 3 expected"):
        load_checkpoint(trained["models"][0], model_config={"atom_fea_len": 16, "n_conv": 3, "h_fea_len": 16})


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "tlcgcnn", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_help_and_exit_status_in_a_subprocess(tmp_path):
    top = _run("--help")
    assert top.returncode == 0 and "predict" in top.stdout and "info" in top.stdout
    for sub, flag in (("predict", "--model"), ("info", "--json")):
        res = _run(sub, "--help")
        assert res.returncode == 0 and flag in res.stdout, res.stderr
    (tmp_path / "x.pt").write_text("data_x\n")
    bad = _run("info", str(tmp_path / "x.pt"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip().startswith(f"tlcgcnn: error: {tmp_path / 'x.pt'}: not a tlcgcnn checkpoint")
        and bad.stderr.strip().count("\n") == 0
    )
    assert _run().returncode == 2  # no subcommand: usage error


def _synthetic(tmp_path, atom_table, target, n_out, featurize_entry=True):
    """An untrained checkpoint (weights need not be good to test the output layout)."""
    from tlcgcnn.nn import build_model
    from tlcgcnn.train.checkpoint import CHECKPOINT_VERSION

    torch.manual_seed(0)
    model = build_model({"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8, "n_out": n_out}, atom_table).eval()
    norm = {"kind": "zscore", "mean": 1.0, "std": 2.0, "scale": 0.5}
    ck = {
        "format_version": CHECKPOINT_VERSION,
        "model_config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "normalizer": {"kind": "multi", "parts": [norm] * n_out} if n_out > 1 else norm,
        "target": target,
        "split": {"train": [], "val": [], "test": []},
        "seed": 0,
        "train_config": {},
        "transfer": None,
        "result": {},
        "history": {},
        "meta": {},
    }
    if featurize_entry:
        ck["featurize"] = {"format_version": 1, "params": asdict(FeaturizeParams()), "key": FeaturizeParams().key()}
    path = tmp_path / f"{target['name']}.pt"
    save_checkpoint(ck, path)
    return path


def test_classification_multitask_and_old_checkpoints(tmp_path, atom_table, nacl, bcc_fe, capsys):
    """Output layout of a classifier and of a multi-task model (no shared data needed); a
    checkpoint without featurization parameters warns once and uses the defaults."""
    (tmp_path / "in").mkdir()
    nacl.to(filename=str(tmp_path / "in" / "nacl.cif"))
    bcc_fe.to(filename=str(tmp_path / "in" / "fe.cif"))
    cls = _synthetic(tmp_path, atom_table, {"name": "metal", "property": "is_metal", "task": "classification"}, 1)
    assert main(["predict", "-m", str(cls), str(tmp_path / "in"), "-o", str(tmp_path / "c.csv"), "-q"]) == 0
    c = pd.read_csv(tmp_path / "c.csv")
    assert list(c.columns[4:]) == ["is_metal_probability"] and c["is_metal_probability"].between(0, 1).all()
    mt = _synthetic(
        tmp_path,
        atom_table,
        {
            "name": "mt",
            "property": "band_gap",
            "properties": ["band_gap", "k_vrh"],
            "transform": "log10",
            "task": "multitask",
        },
        2,
    )
    assert main(["predict", "-m", str(mt), str(tmp_path / "in"), "-o", str(tmp_path / "m.csv"), "-q"]) == 0
    m = pd.read_csv(tmp_path / "m.csv")
    assert list(m.columns[4:]) == ["log10_band_gap", "band_gap", "log10_k_vrh", "k_vrh"]
    np.testing.assert_allclose(m["k_vrh"], 10 ** m["log10_k_vrh"], rtol=1e-9)
    capsys.readouterr()
    old = _synthetic(
        tmp_path / "old", atom_table, {"name": "ef", "property": "formation_energy_per_atom"}, 1, featurize_entry=False
    )
    assert main(["predict", "-m", str(old), str(tmp_path / "in"), "-o", str(tmp_path / "o.csv"), "-q"]) == 0
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"tlcgcnn: warning: {old}: the checkpoint does not record its featurization parameters")
        and err.count("\n") == 0
    )
    assert list(pd.read_csv(tmp_path / "o.csv").columns[4:]) == ["formation_energy_per_atom"]
