"""Composition / structure descriptors on a structure with known answers (rock-salt NaCl)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tlcgcnn.data import table
from tlcgcnn.features import descriptors


def _nacl(a=5.64):
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {"material_id": "nacl", **table.structure_arrays(s)}


def test_nacl_descriptors():
    df = pd.DataFrame([_nacl(), {**_nacl(4.0), "material_id": "small"}])
    d = descriptors.compute(df).set_index("material_id")
    row = d.loc["nacl"]
    assert row["mean_Z"] == pytest.approx(14.0)
    assert row["std_Z"] == pytest.approx(3.0)
    assert row["min_Z"] == 11 and row["max_Z"] == 17
    assert row["nsites"] == 8 and row["n_elements"] == 2
    assert row["volume_per_atom"] == pytest.approx(5.64**3 / 8)
    assert row["density"] == pytest.approx(2.16, abs=0.02)  # g/cm³, NaCl
    assert d.loc["small", "density"] > row["density"]
    assert not d.isna().any().any()
    assert list(d.columns) == descriptors.descriptor_names()


def test_element_table_has_no_gaps():
    t = descriptors.element_table()
    assert t.shape == (descriptors.MAX_Z + 1, len(descriptors.ELEMENT_PROPERTIES))
    assert np.isfinite(t[1:]).all()
    assert t[8, descriptors.ELEMENT_PROPERTIES.index("X")] == pytest.approx(3.44)
