"""The model zoo's held-out materials (resources/pretrained/heldout/): every test set of the
quickstart and of the papers' configurations lies inside them, recomputed with the
pipeline's own code (ingest, subsets, target_split) where the data is at hand."""

from __future__ import annotations

import pytest
from conftest import ROOT, SHARED_DATA, require_shared

from tlcgcnn.config import load
from tlcgcnn.data import heldout, split
from tlcgcnn.utils import fileio as io

STEM = ROOT / "resources" / "pretrained" / "heldout" / "mp2018"


@pytest.fixture(scope="module")
def ids() -> set[str]:
    return set(split.read_test_ids(STEM.with_suffix(".txt")))


@pytest.fixture(scope="module")
def record() -> dict:
    return io.read_json(STEM.with_suffix(".json"))


def test_the_list_is_the_union_of_the_recorded_test_sets(ids, record):
    files = {r["config_file"] for r in record["configs"]}
    assert {"config/config.yaml", "config/paper.yaml", "config/paper-small.yaml", "config/mp500.yaml"} <= files
    union = {i for r in record["configs"] for t in r["tests"].values() for i in t}
    assert union == ids and record["n_ids"] == len(ids)
    paper = next(r for r in record["configs"] if r["config_file"] == "config/paper.yaml")
    assert set(paper["tests"]) == set(load(ROOT / "config" / "paper.yaml").target_names)
    assert paper["input_sha256"] == "5b72e7542227ef6a4660877b7f4a4d8a6677766c0dade72bbb2f5fc3006f794f"


def test_quickstart_test_sets_lie_inside(ids, record):
    """Recomputed from the committed subset (no ../shared needed): the default config's test
    sets are the recorded ones, and held out."""
    got = heldout.fixed_test_sets(load(ROOT / "config" / "config.yaml"), root=ROOT)
    rec = next(r for r in record["configs"] if r["config_file"] == "config/config.yaml")
    assert got["tests"] == rec["tests"] and got["input_sha256"] == rec["input_sha256"]
    for target, test in got["tests"].items():
        assert len(test) > 100 and set(test) <= ids, target


def test_paper_small_test_sets_lie_inside(ids, record):
    require_shared(SHARED_DATA / "mp2018_36737.csv.gz")
    got = heldout.fixed_test_sets(load(ROOT / "config" / "paper-small.yaml"), threads=2, root=ROOT)
    rec = next(r for r in record["configs"] if r["config_file"] == "config/paper-small.yaml")
    assert got["tests"] == rec["tests"]
    assert all(set(t) <= ids for t in got["tests"].values())


def test_write_records_and_unions(tmp_path, mp500):
    res = heldout.write(["config/mp500.yaml"], tmp_path / "h", root=ROOT)
    written = split.read_test_ids(tmp_path / "h.txt")
    tests = res["configs"][0]["tests"]
    assert sorted(written) == sorted({i for t in tests.values() for i in t}) and res["n_ids"] == len(written)
    assert io.read_json(tmp_path / "h.json")["configs"][0]["config"] == "mp500"
    assert (tmp_path / "h.txt").read_text().startswith("# Held-out materials")


# configs fine-tuned from the zoo's sources, each with its targets that fine-tune no source
# (scratch and descriptor baselines only): nothing pretrained can have seen their test sets,
# which need not be held out of the zoo
ZOO_CONFIGS = {"paper-cpu": {"hse_gap_nm"}, "metal-roc-cpu": set()}


@pytest.mark.e2e  # ingests and splits the whole MP-2018 table: slow
@pytest.mark.parametrize("name", sorted(ZOO_CONFIGS))
def test_zoo_fine_tuning_test_sets_lie_inside(ids, record, name):
    """config/paper-cpu.yaml and config/metal-roc-cpu.yaml fine-tune from the zoo's sources:
    each fixed test set of a target with a transfer mode (recomputed from the full table) is
    held out of the zoo, and equals paper.yaml's test set of the same property and subset. The
    exempt targets use no source."""
    require_shared(SHARED_DATA / "mp2018_36737.csv.gz")
    cfg = load(ROOT / "config" / f"{name}.yaml")
    no_source = ZOO_CONFIGS[name]
    assert no_source <= set(cfg.target_names)
    for target in no_source:
        assert not [m for m in cfg.target_modes(target) if cfg.modes[m].pretrained], (
            f"{target} fine-tunes a source: it cannot be exempt"
        )
    assert set(cfg.transfer_target_names) == set(cfg.target_names) - no_source
    got = heldout.fixed_test_sets(cfg, threads=2, root=ROOT)
    paper = next(r for r in record["configs"] if r["config_file"] == "config/paper.yaml")
    paper_cfg = load(ROOT / "config" / "paper.yaml")
    same = {(t.property, t.subset): t.name for t in map(paper_cfg.target, paper_cfg.target_names)}
    for target, test in got["tests"].items():
        if target in no_source:
            assert len(test) > 100, target
            continue
        assert len(test) > 100 and set(test) <= ids, target
        t = cfg.target(target)
        assert test == paper["tests"][same[(t.property, t.subset)]], target
