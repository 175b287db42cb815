"""tlcgcnn.train.readout: CHGNet's read-out fine-tuned on a target, on its frozen atom features.

Real crystals (the first MP500 crystals, their PBE gaps) and the CHGNet 0.3.0 weights shipped in
chgnet==0.4.2; skipped, saying why, where either is absent. The workflow side (rule, records,
resume) is tests/features/test_backbones.py's tiny workflow."""

from __future__ import annotations

import importlib.util
import types

import numpy as np
import pandas as pd
import pytest
from conftest import MP500, require_shared

from tlcgcnn.features import backbones

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("chgnet") is None, reason="chgnet is not installed (pip install chgnet==0.4.2)"
)


@pytest.fixture(scope="module")
def crystals() -> pd.DataFrame:
    from tlcgcnn.data import ingest

    raw = pd.read_csv(require_shared(MP500), nrows=90)
    df, _, _ = ingest.ingest_frame(raw[["material_id", "band_gap", "cif"]], ingest.IngestOptions(), progress=False)
    return df


@pytest.fixture(scope="module")
def feats(crystals) -> dict[str, np.ndarray]:
    out, info = backbones.embed_atoms(crystals, device="cpu", threads=2, progress=False)
    assert info["n_embedded"] == len(crystals)
    return out


def test_the_captured_atom_features_are_what_chgnets_readout_reads(crystals, feats):
    """Their mean is the crystal vector, and CHGNet's own read-out MLP on them plus its
    composition reference gives CHGNet's predicted energy per atom."""
    import torch
    from chgnet.model import CHGNet

    from tlcgcnn.data.table import to_structure

    vectors = backbones.embed(crystals.iloc[:6], device="cpu", threads=2, progress=False)
    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    for i in range(6):
        s = to_structure(crystals.iloc[i])
        a = feats[crystals["material_id"].iloc[i]]
        assert a.shape == (len(s), 64) and a.dtype == np.float32
        assert np.allclose(a.mean(axis=0), vectors.iloc[i, 1:].to_numpy(float), atol=1e-6)
        with torch.no_grad():
            energy = float(model.mlp(torch.from_numpy(a)).mean()) + float(
                model.composition_model([model.graph_converter(s)])
            )
        assert energy == pytest.approx(float(model.predict_structure(s, task="e")["e"]), abs=1e-4)


def test_the_atom_cache_is_reused_and_keyed_by_structure(crystals, feats, tmp_path):
    cache = tmp_path / "atoms.parquet"
    ids = crystals["material_id"].tolist()[:5]
    first, info = backbones.embed_atoms(crystals, ids=ids, device="cpu", cache=cache, progress=False)
    assert info["n_embedded"] == 5 and list(first) == ids
    again, info = backbones.embed_atoms(crystals, ids=ids[::-1], device="cpu", cache=cache, progress=False)
    assert info["n_embedded"] == 0 and list(again) == ids[::-1]
    assert all(np.array_equal(again[i], first[i]) and np.array_equal(first[i], feats[i]) for i in ids)
    stale = pd.read_parquet(cache).assign(package_version="0.4.1")
    stale.to_parquet(cache)
    _, info = backbones.embed_atoms(crystals, ids=ids[:1], device="cpu", cache=cache, progress=False)
    assert info["n_embedded"] == 1  # another package version's features are not reused


def _bare(feats: dict[str, np.ndarray], reinit: str = "none", epochs: int = 60, scale: float = 1.0):
    from tlcgcnn.features.backbones import get
    from tlcgcnn.train.readout import ReadoutStrategy

    st = ReadoutStrategy.__new__(ReadoutStrategy)
    st.feats, st.threads, st.backbone = feats, 2, get("chgnet-0.3.0")
    mode = types.SimpleNamespace(name="chgnet_readout", reinit=reinit, backbone_lr_scale=scale)
    st.cell = types.SimpleNamespace(mode=mode)
    st.train = {"epochs": epochs, "batch_size": 16, "lr": 0.01, "patience": 15, "schedule": "cosine"}
    return st


def test_the_readout_learns_the_gap_and_is_deterministic(crystals, feats):
    ids = crystals["material_id"].tolist()
    y = crystals.set_index("material_id").loc[ids, "band_gap"].to_numpy(float)
    train, val, y_train, y_val = ids[:64], ids[64:], y[:64], y[64:]
    st = _bare(feats, reinit="head")
    fitted = st.fit(0, train, y_train, val, y_val)
    mean_mae = float(np.abs(y_train.mean() - y_val).mean())
    assert fitted["best_val_mae"] < 0.8 * mean_mae, (fitted["best_val_mae"], mean_mae)
    assert fitted["n_params"] == 12_545 and 1 <= fitted["best_epoch"] <= fitted["epochs_run"] <= 60
    pred = st.predict(fitted, val)
    assert float(np.abs(pred - y_val).mean()) == pytest.approx(fitted["best_val_mae"], rel=1e-6)
    again = _bare(feats, reinit="head").fit(0, train, y_train, val, y_val)
    assert again["history"] == fitted["history"]
    other = _bare(feats, reinit="head").fit(1, train, y_train, val, y_val)
    assert other["history"] != fitted["history"]


def test_reinit_head_starts_the_last_layer_afresh_and_keeps_the_rest():
    import torch

    from tlcgcnn.train.readout import _reset_head

    pre = _bare({})._pretrained_mlp()
    head = _bare({})._pretrained_mlp()
    _reset_head(head, seed=3)
    linears = [n for n, m in pre.named_modules() if isinstance(m, torch.nn.Linear)]
    for name, p in pre.state_dict().items():
        same = torch.equal(p, head.state_dict()[name])
        assert same == (not name.startswith(linears[-1] + ".")), name
