"""Shared fixtures: small real-physics crystals, synthetic graphs, the shared MP data path."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from tlcgcnn.nn.graphs import GraphSet  # noqa: E402
from tlcgcnn.utils import fileio as io  # noqa: E402

ATOM_FEATURES = SRC / "tlcgcnn" / "features" / "atom_features.csv"
SHARED_DATA = Path(os.environ.get("TLCGCNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
MP500 = SHARED_DATA / "mp2018_random500.csv.gz"
# the runtime probe's cache (tlcgcnn.train.accel): one per test session, not the user's
os.environ.setdefault("TLCGCNN_CACHE", tempfile.mkdtemp(prefix="tlcgcnn-test-cache-"))


def require_shared(path: Path = MP500) -> Path:
    if not path.exists():
        pytest.skip(f"real Materials Project data not found at {path} (../shared/data is absent on this machine)")
    return path


def tiny_mp500_config(tmp_path: Path, name: str) -> tuple[dict, Path]:
    """``config/mp500.yaml`` renamed, reading a copy of the 500 crystals in ``tmp_path``, with
    a one-convolution CGCNN of width 16: a whole workflow in about a minute. Returns the
    config (to adjust and write) and the data copy."""
    import shutil

    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    cfg["name"] = name
    data = tmp_path / MP500.name
    shutil.copyfile(require_shared(MP500), data)
    cfg["dataset"]["path"] = str(data)
    cfg["model"] = {"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16}
    return cfg, data


@pytest.fixture
def mp500() -> Path:
    return require_shared(MP500)


@pytest.fixture
def nacl():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def bcc_fe():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])


def random_graphs(n: int = 40, m: int = 6, seed: int = 0) -> GraphSet:
    """``n`` crystals of 2-5 atoms with ``m`` random neighbours each (within the crystal)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, 6, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    z = rng.integers(1, 84, size=offsets[-1])
    nbr = np.concatenate([rng.integers(0, c, size=(c, m)) for c in counts])
    dist = rng.uniform(1.5, 6.0, size=(offsets[-1], m)).astype(np.float32)
    return GraphSet(
        ids=np.array([f"c{i}" for i in range(n)]),
        z=torch.as_tensor(z, dtype=torch.long),
        nbr_idx=torch.as_tensor(nbr, dtype=torch.long),
        nbr_dist=torch.as_tensor(dist),
        offsets=torch.as_tensor(offsets),
    )


def save_graphs(g: GraphSet, folder: Path, radius: float = 8.0) -> Path:
    """Write ``g`` in the featurize stage's shard format (one shard)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / "shard-00000.npz",
        z=g.z.numpy().astype(np.uint8),
        nbr_idx=g.nbr_idx.numpy().astype(np.uint16),
        nbr_dist=g.nbr_dist.numpy(),
        offsets=g.offsets.numpy(),
    )
    pd.DataFrame({"material_id": g.ids, "shard": 0, "position": np.arange(len(g))}).to_parquet(folder / "index.parquet")
    from dataclasses import asdict

    from tlcgcnn.features.featurize import FORMAT_VERSION, FeaturizeParams

    params = FeaturizeParams(radius=radius)
    io.write_json(
        folder / "manifest.json",
        {
            "format_version": FORMAT_VERSION,
            "params": asdict(params),
            "key": params.key(),
            "shards": ["shard-00000.npz"],
        },
    )
    return folder


@pytest.fixture
def graphs() -> GraphSet:
    return random_graphs()


@pytest.fixture
def atom_table():
    from tlcgcnn.features import atom_features

    return torch.from_numpy(atom_features.load_matrix(ATOM_FEATURES))


@contextlib.contextmanager
def copy_state_of_epoch(dest: Path, epoch: int = 0) -> Iterator[None]:
    """While open, the resumable training state written after ``epoch`` is also saved to
    ``dest``: resuming from it replays a run killed right after that epoch."""
    saved = torch.save

    def keep(obj, f, *args, **kwargs):
        saved(obj, f, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("epoch") == epoch:
            saved(obj, dest)

    torch.save = keep
    try:
        yield
    finally:
        torch.save = saved
