"""A newcomer's own data, end to end: real crystals with a property the package has never
heard of (``my_modulus`` in GPa: the committed MP-2018 subset's bulk moduli under a new
name), fine-tuned from the published ΔEf model with ``tlcgcnn finetune`` and predicted with
the result through the CLI and ``tlcgcnn.load_model``, from the three shapes such data
comes in: a CIF folder with cgcnn's ``id_prop.csv``, a CSV of POSCAR strings, and a folder
of extended-XYZ files with a labels CSV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tlcgcnn
from tlcgcnn.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
SUBSET = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"
N_CRYSTALS = 64
# small and quick: 4 epochs, sizes 20 and all, 2 seeds; the run's shape is what is tested
FAST = [
    "--sizes",
    "20",
    "all",
    "--seeds",
    "0",
    "1",
    "--modes",
    "scratch",
    "transfer",
    "--train-overrides",
    "epochs=4",
    "batch_size=16",
    "patience=4",
    "--cores",
    "2",
]


def real_crystals(n: int = N_CRYSTALS) -> list[tuple[str, object, float]]:
    """(id, pymatgen Structure, K_VRH in GPa) of the first ``n`` labelled crystals (by id)
    of the committed MP-2018 subset, at most 12 sites each (a quick run)."""
    from pymatgen.core import Structure

    df = pd.read_parquet(SUBSET, columns=["material_id", "k_vrh", "cif"]).dropna(subset=["k_vrh"])
    df = df.sort_values("material_id")
    out = []
    for rec in df.itertuples():
        s = Structure.from_str(rec.cif, fmt="cif")
        if len(s) <= 12:
            out.append((str(rec.material_id), s, float(rec.k_vrh)))
        if len(out) == n:
            break
    return out


def cif_folder(root: Path, crystals: list, header: bool = False) -> Path:
    folder = root / "my_cifs"
    folder.mkdir()
    lines = ["id,my_modulus"] if header else []
    for mid, s, k in crystals:
        s.to(filename=str(folder / f"{mid}.cif"))
        lines.append(f"{mid},{k}")
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    return folder


def poscar_table(root: Path, crystals: list) -> Path:
    from pymatgen.io.vasp import Poscar

    path = root / "moduli.csv"
    pd.DataFrame(
        {
            "material_id": [c[0] for c in crystals],
            "poscar": [Poscar(c[1]).get_str() for c in crystals],
            "my_modulus": [c[2] for c in crystals],
        }
    ).to_csv(path, index=False)
    return path


def extxyz_folder(root: Path, crystals: list) -> Path:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    folder = root / "xyz"
    folder.mkdir()
    for mid, s, _ in crystals:
        ase.io.write(folder / f"{mid}.extxyz", AseAtomsAdaptor.get_atoms(s), format="extxyz")
    pd.DataFrame({"material_id": [c[0] for c in crystals], "my_modulus": [c[2] for c in crystals]}).to_csv(
        folder / "labels.csv", index=False
    )
    return folder


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "tlcgcnn"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tlcgcnn"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True)


def finetune_and_predict(tmp_path: Path, data: Path, name: str, predict_input: Path) -> None:
    """The whole own-data path: fine-tune, check the results, predict via CLI and API."""
    wd = tmp_path / "run"
    res = run_cli(
        [
            "finetune",
            "--pretrained",
            "mp2018-ef",
            "--data",
            str(data),
            "--label",
            "my_modulus",
            "--unit",
            "GPa",
            "--transform",
            "log10",
            "--name",
            name,
            "--workdir",
            str(wd),
            *FAST,
        ]
    )
    assert res.returncode == 0, res.stderr[-4000:]
    results = wd / "results" / name
    dropped = pd.read_csv(results / "data" / "dropped.csv")
    assert dropped.empty, dropped
    tt = pd.read_csv(results / "stats" / "ttests.csv")
    assert {"transfer"} <= set(tt["mode"]) and set(tt["size"].astype(str)) == {"20", "all"}
    metrics = pd.read_csv(results / "stats" / "metrics.csv")
    assert len(metrics[metrics["mode"] == "transfer"]) == 4 and metrics["mae"].notna().all()
    cell = results / "finetune" / "my_modulus_log10" / "nall" / "transfer"

    out = tmp_path / "pred.parquet"
    res = run_cli(["predict", "--model", str(cell), str(predict_input), "-o", str(out), "-q"])
    assert res.returncode == 0, res.stderr
    cli_pred = pd.read_parquet(out)
    assert len(cli_pred) == N_CRYSTALS

    model = tlcgcnn.load_model(cell)
    assert model.seeds == 2 and model.units["my_modulus"] == "GPa"
    api_pred = model.predict(predict_input)
    assert api_pred.attrs["dropped"].empty
    merged = cli_pred.merge(api_pred, on="material_id", suffixes=("_cli", "_api"))
    assert len(merged) == N_CRYSTALS
    for col in ("my_modulus", "log10_my_modulus", "my_modulus_std"):
        np.testing.assert_allclose(merged[f"{col}_cli"], merged[f"{col}_api"], rtol=0, atol=1e-6)
    assert (api_pred["my_modulus"] > 0).all()

    info = run_cli(["info", str(cell / "runs" / "s0" / "model.pt")])
    assert info.returncode == 0 and "my_modulus [GPa]" in info.stdout


@pytest.mark.e2e
def test_cif_folder_with_id_prop_new_property(tmp_path):
    crystals = real_crystals()
    folder = cif_folder(tmp_path, crystals)  # no header: --label names its one column
    finetune_and_predict(tmp_path, folder, "cifs", folder)


@pytest.mark.e2e
def test_csv_of_poscar_strings(tmp_path):
    crystals = real_crystals()
    table = poscar_table(tmp_path, crystals)
    finetune_and_predict(tmp_path, table, "poscars", table)


@pytest.mark.e2e
def test_folder_of_extxyz_files(tmp_path):
    crystals = real_crystals()
    folder = extxyz_folder(tmp_path, crystals)
    finetune_and_predict(tmp_path, folder, "xyz", folder)


def test_api_is_exported():
    assert {"load_model", "finetune", "list_models", "Model", "__version__"} <= set(dir(tlcgcnn))
    assert callable(tlcgcnn.load_model)


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"tlcgcnn {tlcgcnn.__version__}"
