"""tlcgcnn.features.backbones: universal potentials (CHGNet, SevenNet) as frozen-features sources.

Real crystals only: the embedding tests read 20 of the 500 Materials Project crystals
(``MP500``) and run the CHGNet 0.3.0 weights shipped in ``chgnet==0.4.2``; they skip, saying
why, where either is absent. The config tests need neither (the package check is
monkeypatched where it matters)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import MP500, ROOT, require_shared

from tlcgcnn import config as C
from tlcgcnn.features import backbones

HAVE_CHGNET = importlib.util.find_spec("chgnet") is not None
needs_chgnet = pytest.mark.skipif(not HAVE_CHGNET, reason="chgnet is not installed (pip install chgnet==0.4.2)")
HAVE_SEVENN = importlib.util.find_spec("sevenn") is not None
needs_sevenn = pytest.mark.skipif(not HAVE_SEVENN, reason="sevenn is not installed (pip install sevenn==0.13.0)")
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _ingested(n: int, skip: int = 0) -> pd.DataFrame:
    """``n`` real crystals of MP500 (after the first ``skip``) as the pipeline's table."""
    from tlcgcnn.data import ingest

    raw = pd.read_csv(require_shared(MP500), nrows=skip + n).iloc[skip:]
    df, _, _ = ingest.ingest_frame(raw[["material_id", "band_gap", "cif"]], ingest.IngestOptions(), progress=False)
    assert len(df) == n
    return df


@pytest.fixture(scope="module")
def crystals() -> pd.DataFrame:
    return _ingested(20)


def _vectors(frame: pd.DataFrame) -> np.ndarray:
    return frame[backbones.feature_columns(64)].to_numpy()


# --------------------------------------------------------------------------- embedding
@needs_chgnet
def test_chgnet_embeds_real_crystals_deterministically_and_caches_them(crystals, tmp_path):
    cache = tmp_path / "cache.parquet"
    t0 = time.perf_counter()
    first = backbones.embed(crystals, "chgnet-0.3.0", device="cpu", cache=cache, threads=2, progress=False)
    took = time.perf_counter() - t0
    assert list(first.columns) == ["material_id", *(f"f{i}" for i in range(64))]
    assert first["material_id"].tolist() == crystals["material_id"].tolist()
    X = _vectors(first)
    assert X.shape == (20, 64) and X.dtype == np.float64 and np.isfinite(X).all()
    assert len({tuple(r) for r in X.round(6)}) == 20  # one vector per crystal, not a constant
    assert first.attrs["n_embedded"] == 20 and first.attrs["n_cached"] == 0
    assert first.attrs["package_version"] == "0.4.2" and first.attrs["device"] == "cpu"

    # the second call reads every vector from the cache: nothing is embedded, the same numbers
    again = backbones.embed(crystals, "chgnet-0.3.0", device="cpu", cache=cache, threads=2, progress=False)
    assert again.attrs["n_embedded"] == 0 and again.attrs["n_cached"] == 20 and again.attrs["device"] is None
    assert np.array_equal(_vectors(again), X)
    # without the cache: computed anew, bitwise the same on the CPU
    fresh = backbones.embed(crystals, "chgnet-0.3.0", device="cpu", threads=2, progress=False)
    assert fresh.attrs["n_embedded"] == 20 and np.array_equal(_vectors(fresh), X)

    # a grown table: one new crystal and one already seen under another id -> one embedded
    grown = pd.concat([crystals, _ingested(1, skip=20), crystals.iloc[[3]].assign(material_id="copy-of-3")])
    more = backbones.embed(grown, "chgnet-0.3.0", device="cpu", cache=cache, threads=2, progress=False)
    assert (more.attrs["n_unique"], more.attrs["n_embedded"], more.attrs["n_cached"], len(more)) == (21, 1, 20, 22)
    assert np.array_equal(_vectors(more)[:20], X) and np.array_equal(_vectors(more)[21], X[3])
    assert len(pd.read_parquet(cache)) == 21

    # a cached vector of another package version is never reused
    stale = pd.read_parquet(cache).assign(package_version="0.4.1")
    stale.to_parquet(cache)
    assert backbones.read_cache(cache, backbones.get("chgnet-0.3.0"), "0.4.2").empty
    print(f"CHGNet: 20 crystals embedded in {took:.1f} s (model load included)")


