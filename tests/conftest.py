"""Shared fixtures: small real-physics crystals and the path to the shared MP data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

SHARED_DATA = Path(os.environ.get("TLCGCNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
MP500 = SHARED_DATA / "mp2018_random500.csv.gz"


def require_shared(path: Path = MP500) -> Path:
    if not path.exists():
        pytest.skip(f"real Materials Project data not found at {path} (../shared/data is absent on this machine)")
    return path


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


@pytest.fixture
def atom_table():
    import torch

    from tlcgcnn import atom_features

    return torch.from_numpy(atom_features.load_matrix(ROOT / "resources" / "atom_features.csv"))
