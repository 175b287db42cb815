"""Seeded subsample of a raw table (reduced runs keep the rare labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tlcgcnn.data.ingest import IngestError, sample_rows


def _raw(n=1000):
    rng = np.random.default_rng(0)
    k = np.where(rng.random(n) < 0.05, rng.uniform(10, 300, n), np.nan)
    eps = np.where(rng.random(n) < 0.02, rng.uniform(2, 50, n), np.nan)
    return pd.DataFrame({"material_id": [f"mp-{i}" for i in range(n)], "k_vrh": k, "diel_total_mp": eps, "cif": "x"})


def test_keeps_rare_labels_and_adds_n_rows():
    raw = _raw()
    out = sample_rows(raw, n=100, seed=1, keep={"dielectric_total": 0, "k_vrh": 20})
    assert out["diel_total_mp"].notna().sum() == raw["diel_total_mp"].notna().sum()  # 0 = all of them
    n_eps = int(raw["diel_total_mp"].notna().sum())
    n_k_only = int((raw["k_vrh"].notna() & raw["diel_total_mp"].isna()).sum())
    assert n_k_only > 20
    assert len(out) == n_eps + 20 + 100
    assert (out["k_vrh"].notna() & out["diel_total_mp"].isna()).sum() >= 20
    assert out["material_id"].is_unique
    assert (np.diff(out["_line"].to_numpy()) > 0).all()  # input order and row numbers kept


def test_is_reproducible_and_seeded():
    raw = _raw()
    a = sample_rows(raw, n=50, seed=3)
    b = sample_rows(raw, n=50, seed=3)
    c = sample_rows(raw, n=50, seed=4)
    assert a["material_id"].tolist() == b["material_id"].tolist() != c["material_id"].tolist()
    assert len(a) == 50


def test_unknown_property():
    with pytest.raises(IngestError, match="no column"):
        sample_rows(_raw(), n=5, keep={"band_gap_hse": 0})
