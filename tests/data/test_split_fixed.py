"""split.test_ids: a committed list of test materials is honoured by every split (the model
zoo's held-out materials), in the package and through the split stage's entry point; and the
all-subsets training pool (pool_all) of a target with a train_pool: all mode."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from tlcgcnn import config as C
from tlcgcnn.data import split
from tlcgcnn.utils import fileio as io


def _table() -> pd.DataFrame:
    n = 100
    k = np.where(np.arange(n) % 4 == 0, np.nan, 50.0 + np.arange(n))
    return pd.DataFrame({"material_id": [f"mp-{i}" for i in range(n)], "k_vrh": k, "is_metal": np.arange(n) % 2 == 0})


def test_fixed_test_ids_are_the_test_set_and_never_in_the_pool(tmp_path):
    df = _table()
    subs = split.subsets(df)
    labelled = set(df.loc[df["k_vrh"].notna(), "material_id"])
    fixed = ["mp-1", "mp-2", "mp-4", "mp-7", "mp-90", "not-in-table"]  # mp-4 is unlabelled
    a = split.target_split(df, "k_vrh", subs["all"], 0.2, 1000, seed=3, test_ids=fixed)
    assert sorted(a["test"]) == ["mp-1", "mp-2", "mp-7", "mp-90"]
    assert set(a["pool"]) == labelled - set(a["test"]) and not set(a["pool"]) & set(fixed)
    # neither test_fraction nor test_max changes a fixed test set; the seed only orders the pool
    b = split.target_split(df, "k_vrh", subs["all"], 0.5, 1, seed=4, test_ids=fixed)
    assert sorted(b["test"]) == sorted(a["test"]) and sorted(b["pool"]) == sorted(a["pool"])
    # within a subset: only its labelled materials
    metal = split.target_split(df, "k_vrh", subs["metal"], 0.2, None, seed=3, test_ids=fixed)
    assert sorted(metal["test"]) == ["mp-2", "mp-90"]
    # the seeded default is different (and its size follows test_fraction)
    c = split.target_split(df, "k_vrh", subs["all"], 0.2, None, seed=3)
    assert len(c["test"]) == 15 and sorted(c["test"]) != sorted(a["test"])


def test_fixed_test_ids_that_leave_nothing_are_refused():
    df = _table()
    subs = split.subsets(df)
    with pytest.raises(ValueError, match="none of its 2 ids is among the 75 materials labelled with 'k_vrh'"):
        split.target_split(df, "k_vrh", subs["all"], 0.2, None, seed=0, test_ids=["mp-0", "x"])
    every = df.loc[df["k_vrh"].notna(), "material_id"].tolist()
    with pytest.raises(ValueError, match="nothing is left to train on"):
        split.target_split(df, "k_vrh", subs["all"], 0.2, None, seed=0, test_ids=every)


def test_id_file_format(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_text("# held out\nmp-1\n\n  mp-2  \n# comment\nmp-3\n")
    assert split.read_test_ids(p) == ["mp-1", "mp-2", "mp-3"]
    p.write_text("mp-1\nmp-2\nmp-1\n")
    with pytest.raises(ValueError, match=r"ids.txt: line 3: id 'mp-1' repeats line 1"):
        split.read_test_ids(p)
    p.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no ids"):
        split.read_test_ids(p)
    with pytest.raises(ValueError, match="does not exist"):
        split.read_test_ids(tmp_path / "missing.txt")


def test_split_stage_reads_the_configured_file(tmp_path):
    """The workflow entry (split.run) with the resolved split settings of a config that
    names a test-id file: the written split holds exactly those test ids."""
    df = _table()
    df.to_parquet(tmp_path / "structures.parquet")
    ids = tmp_path / "heldout.txt"
    ids.write_text("mp-5\nmp-6\nmp-9\n")
    raw = {
        "name": "t",
        "dataset": {"source": "local", "path": "x.csv"},
        "split": {"test_ids": str(ids)},
        "finetune": {
            "targets": [{"name": "log_k", "property": "k_vrh", "transform": "log10"}],
            "sizes": [10],
            "seeds": [0],
            "modes": {"scratch": {}},
        },
    }
    cfg = C.load(raw)
    settings = cfg.split_settings()
    assert settings["test_ids"] == str(ids) and C.load({**raw, "split": {}}).split_settings()["test_ids"] is None
    split.run(str(tmp_path / "structures.parquet"), str(tmp_path / "subsets.json"), settings)
    out = split.run(
        str(tmp_path / "structures.parquet"),
        str(tmp_path / "log_k.split.json"),
        settings,
        str(tmp_path / "subsets.json"),
        cfg.split_spec("log_k"),
    )
    written = io.read_json(tmp_path / "log_k.split.json")
    assert sorted(written["test"]) == ["mp-5", "mp-6", "mp-9"] == sorted(out["test"])
    assert written["test_ids_file"] == str(ids) and len(written["pool"]) == 75 - 3


def test_zoo_config_names_the_committed_heldout_file():
    cfg = C.load(ROOT / "config" / "zoo.yaml")
    assert cfg.split.test_ids == "resources/pretrained/heldout/mp2018.txt"
    assert len(split.read_test_ids(ROOT / cfg.split.test_ids)) > 1000


def test_labelled_with_gives_sources_of_different_properties_one_split():
    """Sources of different properties that list the same labelled_with share one split:
    materials missing any of those labels leave every one of them."""
    df = pd.DataFrame(
        {
            "material_id": [f"mp-{i}" for i in range(40)],
            "a": [float(i) for i in range(40)],
            "b": [np.nan if i in (3, 7) else float(i) for i in range(40)],
            "c": [np.nan if i == 11 else float(i) for i in range(40)],
        }
    )
    ids = df["material_id"].tolist()
    plain = split.target_split(df, "a", ids, 0.25, None, 42)
    assert plain["n_labelled"] == 40
    both = [split.target_split(df, p, ids, 0.25, None, 42, labelled_with=["a", "b", "c"]) for p in ("a", "b", "c")]
    assert all(s["n_labelled"] == 37 for s in both)
    assert both[0]["test"] == both[1]["test"] == both[2]["test"]
    assert both[0]["pool"] == both[1]["pool"] == both[2]["pool"]
    assert not {"mp-3", "mp-7", "mp-11"} & set(both[0]["test"] + both[0]["pool"])


# --------------------------------------------------------------------------- train_pool: all
def test_pool_all_is_every_subsets_labelled_material_but_the_test_set():
    """A non-metal target's pool_all: labelled metals and non-metals, never a test material,
    shuffled with the split's seed; the rest of the split is what it was without it."""
    df = _table()
    subs = split.subsets(df)
    labelled = set(df.loc[df["k_vrh"].notna(), "material_id"])
    metals = set(subs["metal"])
    plain = split.target_split(df, "k_vrh", subs["nonmetal"], 0.2, None, seed=3)
    wide = split.target_split(df, "k_vrh", subs["nonmetal"], 0.2, None, seed=3, all_ids=subs["all"])
    assert {k: v for k, v in wide.items() if k not in ("pool_all", "n_labelled_all")} == plain
    assert list(wide) == [*plain, "n_labelled_all", "pool_all"]
    test, pool_all = set(wide["test"]), wide["pool_all"]
    assert test and test <= set(subs["nonmetal"])
    assert set(pool_all) == labelled - test and len(pool_all) == len(set(pool_all)) == wide["n_labelled_all"] - len(
        test
    )
    assert set(pool_all) & metals == labelled & metals and set(wide["pool"]) < set(pool_all)
    again = split.target_split(df, "k_vrh", subs["nonmetal"], 0.2, None, seed=3, all_ids=subs["all"])
    other = split.target_split(df, "k_vrh", subs["nonmetal"], 0.2, None, seed=4, all_ids=subs["all"])
    assert again["pool_all"] == pool_all and other["pool_all"] != pool_all and pool_all != sorted(pool_all)
    # split.test_ids: every listed id stays out of pool_all, a metal one too (held-out materials)
    fixed = ["mp-1", "mp-2", "mp-7", "mp-90"]  # mp-2 and mp-90: labelled metals
    held = split.target_split(df, "k_vrh", subs["nonmetal"], 0.2, None, seed=3, test_ids=fixed, all_ids=subs["all"])
    assert sorted(held["test"]) == ["mp-1", "mp-7"]
    assert set(held["pool_all"]) == labelled - set(fixed)


