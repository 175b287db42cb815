"""Real crystals for the perf tests: the first rows of ../shared/data/mp2018_36737.csv.gz."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

MP2018 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp2018_36737.csv.gz"


@lru_cache(maxsize=2)
def _read(n: int) -> pd.DataFrame:
    return pd.read_csv(MP2018, nrows=n)


def mp_rows(n: int) -> pd.DataFrame:
    """``n`` real MP rows (material_id, labels, cif), or skip the test when the data is absent."""
    if not MP2018.exists():
        pytest.skip(f"real data {MP2018} is absent (it lives outside the repository, in ../shared/data)")
    return _read(n)
