"""End-to-end: a CI-sized slice of config/paper-small.yaml on the real Materials Project data.

Every model (CGCNN, attention, MT-CGCNN pretraining, metal classifier), every transfer
scheme, the four baselines, the statistics and every figure of the study run once on a
seeded subsample of ../shared/data/mp2018_36737.csv.gz, with tiny epochs; the test checks
that each figure file exists and is non-empty and that the tables hold every kind of run.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tlcgcnn import config as C
from tlcgcnn.report.figures import requested

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "mp2018_36737.csv.gz"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

pytestmark = [pytest.mark.e2e, pytest.mark.shared_data]


def slice_config() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "paper-small.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["name"] = "paper-small-ci"
    cfg["dataset"]["path"] = str(DATA)
    cfg["dataset"]["sample"] = {
        "n": 300,
        "seed": 0,
        "keep": {"k_vrh": 120, "band_gap_hse": 60, "band_gap_gllbsc": 60, "dielectric_total": 0},
    }
    cfg["split"]["test_max"] = 60
    cfg["featurize"]["atom_features"] = str(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv")
    cfg["model"].update(atom_fea_len=16, h_fea_len=32)
    cfg["train"].update(epochs=3, patience=3)
    sizes = {"ef_all": 150, "eg_all": 150, "mt_all": 150}
    for p in cfg["pretrain"]:
        p["size"] = sizes.get(p["name"], 80 if p["name"].endswith("_400") else 40)
        p["train"] = {"epochs": 2}
    ft = cfg["finetune"]
    ft.update(sizes=[20, 40], seeds=[0, 1, 2], seeds_large=[0, 1], large_from=40)
    keep = {
        "gap_nonmetal": {},
        "metal_cls": {"sizes": [40], "modes": ["scratch", "eg_ft", "rf"]},
        "log_kvrh": {"sizes": [20], "modes": ["scratch", "mt_ft", "lasso"]},
        "eps_r": {"sizes": [20], "modes": ["scratch", "svr"]},
    }
    ft["targets"] = [{**t, **keep[t["name"]]} for t in ft["targets"] if t["name"] in keep]
    return cfg


@pytest.mark.skipif(not DATA.exists(), reason=f"real data not found at {DATA} (../shared/data beside the clone)")
def test_paper_small_slice(tmp_path):
    cfg_path = tmp_path / "paper-small-ci.yaml"
    cfg_path.write_text(yaml.safe_dump(slice_config(), allow_unicode=True))
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "2",
        "--configfile",
        str(cfg_path),
        "--quiet",
        "all",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=1200
    )
    took = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    res = tmp_path / "results" / "paper-small-ci"
    figures = [
        "ef_eg_density",
        "subset_scaling",
        "improvement",
        "freeze_heatmap",
        "protocol_sensitivity",
        "multitask",
        "multitask_sources",
        "pretrain_size",
        "models",
        "learning_curve",
        "roc",
    ]
    figures += [f"learning_curve_{t}" for t in ("gap_nonmetal", "metal_cls", "log_kvrh", "eps_r")]
    # the slice still has what every figure needs, and nothing else is drawn
    assert sorted(requested(C.load(slice_config()))) == sorted(figures)
    assert sorted(p.name for p in (res / "figures").iterdir()) == sorted(
        f"{n}.{ext}" for n in figures for ext in ("png", "pdf")
    )
    for name in figures:
        for ext in ("png", "pdf"):
            f = res / "figures" / f"{name}.{ext}"
            assert f.exists() and f.stat().st_size > 1000, f
    metrics = pd.read_csv(res / "stats" / "metrics.csv")
    assert set(metrics["family"]) == {"scratch", "transfer", "baseline"}
    assert {"cgcnn", "attention", "pls", "svr", "lasso", "rf"} <= set(metrics["model_kind"])
    assert metrics.query("task == 'classification'")["roc_auc"].notna().all()
    # MT-CGCNN's ROC curves: one seed-averaged curve per classification cell, its AUC the
    # records' mean (the records clip probabilities to [1e-7, 1 − 1e-7], which can tie saturated scores)
    roc = pd.read_csv(res / "stats" / "roc.csv")
    cls = metrics.query("task == 'classification'")
    cells = roc.drop_duplicates(["size", "mode"]).set_index(["size", "mode"])
    assert len(cells) == len(cls.drop_duplicates(["size", "mode"])) and len(roc) == 101 * len(cells)
    auc = cls.groupby(["size", "mode"])["roc_auc"].mean()
    assert np.allclose(cells["auc_mean"].sort_index().to_numpy(), auc.sort_index().to_numpy(), atol=1e-3)
    assert roc.loc[roc["fpr"] == 1.0, "tpr"].eq(1.0).all()
    tests = pd.read_csv(res / "stats" / "ttests.csv")
    assert tests["p_holm"].notna().any() and set(tests["metric"]) == {"mae", "1-roc_auc"}
    assert set(tests["holm_family"]) == {
        "transfer_vs_scratch",
        "baseline_vs_scratch",
        "model_vs_scratch",
        "classification",
        "selected_vs_scratch",
    }
    # gap_nonmetal uses ef_all in six ways (five fine-tunings, frozen features + ridge): one
    # protocol chosen on validation data per size
    protocol = pd.read_csv(res / "stats" / "protocol.csv")
    ef = protocol[(protocol["target"] == "gap_nonmetal") & (protocol["pretrained"] == "ef_all")]
    assert (
        set(ef["mode"]) == {"ef_ft", "ef_freeze1", "ef_freeze2", "ef_freeze3", "ef_head", "ef_ridge"}
        and ef.groupby("size")["selected"].sum().eq(1).all()
    )
    pre = pd.read_csv(res / "stats" / "pretrain.csv")
    assert "mae_efermi" in pre.columns and set(pre["subset"]) == {"all", "metal", "nonmetal"}
    # MT-CGCNN vs single-task: mt_all and ef_all share a split (same size, seed, subset, labels)
    mt = pd.read_csv(res / "stats" / "multitask.csv")
    assert list(mt[["property", "mt_source", "st_source"]].itertuples(index=False, name=None)) == [
        ("formation_energy_per_atom", "mt_all", "ef_all")
    ]
    assert mt["mae_mt"].gt(0).all() and mt["n_test"].gt(0).all()
    for table in ("best_transfer", "improvement", "spearman", "classification", "models"):
        assert (res / "stats" / f"{table}.csv").stat().st_size > 10
    print(f"paper-small slice: {took:.0f} s")