@needs_chgnet
def test_the_vectors_are_chgnets_atom_features_averaged(crystals):
    """Row i is chgnet's own crystal feature of the crystal (predict_structure(...,
    return_crystal_feas=True): the 0.3.0 read-out *sums* its atoms' features) divided by its
    number of atoms."""
    from chgnet.model import CHGNet

    from tlcgcnn.data.table import to_structure

    ours = backbones.embed(crystals.iloc[:4], device="cpu", threads=2, progress=False)
    assert ours.attrs["pooling"] == backbones.POOLING
    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    for i in range(4):
        s = to_structure(crystals.iloc[i])
        ref = model.predict_structure(s, task="e", return_crystal_feas=True)
        assert np.allclose(_vectors(ours)[i], ref["crystal_fea"] / len(s), rtol=1e-5, atol=1e-6), i


@needs_chgnet
def test_a_supercell_gets_the_vector_of_its_cell(crystals):
    """The vector describes the material, not the cell chosen for it: a 2x1x1 and a 1x2x2
    supercell of a real crystal get its vector (CHGNet's summed crystal_fea would double)."""
    from tlcgcnn.data import table
    from tlcgcnn.data.table import to_structure

    s = to_structure(crystals.iloc[1])
    cells = {"cell": s}
    for name, scale in (("2x1x1", [2, 1, 1]), ("1x2x2", [1, 2, 2])):
        big = s.copy()
        big.make_supercell(scale)
        cells[name] = big
    vecs = backbones.embed(cells, device="cpu", threads=2, progress=False)
    X = _vectors(vecs)
    assert [len(c) for c in cells.values()] == [len(s), 2 * len(s), 4 * len(s)]
    assert np.allclose(X[1], X[0], rtol=1e-4, atol=1e-5) and np.allclose(X[2], X[0], rtol=1e-4, atol=1e-5)
    assert table.structure_arrays(cells["2x1x1"])["nsites"] == 2 * len(s)


@needs_chgnet
def test_embed_table_writes_the_vectors_and_what_it_did(crystals, tmp_path):
    from tlcgcnn.data import table

    path = tmp_path / "structures.parquet"
    table.write(crystals.iloc[:5], path)
    info = backbones.embed_table(
        path, tmp_path / "e.parquet", tmp_path / "e.json", "chgnet-0.3.0", cache=tmp_path / "c.parquet", device="cpu"
    )
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert saved["licence"].startswith("BSD") and saved["requirement"] == "chgnet==0.4.2"
    assert (saved["n_structures"], saved["n_embedded"], saved["width"]) == (5, 5, 64)
    ids = crystals["material_id"].tolist()[:5]
    got = backbones.read_embeddings(tmp_path / "e.parquet", ids[::-1])
    assert got.index.tolist() == ids[::-1] and got.shape == (5, 64)
    with pytest.raises(ValueError, match="no crystal vector for 1 ids"):
        backbones.read_embeddings(tmp_path / "e.parquet", [*ids, "mp-0"])


def test_the_structure_hash_is_the_structure_not_its_id(crystals):
    r = crystals.iloc[0]
    h = backbones.structure_hash(r["lattice"], r["atomic_numbers"], r["frac_coords"])
    assert h == backbones.structure_hash(
        np.array(r["lattice"]).reshape(3, 3), list(r["atomic_numbers"]), r["frac_coords"]
    )
    moved = np.array(r["frac_coords"], dtype=float)
    moved[0] += 1e-9
    assert h != backbones.structure_hash(r["lattice"], r["atomic_numbers"], moved)
    other = crystals.iloc[1]
    assert h != backbones.structure_hash(other["lattice"], other["atomic_numbers"], other["frac_coords"])


# --------------------------------------------------------------------------- the config
def _raw(**modes) -> dict:
    raw = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    raw["pretrain"].append({"name": "chgnet", "backbone": "chgnet-0.3.0"})
    raw["finetune"]["modes"].update(modes)
    return raw


