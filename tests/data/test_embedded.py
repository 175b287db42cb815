"""The committed real-data subset (resources/mp2018/) and its rule's module, tlcgcnn.data.embedded.

The checks of the committed files run everywhere (a fresh clone has them); rebuilding from
the full MP table needs ../shared/data and skips, with the reason, where it is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED_DATA, require_shared

from tlcgcnn.data import embedded
from tlcgcnn.data.ingest import IngestOptions, ingest_frame
from tlcgcnn.data.properties import PROPERTIES
from tlcgcnn.utils import fileio as io

SUBSET = ROOT / "resources" / "mp2018"
FULL = SHARED_DATA / "mp2018_36737.csv.gz"
FULL_SHA256 = "5b72e7542227ef6a4660877b7f4a4d8a6677766c0dade72bbb2f5fc3006f794f"  # ../shared/data/README.md


@pytest.fixture(scope="module")
def manifest() -> dict:
    return embedded.check_committed(SUBSET)  # sha256, bytes, rows and label counts agree


@pytest.fixture(scope="module")
def subset(manifest) -> pd.DataFrame:
    return pd.read_parquet(SUBSET / manifest["file"])


def test_committed_subset_is_small_labelled_and_documented(manifest, subset):
    assert manifest["bytes"] <= 8_000_000 and (SUBSET / manifest["file"]).stat().st_size == manifest["bytes"]
    assert manifest["source"]["file"] == "mp2018_36737.csv.gz" and manifest["source"]["sha256"] == FULL_SHA256
    assert subset["material_id"].is_unique and subset["cif"].str.startswith("# generated using pymatgen").all()
    for prop in ("formation_energy_per_atom", "band_gap"):  # every row: ΔEf and PBE Eg, inside their ranges
        assert subset[prop].notna().all()
        assert all(PROPERTIES[prop].check(float(v)) is None for v in subset[prop])
    labels = manifest["labels"]
    # the quickstart's targets: sizes up to 400 + validation + a test set of each
    assert labels["k_vrh"] >= 3000 and labels["band_gap_hse"] >= 1500
    assert 4000 <= manifest["rows"] <= 7000
    sel = manifest["selection"]
    assert (
        sel["seed"] == 2018
        and sel["keep"] == [["k_vrh", 0], ["band_gap_hse", 1500]]
        and sel["require"] == ["formation_energy_per_atom", "band_gap"]
    )
    units = {c["column"]: c["unit"] for c in manifest["columns"]}
    assert [c["column"] for c in manifest["columns"]] == list(subset.columns)
    assert (
        units["formation_energy_per_atom"].startswith("eV/atom")
        and units["k_vrh"].startswith("GPa")
        and units["band_gap_hse"].startswith("eV")
    )
    readme = (SUBSET / "README.md").read_text()
    assert readme == embedded.readme(manifest)
    for needed in (
        "CC-BY 4.0",
        "APL Materials 1, 011002",
        "PRL 120, 145301",
        "Sci. Data 2, 150009",
        FULL_SHA256,
        manifest["sha256"],
    ):
        assert needed in readme, needed


def test_every_committed_row_survives_ingest(subset):
    """A slice through the ingest stage: nothing dropped, labels intact."""
    part = subset.sample(300, random_state=0)
    df, report, summary = ingest_frame(part, IngestOptions(), path="subset", progress=False)
    assert summary["rows_dropped"] == 0 and summary["labels_set_missing"] == 0 and len(df) == 300
    assert (df["formation_energy_per_atom"].to_numpy() == part["formation_energy_per_atom"].to_numpy()).all()


def _toy(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "material_id": [f"m{i}" for i in range(n)],
            "formation_energy_per_atom": rng.normal(-1, 0.5, n),
            "band_gap": rng.uniform(0, 3, n),
            "k_vrh": np.where(np.arange(n) % 5 == 0, 100.0, np.nan),
            "band_gap_hse": np.where(np.arange(n) % 3 == 0, 2.0, np.nan),
            "cif": ["data_x"] * n,
        }
    )
    df.loc[1, "formation_energy_per_atom"] = np.nan  # not eligible: no ΔEf
    df.loc[2, "band_gap"] = -1.0  # not eligible: absurd Eg
    df.loc[5, "k_vrh"] = -3.0  # eligible, but its K is not a valid label
    df.loc[7, "cif"] = None  # not eligible: no structure
    df.loc[11, "material_id"] = "m10"  # a repeated id: the first one counts
    return df


def test_selection_rule():
    df = _toy()
    pos, info = embedded.select(
        df, require=["formation_energy_per_atom", "band_gap"], keep={"k_vrh": 0, "band_gap_hse": 3}, n=5, seed=1
    )
    chosen = set(df.loc[pos, "material_id"])
    assert info["eligible"] == 40 - 4
    k_rows = {f"m{i}" for i in range(0, 40, 5)} - {"m5"}  # every valid K label (m5's is absurd)
    assert k_rows <= chosen
    steps = {s["step"]: s for s in info["steps"]}
    assert (
        steps["keep k_vrh"]["taken"] == 7
        and steps["keep band_gap_hse"]["taken"] == 3
        and steps["random rest"]["taken"] == 5
    )
    assert len(pos) == 15 and list(pos) == sorted(pos)  # the input's order
    assert not {"m1", "m2", "m7"} & chosen and "m11" not in chosen
    again, _ = embedded.select(
        df, require=["formation_energy_per_atom", "band_gap"], keep={"k_vrh": 0, "band_gap_hse": 3}, n=5, seed=1
    )
    other, _ = embedded.select(
        df, require=["formation_energy_per_atom", "band_gap"], keep={"k_vrh": 0, "band_gap_hse": 3}, n=5, seed=2
    )
    assert list(again) == list(pos) and list(other) != list(pos)
    with pytest.raises(embedded.EmbeddedError, match="no column holds 'dielectric_total'"):
        embedded.select(
            df, require=["formation_energy_per_atom"], keep={"dielectric_total": 0}, n=0, seed=0, path="toy.csv"
        )


def test_build_on_mp500(mp500, tmp_path):
    out = tmp_path / "s"
    m = embedded.build(
        mp500, out / "t.parquet", out / "manifest.json", out / "README.md", keep={"k_vrh": 0}, n=60, seed=5
    )
    df = pd.read_parquet(out / "t.parquet")
    raw = pd.read_csv(mp500)
    n_k = int(((raw["k_vrh"] > 0) & raw["formation_energy_per_atom"].notna() & raw["band_gap"].notna()).sum())
    assert m["selection"]["left_out"] == []  # every mp500 structure passes ingest's checks
    assert len(df) == m["rows"] == n_k + 60
    assert m["labels"]["k_vrh"] == n_k and df["formation_energy_per_atom"].notna().all()
    assert m["source"]["sha256"] == io.sha256_file(mp500) and m["bytes"] == (out / "t.parquet").stat().st_size
    assert embedded.check_committed(out)["sha256"] == io.sha256_file(out / "t.parquet")
    again = embedded.build(
        mp500, tmp_path / "b.parquet", tmp_path / "b.json", tmp_path / "b.md", keep={"k_vrh": 0}, n=60, seed=5
    )
    assert pd.read_parquet(tmp_path / "b.parquet").equals(df) and again["labels"] == m["labels"]
    with pytest.raises(
        embedded.EmbeddedError, match=r"c.parquet: the subset would take [\d,]+ bytes, over the limit of 1,000"
    ):
        embedded.build(
            mp500, tmp_path / "c.parquet", tmp_path / "c.json", tmp_path / "c.md", keep={}, n=60, seed=5, max_bytes=1000
        )
    assert not (tmp_path / "c.parquet").exists()
    (out / "manifest.json").write_text((out / "manifest.json").read_text().replace(f'"rows": {m["rows"]}', '"rows": 1'))
    with pytest.raises(embedded.EmbeddedError, match="rows, manifest says 1"):
        embedded.check_committed(out)


def test_committed_subset_is_the_rules_selection_of_the_full_table(manifest, subset):
    """The selection rule, run on ../shared/data's full table with the manifest's settings,
    picks exactly the committed rows, and their values are the source's."""
    raw = pd.read_csv(require_shared(FULL), low_memory=False, dtype={"material_id": str})
    sel = manifest["selection"]
    pos, _ = embedded.select(raw, require=sel["require"], keep=dict(sel["keep"]), n=sel["n"], seed=sel["seed"])
    ids = raw.loc[pos, "material_id"].tolist()
    left = {r["material_id"] for r in sel["left_out"]}
    assert [i for i in ids if i not in left] == subset["material_id"].tolist()
    src = raw.set_index("material_id").loc[subset["material_id"]]
    for col in ("formation_energy_per_atom", "band_gap", "k_vrh", "band_gap_hse", "cif"):
        a, b = src[col].reset_index(drop=True), subset[col].reset_index(drop=True)
        assert a.equals(b) or np.allclose(a.astype(float), b.astype(float), equal_nan=True), col


def test_embedded_input_has_no_machine_specific_default():
    """The full table is not in the repository: embedded.input has no default, and the rule
    asks for it (only when it runs) with a message saying what to set; `download` takes this
    config's download, a table from a URL included."""
    import yaml

    from tlcgcnn import config as C

    assert C.defaults()["embedded.input"] is None
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert raw["embedded"]["input"].endswith("mp2018_36737.csv.gz")  # the developers' copy, named there
    del raw["embedded"]
    with pytest.raises(C.ConfigError, match=r"embedded.input is not set.*mp2018_36737\.csv\.gz.*docs/usage.md"):
        C.load(raw).embedded_input()
    raw["embedded"] = {"input": "download"}
    raw["dataset"] = {"source": "url", "url": "https://example.org/t/mp2018_36737.csv.gz", "sha256": FULL_SHA256}
    assert C.load(raw).embedded_input() == "results/quickstart/raw/url.parquet"
