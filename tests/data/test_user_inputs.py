"""The inputs users arrive with, and the errors they used to hit (each test failed before
the own-data path existed): CIF folders with id_prop.csv (header or not), folders of CIF /
POSCAR / extended-XYZ files with a labels CSV, tables of POSCAR or XYZ text, a property the
package does not know, a table without a metal flag, a folder hashed for provenance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tlcgcnn import config
from tlcgcnn.data import inputs, properties, split
from tlcgcnn.data.ingest import IngestError, IngestOptions, ingest, ingest_frame, read_input

ROOT = Path(__file__).resolve().parents[2]


def write_poscar(structure, path: Path) -> None:
    from pymatgen.io.vasp import Poscar

    path.write_text(Poscar(structure).get_str())


def extxyz_text(*structures) -> str:
    import io

    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    buf = io.StringIO()
    ase.io.write(buf, [AseAtomsAdaptor.get_atoms(s) for s in structures], format="extxyz")
    return buf.getvalue()


# --------------------------------------------------------------------------- reading


def test_id_prop_with_header_names_its_labels(tmp_path, nacl, bcc_fe):
    nacl.to(filename=str(tmp_path / "a.cif"))
    bcc_fe.to(filename=str(tmp_path / "b.cif"))
    (tmp_path / "id_prop.csv").write_text("material_id,k_vrh,my_modulus\na,25.0,1.5\nb,170.0,2.5\n")
    raw = read_input(tmp_path)
    properties.register(properties.from_config({"my_modulus": {"unit": "GPa"}}))
    out, report, summary = ingest_frame(raw, IngestOptions(), path=str(tmp_path), progress=False)
    assert report.empty and out["k_vrh"].tolist() == [25.0, 170.0] and out["my_modulus"].tolist() == [1.5, 2.5]
    assert summary["column_mapping"] == {"k_vrh": "k_vrh", "my_modulus": "my_modulus"}


def test_structure_folder_of_mixed_formats_with_labels(tmp_path, nacl, bcc_fe):
    nacl.to(filename=str(tmp_path / "a.cif"))
    write_poscar(bcc_fe, tmp_path / "POSCAR_b")
    (tmp_path / "frames.extxyz").write_text(extxyz_text(nacl, bcc_fe))
    (tmp_path / "labels.csv").write_text("id,k_vrh\na,25\nb,170\nframes:0,24\nghost,3\n")
    raw = read_input(tmp_path)
    out, report, _ = ingest_frame(raw, IngestOptions(), path=str(tmp_path), progress=False)
    got = dict(zip(out["material_id"], out["k_vrh"], strict=True))
    assert got["a"] == 25 and got["b"] == 170 and got["frames:0"] == 24
    assert pd.isna(got["frames:1"])  # a structure without a label row stays, unlabelled
    assert set(out["formula"]) == {"NaCl", "Fe"}
    miss = report[report["material_id"] == "ghost"]
    assert miss["reason"].tolist() == ["missing_structure"]  # a label without a structure is listed


def test_table_of_poscar_and_xyz_text(nacl, bcc_fe):
    from pymatgen.io.vasp import Poscar

    raw = pd.DataFrame(
        {
            "material_id": ["p", "x", "bad"],
            "structure": [Poscar(nacl).get_str(), extxyz_text(bcc_fe), "not a crystal at all"],
            "k_vrh": [25.0, 170.0, 1.0],
        }
    )
    out, report, _ = ingest_frame(raw, IngestOptions(), path="t.csv", progress=False)
    assert out["formula"].tolist() == ["NaCl", "Fe"]
    assert report["material_id"].tolist() == ["bad"] and report["reason"].tolist() == ["unparsable_structure"]
    assert "POSCAR" in report["detail"].iloc[0]


def test_folder_hash_follows_names_and_contents(tmp_path, nacl):
    nacl.to(filename=str(tmp_path / "a.cif"))
    (tmp_path / "id_prop.csv").write_text("a,1\n")
    first = inputs.input_sha256(tmp_path)
    (tmp_path / ".DS_Store").write_text("finder")
    assert inputs.input_sha256(tmp_path) == first  # hidden files are not data
    (tmp_path / "id_prop.csv").write_text("a,2\n")
    assert inputs.input_sha256(tmp_path) != first
    (tmp_path / "id_prop.csv").write_text("a,1\n")
    (tmp_path / "a.cif").rename(tmp_path / "b.cif")
    assert inputs.input_sha256(tmp_path) != first


def test_unreadable_inputs_name_the_path(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        read_input(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(IngestError, match="no structure files"):
        read_input(tmp_path)


# --------------------------------------------------------------------------- properties


def test_property_declaration_and_registry():
    props = properties.from_config({"barrier_height": {"unit": "eV", "low": 0, "high": 5, "aliases": ["Ea"]}})
    properties.register(props)
    assert properties.canonical_name("ea") == "barrier_height" and properties.units_of("barrier_height") == "eV"
    assert props["barrier_height"].check(7.0) is not None and props["barrier_height"].check(1.0) is None
    with pytest.raises(properties.PropertyError, match="built-in"):
        properties.from_config({"k_vrh": {"unit": "kbar"}})
    with pytest.raises(properties.PropertyError, match="unknown keys"):
        properties.from_spec("x", {"units": "GPa"})


def small_config(tmp_path: Path, data: Path, prop: str, subset: str = "all", declare: dict | None = None) -> dict:
    raw = {
        "name": "own",
        "dataset": {"source": "local", "path": str(data)},
        "finetune": {
            "targets": [{"name": "t", "property": prop, "subset": subset}],
            "sizes": [10],
            "seeds": [0],
            "modes": {"scratch": {}},
        },
    }
    if declare is not None:
        raw["properties"] = declare
    return raw


def test_unknown_property_is_a_config_error_until_declared(tmp_path, nacl):
    data = tmp_path / "t.csv"
    pd.DataFrame({"material_id": ["a"], "cif": [nacl.to(fmt="cif")], "lab_modulus": [1.0]}).to_csv(data, index=False)
    with pytest.raises(config.ConfigError, match="unknown property 'lab_modulus'; declare it under properties:"):
        config.load(small_config(tmp_path, data, "lab_modulus"))
    cfg = config.load(small_config(tmp_path, data, "lab_modulus", declare={"lab_modulus": {"unit": "GPa"}}))
    assert cfg.as_dict()["properties"]["lab_modulus"]["unit"] == "GPa"


def test_metal_subset_only_when_asked(tmp_path, nacl):
    data = tmp_path / "t.csv"
    pd.DataFrame({"material_id": ["a"], "cif": [nacl.to(fmt="cif")], "k_vrh": [1.0]}).to_csv(data, index=False)
    assert not config.load(small_config(tmp_path, data, "k_vrh")).subsets_needed
    with pytest.raises(config.ConfigError, match="by the column 'is_metal', but .* has no such column"):
        config.load(small_config(tmp_path, data, "k_vrh", subset="nonmetal"))
    df = pd.DataFrame({"material_id": ["a", "b"]})
    assert split.subsets(df, "is_metal", needed=False) == {"all": ["a", "b"], "metal": [], "nonmetal": []}
    with pytest.raises(ValueError, match="no is_metal column"):
        split.subsets(df, "is_metal")


def test_missing_label_column_stops_naming_columns_and_report(tmp_path, nacl):
    data = tmp_path / "t.csv"
    pd.DataFrame({"material_id": ["a"], "cif": [nacl.to(fmt="cif")], "modulus": [1.0]}).to_csv(data, index=False)
    out = tmp_path / "out"
    with pytest.raises(
        IngestError, match=r"no column for \['k_vrh'\].*all columns: \['material_id', 'cif', 'modulus'\]"
    ):
        ingest(
            data,
            out / "s.parquet",
            out / "dropped.csv",
            out / "summary.json",
            IngestOptions(required_properties=["k_vrh"]),
            progress=False,
        )
    pd.DataFrame({"material_id": ["a"], "cif": [nacl.to(fmt="cif")], "k_vrh": [-1.0]}).to_csv(data, index=False)
    with pytest.raises(IngestError, match=r"no usable values left .*dropped\.csv"):
        ingest(
            data,
            out / "s.parquet",
            out / "dropped.csv",
            out / "summary.json",
            IngestOptions(required_properties=["k_vrh"]),
            progress=False,
        )
    assert pd.read_csv(out / "dropped.csv")["reason"].tolist() == ["absurd_label"]  # the report it names exists
    assert not (out / "s.parquet").exists()


def test_snakemake_parses_a_folder_dataset(tmp_path, nacl, bcc_fe):
    """A CIF folder used to stop every Snakemake call at parse time (IsADirectoryError)."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    for k in range(12):
        (nacl if k % 2 else bcc_fe).to(filename=str(folder / f"c{k}.cif"))
    (folder / "id_prop.csv").write_text("".join(f"c{k},{10 + k}\n" for k in range(12)))
    raw = small_config(tmp_path, folder, "my_modulus", declare={"my_modulus": {"unit": "GPa"}})
    raw["dataset"]["columns"] = {"target": "my_modulus"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    exe = Path(sys.executable).parent / "snakemake"
    res = subprocess.run(
        [
            str(exe),
            "-n",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "ingest" in res.stdout
