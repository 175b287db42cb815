from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from tlcgcnn.data import table
from tlcgcnn.data.ingest import IngestError, IngestOptions, ingest, ingest_frame, read_input


def cif(s: Structure) -> str:
    return str(CifWriter(s))


def make_raw(nacl, bcc_fe) -> pd.DataFrame:
    disordered = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    overlap = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])
    return pd.DataFrame(
        {
            "material_id": ["m-1", "m-2", "m-3", "m-4", "m-5", "m-1", "m-7"],
            "cif": [
                cif(nacl),
                cif(bcc_fe),
                "data_broken\n_cell_length_a nonsense\n",
                cif(disordered),
                cif(overlap),
                cif(nacl),
                None,
            ],
            "formation_energy_per_atom": [-2.1, 0.0, -1.0, -0.5, -0.3, -2.0, 0.1],
            "band_gap": [5.0, -0.4, 1.0, 0.0, 0.0, 5.0, 0.0],
            "k_vrh": [25.0, 1e12, np.nan, 140.0, 10.0, 25.0, 3.0],
            "is_metal": ["False", "True", "False", "True", "False", "False", "True"],
            "unrelated": [1, 2, 3, 4, 5, 6, 7],
        }
    )


def test_each_drop_reason_is_reported(nacl, bcc_fe):
    out, report, summary = ingest_frame(make_raw(nacl, bcc_fe), IngestOptions(), path="toy.csv", progress=False)
    assert out["material_id"].tolist() == ["m-1", "m-2"]
    dropped = report[report["action"] == "row_dropped"].set_index("row")
    assert dropped.loc[3, "reason"] == "unparsable_structure"
    assert dropped.loc[4, "reason"] == "partial_occupancy"
    assert dropped.loc[5, "reason"] == "overlapping_atoms"
    assert dropped.loc[6, "reason"] == "duplicate_id" and "row 1" in dropped.loc[6, "detail"]
    assert dropped.loc[7, "reason"] == "missing_structure"
    assert (report["file"] == "toy.csv").all()
    assert summary["rows_in"] == 7 and summary["rows_kept"] == 2 and summary["rows_dropped"] == 5
    assert summary["dropped_by_reason"] == {
        "duplicate_id": 1,
        "unparsable_structure": 1,
        "partial_occupancy": 1,
        "overlapping_atoms": 1,
        "missing_structure": 1,
    }


def test_absurd_labels_are_set_missing_and_listed(nacl, bcc_fe):
    out, report, summary = ingest_frame(make_raw(nacl, bcc_fe), IngestOptions(), progress=False)
    fe = out.set_index("material_id").loc["m-2"]
    assert np.isnan(fe["k_vrh"]) and np.isnan(fe["band_gap"])  # 1e12 GPa and a negative gap
    assert fe["formation_energy_per_atom"] == 0.0 and bool(fe["is_metal"]) is True
    labels = report[report["action"] == "label_set_missing"]
    assert set(zip(labels["material_id"], labels["property"], labels["reason"], strict=True)) == {
        ("m-2", "k_vrh", "absurd_label"),
        ("m-2", "band_gap", "absurd_label"),
    }
    assert summary["labels"]["k_vrh"] == 1  # only NaCl's 25 GPa survives among kept rows
    assert "unrelated" not in out.columns


def test_structure_arrays_round_trip(nacl):
    out, _, _ = ingest_frame(pd.DataFrame({"material_id": ["x"], "cif": [cif(nacl)]}), IngestOptions(), progress=False)
    back = table.to_structure(out.iloc[0])
    assert back.matches(nacl) and len(back) == len(nacl)
    assert out["formula"].iloc[0] == "NaCl" and out["nsites"].iloc[0] == 8


def test_pymatgen_dict_column_and_parallel(nacl, bcc_fe):
    raw = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(6)],
            "structure": [json.dumps((nacl if i % 2 else bcc_fe).as_dict()) for i in range(6)],
            "gap": [1.0] * 6,
        }
    )
    out, report, summary = ingest_frame(raw, IngestOptions(threads=2, chunk_size=2), progress=False)
    assert len(out) == 6 and report.empty
    assert summary["column_mapping"] == {"gap": "band_gap"}


def test_cif_folder_with_id_prop(tmp_path, nacl, bcc_fe):
    (tmp_path / "a.cif").write_text(cif(nacl))
    (tmp_path / "b.cif").write_text(cif(bcc_fe))
    (tmp_path / "id_prop.csv").write_text("a,25.0\nb,170.0\nc,3.0\n")
    raw = read_input(tmp_path)
    with pytest.raises(IngestError, match="unnamed target"):
        ingest_frame(raw, IngestOptions(), path=str(tmp_path), progress=False)
    out, report, _ = ingest_frame(raw, IngestOptions(columns={"target": "k_vrh"}), path=str(tmp_path), progress=False)
    assert out["k_vrh"].tolist() == [25.0, 170.0]
    assert report.iloc[0]["material_id"] == "c" and report.iloc[0]["reason"] == "missing_structure"


def test_required_property_without_values_fails_clearly(tmp_path, nacl):
    src = tmp_path / "toy.csv"
    pd.DataFrame({"material_id": ["x"], "cif": [cif(nacl)], "k_vrh": [-5.0]}).to_csv(src, index=False)
    with pytest.raises(IngestError, match=r"no usable values left for required properties \['k_vrh'\]"):
        ingest(
            src,
            tmp_path / "s.parquet",
            tmp_path / "d.csv",
            tmp_path / "s.json",
            IngestOptions(required_properties=["k_vrh"]),
            progress=False,
        )


def test_missing_columns_name_the_file(nacl):
    with pytest.raises(IngestError, match="toy.csv: no structure column"):
        ingest_frame(pd.DataFrame({"material_id": ["x"], "crystal": ["?"]}), IngestOptions(), path="toy.csv")
    with pytest.raises(IngestError, match="does not exist"):
        read_input("/nonexistent/file.csv")


def test_ingest_writes_outputs_atomically(tmp_path, nacl, bcc_fe):
    src = tmp_path / "in.csv"
    make_raw(nacl, bcc_fe).to_csv(src, index=False)
    summary = ingest(
        src, tmp_path / "t.parquet", tmp_path / "dropped.csv", tmp_path / "s.json", IngestOptions(), progress=False
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dropped.csv", "in.csv", "s.json", "t.parquet"]
    assert len(pd.read_csv(tmp_path / "dropped.csv")) == 5 + 2
    assert summary["input_sha256"] and json.loads((tmp_path / "s.json").read_text())["rows_kept"] == 2


def test_real_mp_rows(mp500, tmp_path):
    summary = ingest(
        mp500, tmp_path / "t.parquet", tmp_path / "d.csv", tmp_path / "s.json", IngestOptions(threads=2), progress=False
    )
    df = table.read(tmp_path / "t.parquet")
    assert summary["rows_in"] == 500 and len(df) == summary["rows_kept"] >= 495
    assert df["material_id"].is_unique and df["is_metal"].notna().all()
    s = table.to_structure(df.iloc[0])
    assert len(s) == df["nsites"].iloc[0]
