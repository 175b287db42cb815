"""The command line as a new user meets it: published models by name, output formats, a
GPU that is not there, a file that is not a checkpoint, ``info`` on a published model, the
package's dependencies and licence."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tlcgcnn
from tlcgcnn.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SUBSET = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"


@pytest.fixture(scope="module")
def cifs(tmp_path_factory) -> Path:
    """Five real MP-2018 crystals as CIF files."""
    folder = tmp_path_factory.mktemp("cifs")
    df = pd.read_parquet(SUBSET, columns=["material_id", "cif"]).head(5)
    for rec in df.itertuples():
        (folder / f"{rec.material_id}.cif").write_text(rec.cif)
    return folder


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("mp2018-ef", "mp2018-eg", "mp2018-mt", "mp2018-log_kvrh", "mp2018-hse_gap"):
        assert name in out
    assert "eV/atom" in out and "GPa" in out
    assert main(["models", "--json"]) == 0
    assert {m["name"] for m in json.loads(capsys.readouterr().out)} >= {"mp2018-ef", "mp2018-log_kvrh"}


@pytest.mark.parametrize(
    "suffix, reader", [(".parquet", pd.read_parquet), (".json", pd.read_json), (".csv", pd.read_csv)]
)
def test_output_format_follows_the_suffix(tmp_path, cifs, suffix, reader):
    out = tmp_path / f"pred{suffix}"
    assert main(["predict", "--model", "mp2018-ef", str(cifs), "-o", str(out), "-q"]) == 0
    df = reader(out)
    assert len(df) == 5 and "formation_energy_per_atom" in df.columns
    assert (tmp_path / "pred.dropped.csv").is_file()


def test_unknown_output_format_is_refused_before_work(tmp_path, cifs, capsys):
    assert main(["predict", "--model", "mp2018-ef", str(cifs), "-o", str(tmp_path / "pred.txt"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown output format" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_an_error(tmp_path, cifs, capsys):
    assert (
        main(["predict", "--model", "mp2018-ef", str(cifs), "-o", str(tmp_path / "p.csv"), "--device", "cuda", "-q"])
        == 2
    )
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no CUDA device"):
        tlcgcnn.load_model("mp2018-ef").predict(cifs, device="cuda")


def test_unknown_name_and_foreign_pickle_are_one_line(tmp_path, cifs, capsys):
    assert main(["predict", "--model", "mp2018-nope", str(cifs), "-o", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mp2018-nope" in err and "mp2018-ef" in err
    import pickle

    bad = tmp_path / "foreign.pt"
    bad.write_bytes(pickle.dumps({"a": object}))
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a tlcgcnn checkpoint" in err and "file an issue" not in err


def test_info_on_a_published_model_shows_its_card_metrics(capsys):
    assert main(["info", "mp2018-ef"]) == 0
    out = capsys.readouterr().out
    card = json.loads((ROOT / "resources/pretrained/mp2018-ef/card.json").read_text())
    test_line = next(line for line in out.splitlines() if line.startswith("test"))
    assert f"mae {card['test']['per_seed'][0]['mae']:.6g}" in test_line and "card.json" in test_line


def test_api_and_cli_give_the_same_numbers(tmp_path, cifs):
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", "mp2018-log_kvrh", str(cifs), "-o", str(out), "-q"]) == 0
    cli = pd.read_csv(out)
    api = tlcgcnn.load_model("mp2018-log_kvrh").predict(sorted(cifs.glob("*.cif")))
    assert list(cli["material_id"]) == list(api["material_id"])
    for col in ("k_vrh", "log10_k_vrh", "k_vrh_std"):
        np.testing.assert_allclose(cli[col], api[col], rtol=0, atol=1e-6)


def test_dependencies_and_licence():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in meta["dependencies"]}
    assert {"torch", "snakemake", "pymatgen", "ase"} <= names
    assert meta["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "CC BY 4.0" in (ROOT / "LICENSE").read_text()