FROZEN = {"pretrained": "chgnet", "estimator": "ridge", "features": "frozen"}
READOUT = {"pretrained": "chgnet", "features": "readout", "reinit": "head", "backbone_lr_scale": 0.1}
SEVENNET = {"pretrained": "sevennet", "estimator": "ridge", "features": "frozen"}


@pytest.fixture
def chgnet_importable(monkeypatch):
    """The package check answers as if chgnet were installed (the config tests need no model)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "chgnet" else real(name, *a))


def test_a_backbone_source_serves_frozen_modes_and_leaves_the_other_runs_alone(chgnet_importable):
    plain = C.load(yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text()))
    cfg = C.load(_raw(chgnet_ridge=FROZEN))
    cell = cfg.cell("gap_nonmetal", 25, "chgnet_ridge")
    assert cell.kind == "frozen" and cell.mode.family == "transfer" and cell.pretrain is not None
    assert cell.pretrain.backbone == "chgnet-0.3.0" and cell.pretrain.checkpoint is None
    assert cell.as_params()["pretrain"]["backbone"] == "chgnet-0.3.0"
    assert C.Cell.from_params(cell.as_params()).as_params() == cell.as_params()
    # no pretraining job, no split of its own, no checkpoint; one embedding per backbone
    assert cfg.trained_pretrain_names == ["ef_all"] and "chgnet" not in cfg.split_names()
    assert cfg.pretrained_checkpoint("chgnet") is None and cfg.pretrained_backbone("chgnet") == "chgnet-0.3.0"
    assert cfg.backbone_names == ["chgnet-0.3.0"] and plain.backbone_names == []
    # the cells and sources of the config without it keep their params (and run keys)
    assert "backbone" not in cfg.pretrain_source("ef_all").as_params()
    for c in plain.cells():
        assert cfg.cell(c.target.name, c.size, c.mode.name).as_params() == c.as_params()
    assert cfg.split_spec("gap_nonmetal") == plain.split_spec("gap_nonmetal")
    # a target whose only source is a backbone holds no test set out of the trained sources
    only = _raw(chgnet_ridge=FROZEN)
    only["finetune"]["modes"] = {"scratch": {}, "chgnet_ridge": FROZEN}
    assert C.load(only).transfer_target_names == []


def test_the_schema_names_every_backbone():
    schema = yaml.safe_load((ROOT / "config" / "schema" / "config.schema.yaml").read_text())
    assert schema["properties"]["pretrain"]["items"]["properties"]["backbone"]["enum"] == sorted(backbones.BACKBONES)


def test_a_missing_backbone_package_stops_the_parse_with_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "chgnet" else real(name, *a))
    with pytest.raises(C.ConfigError, match=r"pretrain chgnet: backbone chgnet-0\.3\.0 .*pip install chgnet==0\.4\.2"):
        C.load(_raw(chgnet_ridge=FROZEN))
    # a job of another rule (its env need not hold chgnet) resolves the validated config
    assert C.resolve(_raw(chgnet_ridge=FROZEN)).backbone_names == ["chgnet-0.3.0"]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            {"pretrained": "chgnet"},
            r"chgnet_mode: pretrained 'chgnet' is a backbone .* interaction blocks is not built",
        ),
        ({"pretrained": "chgnet", "freeze": 2}, r"serves frozen-features modes .* and read-out fine-tuning"),
        ({"pretrained": "chgnet", "estimator": "ridge"}, r"serves frozen-features modes"),
        ({"pretrained": "chgnet", "features": "readout", "estimator": "ridge"}, r"remove estimator: ridge"),
        ({"pretrained": "chgnet", "features": "readout", "freeze": 1}, r"freeze and model do not apply"),
        ({"pretrained": "chgnet", "features": "readout", "reinit": "unfrozen"}, r"reinit may be none or head"),
        ({"pretrained": "ef_all", "features": "readout"}, r"'ef_all' is not a backbone source"),
    ],
)
def test_a_backbone_serves_frozen_and_readout_modes_only(chgnet_importable, mode, message):
    with pytest.raises(C.ConfigError, match=message):
        C.load(_raw(chgnet_mode=mode))


def test_a_readout_mode_is_its_own_kind_with_the_cells_training_settings(chgnet_importable):
    cfg = C.load(_raw(chgnet_readout=READOUT))
    cell = cfg.cell("gap_nonmetal", 25, "chgnet_readout")
    assert cell.kind == "readout" and cell.mode.family == "transfer" and cell.pretrain.backbone == "chgnet-0.3.0"
    assert cfg.readout_modes == ["chgnet_readout"] and "chgnet_readout" not in cfg.gnn_modes + cfg.frozen_modes
    assert cell.train is not None and cell.train["lr"] == cfg.cell("gap_nonmetal", 25, "scratch").train["lr"]
    assert C.Cell.from_params(cell.as_params()).as_params() == cell.as_params()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"property": "band_gap"}, r"sets name and backbone only; remove \['property'\]"),
        ({"checkpoint": "x.pt"}, r"remove \['checkpoint'\]"),
    ],
)
def test_a_backbone_entry_sets_nothing_else(chgnet_importable, entry, message):
    raw = _raw(chgnet_ridge=FROZEN)
    raw["pretrain"][-1].update(entry)
    with pytest.raises(C.ConfigError, match=message):
        C.load(raw)


def test_an_unknown_backbone_is_refused_by_the_schema(chgnet_importable):
    raw = _raw(chgnet_ridge=FROZEN)
    raw["pretrain"][-1]["backbone"] = "chgnet-9"
    with pytest.raises(C.ConfigError, match=r"pretrain\.1\.backbone: 'chgnet-9' is not one of"):
        C.load(raw)


# --------------------------------------------------------------------------- the workflow
def tiny_config(data: Path) -> dict:
    """200 of the MP500 crystals; the PBE gap at n=50, two seeds: scratch CGCNN (2 epochs, a
    tiny network) against ridge and the MLP head on CHGNet's frozen crystal vectors, CHGNet's read-out
    fine-tuned (2 epochs) and ridge on SevenNet's crystal vectors (its own rule and env)."""
    return {
        "name": "chgnet-tiny",
        "dataset": {"source": "local", "path": str(data), "sample": {"n": 200, "seed": 0}},
        "split": {"test_fraction": 0.2, "test_max": 40, "val_fraction": 0.2, "val_min": 10, "seed": 42},
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
        "pretrain": [{"name": "chgnet", "backbone": "chgnet-0.3.0"}, {"name": "sevennet", "backbone": "sevennet-0"}],
        "finetune": {
            "targets": [{"name": "gap", "property": "band_gap", "label": "PBE gap"}],
            "sizes": [50],
            "seeds": [0, 1],
            "baseline": "scratch",
            "modes": {
                "scratch": {},
                "chgnet_ridge": FROZEN,
                "chgnet_mlp": {**FROZEN, "estimator": "mlp"},
                "chgnet_readout": READOUT,
                "sevennet_ridge": SEVENNET,
            },
        },
    }


