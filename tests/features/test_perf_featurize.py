"""The fast neighbour search equals pymatgen's brute force (the original cgcnn way)."""

from __future__ import annotations

import numpy as np
import pytest
from perf_data import mp_rows

from tlcgcnn.data import table
from tlcgcnn.data.ingest import parse_structure
from tlcgcnn.features import featurize

PARAMS = featurize.FeaturizeParams()


def _check(structure) -> None:  # type: ignore[no-untyped-def]
    arrays = table.structure_arrays(structure)
    g = featurize.neighbor_graph(arrays["lattice"].reshape(3, 3), arrays["frac_coords"].reshape(-1, 3), PARAMS)
    idx, dist = featurize.brute_force_neighbors(structure, PARAMS.radius, PARAMS.max_neighbors)
    assert min(len(i) for i in idx) == PARAMS.max_neighbors
    assert featurize.same_neighbors(g.nbr_idx, g.nbr_dist, np.array(idx), np.array(dist, dtype=np.float32))
    assert g.nbr_dist.dtype == np.float32 and np.all(np.diff(g.nbr_dist, axis=1) >= 0)


def test_neighbors_equal_brute_force_on_real_crystals() -> None:
    for cif in mp_rows(60)["cif"].iloc[:25]:
        _check(parse_structure(cif))


def test_neighbors_equal_brute_force_on_a_skewed_cell() -> None:
    from pymatgen.core import Lattice, Structure

    lattice = Lattice.from_parameters(3.1, 4.7, 9.5, 61.0, 79.0, 113.0)
    s = Structure(lattice, ["Na", "Cl", "O"], [[0, 0, 0], [0.41, 0.27, 0.5], [0.7, 0.9, 0.13]])
    _check(s)


def test_sparse_cell_grows_radius_and_falls_back_exactly() -> None:
    from pymatgen.core import Lattice, Structure

    # one atom in a 9 Å cubic cell: only 6 neighbours within 9 Å -> the radius grows to 13.5
    s = Structure(Lattice.cubic(9.0), ["Fe"], [[0, 0, 0]])
    arrays = table.structure_arrays(s)
    g = featurize.neighbor_graph(arrays["lattice"].reshape(3, 3), arrays["frac_coords"].reshape(-1, 3), PARAMS)
    assert g.grown and g.padded_atoms == 0
    np.testing.assert_allclose(g.nbr_dist[0], [9.0] * 6 + [9.0 * np.sqrt(2)] * 6, rtol=1e-6)


def test_isolated_atom_is_padded_with_itself() -> None:
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(20.0), ["Fe"], [[0, 0, 0]])  # nothing within max_radius = 16
    g = featurize.neighbor_graph(np.asarray(s.lattice.matrix), np.asarray(s.frac_coords), PARAMS)
    assert g.padded_atoms == 1
    assert np.all(g.nbr_idx == 0) and np.all(g.nbr_dist == PARAMS.max_radius + 1.0)


def test_same_neighbors_accepts_ties_and_rejects_differences() -> None:
    idx = np.array([[1, 2, 3, 4]])
    dist = np.array([[1.0, 2.0, 2.0, 3.0]], dtype=np.float32)
    assert featurize.same_neighbors(idx, dist, np.array([[1, 3, 2, 4]]), dist)  # tie reordered
    assert featurize.same_neighbors(idx, dist, np.array([[1, 2, 3, 5]]), dist)  # cut group at slot M
    assert not featurize.same_neighbors(idx, dist, np.array([[2, 1, 3, 4]]), dist)
    assert not featurize.same_neighbors(idx, dist, idx, dist + np.float32(1e-3))


@pytest.mark.parametrize("n", [1, 5, 40])
def test_initial_radius_scales_with_density(n: int) -> None:
    lattice = np.eye(3) * 10.0
    r = featurize.initial_radius(lattice, n, 12)
    assert r == pytest.approx(featurize.INITIAL_RADIUS_FACTOR * (3 * 12 * 1000.0 / (4 * np.pi * n)) ** (1 / 3))