def test_pool_ids_names_the_pool_a_mode_draws_from():
    sp = {"name": "t", "pool": ["a", "b"], "pool_all": ["a", "b", "c"], "test": ["d"]}
    assert split.pool_ids(sp) == split.pool_ids(sp, "subset") == ["a", "b"]
    assert split.pool_ids(sp, "all") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="split of 't' has no pool_all"):
        split.pool_ids({"name": "t", "pool": ["a"], "test": ["d"]}, "all")
    with pytest.raises(ValueError, match="unknown train_pool 'metal'"):
        split.pool_ids(sp, "metal")


def test_split_stage_writes_pool_all_only_for_a_target_with_such_a_mode(tmp_path):
    """Through the workflow entry and the config's spec: the non-metal target with a
    train_pool: all mode gets pool_all (crystals left out of the subsets file stay out);
    the other target's split file is what it was before train_pool existed."""
    df = _table()
    df.to_parquet(tmp_path / "structures.parquet")
    raw = {
        "name": "t",
        "dataset": {"source": "local", "path": "x.csv"},
        "finetune": {
            "targets": [
                {"name": "k_nm", "property": "k_vrh", "subset": "nonmetal", "modes": ["scratch", "scratch_all"]},
                {"name": "k_m", "property": "k_vrh", "subset": "metal", "modes": ["scratch"]},
            ],
            "sizes": [10],
            "seeds": [0],
            "modes": {"scratch": {}, "scratch_all": {"train_pool": "all"}},
        },
    }
    cfg = C.load(raw)
    assert cfg.split_spec("k_nm") == {"name": "k_nm", "property": "k_vrh", "subset": "nonmetal", "pool_all": True}
    assert cfg.split_spec("k_m") == {"name": "k_m", "property": "k_vrh", "subset": "metal"}
    settings = cfg.split_settings()
    subsets = str(tmp_path / "subsets.json")
    split.run(
        str(tmp_path / "structures.parquet"),
        subsets,
        settings,
        exclude={"mp-2": "isolated atoms", "mp-3": "isolated atoms"},
    )
    nm = split.run(
        str(tmp_path / "structures.parquet"),
        str(tmp_path / "k_nm.split.json"),
        settings,
        subsets,
        cfg.split_spec("k_nm"),
    )
    m = split.run(
        str(tmp_path / "structures.parquet"), str(tmp_path / "k_m.split.json"), settings, subsets, cfg.split_spec("k_m")
    )
    assert io.read_json(tmp_path / "k_nm.split.json") == json.loads(json.dumps(nm))
    labelled = set(df.loc[df["k_vrh"].notna(), "material_id"]) - {"mp-2", "mp-3"}
    assert (
        set(nm["pool_all"]) == labelled - set(nm["test"])
        and "mp-2" not in nm["pool_all"]
        and "mp-3" not in nm["pool_all"]
    )
    assert set(nm["pool_all"]) & set(m["pool"]) == set(m["pool"])  # the metals' pool lies inside
    # the metal target's file: no pool_all, and equal to the split made without any train_pool mode
    assert "pool_all" not in m and "n_labelled_all" not in m
    subs = io.read_json(subsets)
    before = split.target_split(
        df, "k_vrh", subs["metal"], settings["test_fraction"], settings["test_max"], settings["seed"]
    )
    assert {k: v for k, v in m.items() if k in before} == before and set(m) == {
        *before,
        "name",
        "subset",
        "test_ids_file",
    }