@pytest.mark.e2e
@needs_chgnet
@needs_sevenn
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed beside this interpreter")
def test_tiny_workflow_tests_chgnet_frozen_features_against_scratch(tmp_path):
    data = require_shared(MP500)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(data)))
    res = tmp_path / "results" / "chgnet-tiny"
    cmd = [
        str(SNAKEMAKE),
        "results/chgnet-tiny/stats/ttests.csv",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "2",
        "--configfile",
        str(cfg),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    took = time.perf_counter() - t0

    info = json.loads((res / "backbones" / "chgnet-0.3.0" / "embeddings.json").read_text())
    n_table = len(pd.read_parquet(res / "data" / "structures.parquet", columns=["material_id"]))
    assert 190 <= n_table <= 200 and info["n_structures"] == info["n_embedded"] == n_table
    assert info["package_version"] == "0.4.2" and info["licence"].startswith("BSD")
    cell = res / "finetune" / "gap" / "n50" / "chgnet_ridge"
    records = json.loads((cell / "metrics.json").read_text())
    assert [r["seed"] for r in records] == [0, 1]
    for r in records:
        assert r["pretrained"] == "chgnet" and r["family"] == "transfer" and r["features"] == "frozen"
        assert r["backbone"] == "chgnet-0.3.0" and r["backbone_package"] == "chgnet==0.4.2"
        assert r["backbone_licence"].startswith("BSD") and r["pretrain_property"] == "chgnet-0.3.0"
        assert r["n_features"] == 64 and r["n_train"] == 50 and np.isfinite(r["mae"]) and r["mae"] > 0
        assert r["best_val_mae"] > 0 and "source_checkpoint" not in r
    assert not (res / "pretrain").exists()  # nothing pretrained
    scratch = json.loads((res / "finetune" / "gap" / "n50" / "scratch" / "metrics.json").read_text())
    assert [(r["n_train"], r["n_val"], r["n_test"]) for r in scratch] == [
        (r["n_train"], r["n_val"], r["n_test"]) for r in records
    ]
    test_ids = set(json.loads((res / "splits" / "gap.split.json").read_text())["test"])
    assert set(pd.read_parquet(cell / "predictions.parquet")["material_id"]) == test_ids
    tests = pd.read_csv(res / "stats" / "ttests.csv")
    row = tests[(tests["mode"] == "chgnet_ridge") & (tests["holm_family"] == "transfer_vs_scratch")]
    assert len(row) == 1 and row["n_pairs"].iloc[0] == 2
    # the source's two modes: validation data chooses between them, as for a CGCNN source's
    # (SevenNet has one mode here: nothing to choose)
    chosen = tests[tests["holm_family"] == "selected_vs_scratch"]
    assert list(chosen["pretrained"]) == ["chgnet"]
    assert chosen["mode"].iloc[0] in ("chgnet_ridge", "chgnet_mlp", "chgnet_readout")
    # the MLP head on the same vectors: same draws, an L2 penalty chosen by CV
    mlp = json.loads((res / "finetune" / "gap" / "n50" / "chgnet_mlp" / "metrics.json").read_text())
    assert [(r["n_train"], r["n_val"], r["n_test"], r["n_features"]) for r in mlp] == [
        (r["n_train"], r["n_val"], r["n_test"], r["n_features"]) for r in records
    ]
    assert all(
        r["model_kind"] == "mlp" and np.isfinite(r["mae"]) and "m__regressor__alpha" in r["best_params"] for r in mlp
    )
    # the read-out fine-tuned: same draws and test set, a checkpoint per seed, its atom features cached
    ro_cell = res / "finetune" / "gap" / "n50" / "chgnet_readout"
    readout = json.loads((ro_cell / "metrics.json").read_text())
    assert [(r["n_train"], r["n_val"], r["n_test"]) for r in readout] == [
        (r["n_train"], r["n_val"], r["n_test"]) for r in records
    ]
    for r in readout:
        assert r["features"] == "readout" and r["model_kind"] == "chgnet-0.3.0 read-out" and r["family"] == "transfer"
        assert r["backbone_lr_scale"] == 0.1 and r["reinit"] == "head" and r["epochs_run"] == 2
        assert r["n_params"] == 12_545 and np.isfinite(r["mae"]) and 1 <= r["best_epoch"] <= 2
        assert (ro_cell / "runs" / f"s{r['seed']}" / "model.pt").exists()
    assert set(pd.read_parquet(ro_cell / "predictions.parquet")["material_id"]) == test_ids
    atoms = pd.read_parquet(res / "backbones" / "chgnet-0.3.0" / "atoms_cache.parquet")
    assert 60 <= len(atoms) <= n_table and set(atoms["features"]) == {backbones.ATOM_FEATURES}
    assert len(tests[(tests["mode"] == "chgnet_readout") & (tests["holm_family"] == "transfer_vs_scratch")]) == 1

    # SevenNet: its own rule (embed_backbone_sevenn, envs/sevenn.yaml), 128-wide vectors, the same draws
    sev = json.loads((res / "backbones" / "sevennet-0" / "embeddings.json").read_text())
    assert sev["n_embedded"] == n_table and sev["width"] == 128 and sev["package_version"] == "0.13.0"
    assert sev["licence"].startswith("MIT") and (res / "benchmarks" / "backbones" / "sevennet-0.tsv").exists()
    sev_records = json.loads((res / "finetune" / "gap" / "n50" / "sevennet_ridge" / "metrics.json").read_text())
    assert [(r["n_train"], r["n_val"], r["n_test"]) for r in sev_records] == [
        (r["n_train"], r["n_val"], r["n_test"]) for r in records
    ]
    assert all(r["n_features"] == 128 and r["backbone"] == "sevennet-0" for r in sev_records)

    # the embedding job run again: every vector comes from the cache, the cell's numbers are the same
    proc = subprocess.run([*cmd, "--forcerun", "embed_backbone"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    again = json.loads((res / "backbones" / "chgnet-0.3.0" / "embeddings.json").read_text())
    assert (again["n_embedded"], again["n_cached"]) == (0, n_table)
    rerun = json.loads((cell / "metrics.json").read_text())
    assert [r["mae"] for r in rerun] == [r["mae"] for r in records]
    assert [r["mae"] for r in json.loads((ro_cell / "metrics.json").read_text())] == [r["mae"] for r in readout]
    print(
        f"tiny CHGNet workflow: {took:.0f} s (embedding {info['seconds']:.0f} s); "
        f"test MAE ridge on CHGNet {np.mean([r['mae'] for r in records]):.3f}, "
        f"scratch {np.mean([r['mae'] for r in scratch]):.3f} eV"
    )


# --------------------------------------------------------------------------- SevenNet
@needs_sevenn
def test_sevennet_vectors_are_its_read_out_input_averaged(crystals):
    """Row i is the mean over the crystal's atoms of what SevenNet's energy read-out reads
    (the input of ``reduce_input_to_hidden``), captured from SevenNet's own ASE calculator while
    it computes the energy; the same vector whatever batch the crystal is embedded in."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.calculator import SevenNetCalculator

    from tlcgcnn.data.table import to_structure

    ours = backbones.embed(crystals.iloc[:4], "sevennet-0", device="cpu", threads=2, progress=False, batch_size=3)
    X = ours[backbones.feature_columns(128)].to_numpy()
    assert X.shape == (4, 128) and np.isfinite(X).all() and ours.attrs["backbone"] == "sevennet-0"
    calc = SevenNetCalculator("7net-0", device="cpu")
    seen: list[np.ndarray] = []
    calc.model._modules["reduce_input_to_hidden"].register_forward_pre_hook(
        lambda _module, args: seen.append(args[0]["x"].detach().double().numpy().copy())
    )
    for i in range(4):
        atoms = AseAtomsAdaptor.get_atoms(to_structure(crystals.iloc[i]))
        atoms.calc = calc
        assert np.isfinite(atoms.get_potential_energy())
        assert seen[-1].shape == (len(atoms), 128)
        assert np.allclose(X[i], seen[-1].mean(axis=0), rtol=1e-4, atol=1e-5), i
    alone = backbones.embed(crystals.iloc[2:3], "sevennet-0", device="cpu", threads=2, progress=False)
    assert np.allclose(alone[backbones.feature_columns(128)].to_numpy()[0], X[2], rtol=1e-5, atol=1e-6)


@needs_sevenn
def test_a_supercell_gets_the_sevennet_vector_of_its_cell(crystals):
    from tlcgcnn.data.table import to_structure

    s = to_structure(crystals.iloc[1])
    big = s.copy()
    big.make_supercell([1, 2, 2])
    X = backbones.embed({"cell": s, "1x2x2": big}, "sevennet-0", device="cpu", threads=2, progress=False)
    X = X[backbones.feature_columns(128)].to_numpy()
    assert np.allclose(X[1], X[0], rtol=1e-4, atol=1e-5)


def test_the_sevennet_backbone_serves_frozen_modes_not_the_chgnet_readout(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "sevenn" else real(name, *a))
    raw = _raw(sevennet_ridge=SEVENNET)
    raw["pretrain"].append({"name": "sevennet", "backbone": "sevennet-0"})
    cfg = C.load(raw)
    assert "sevennet-0" in cfg.backbone_names and cfg.cell("gap_nonmetal", 25, "sevennet_ridge").kind == "frozen"
    raw["finetune"]["modes"]["sevennet_readout"] = {"pretrained": "sevennet", "features": "readout"}
    with pytest.raises(C.ConfigError, match="readout fine-tunes CHGNet's read-out MLP; backbone sevennet-0"):
        C.load(raw)
    assert backbones.get("sevennet-0").licence.startswith("MIT") and backbones.get("sevennet-0").width == 128
