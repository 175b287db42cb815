"""The gemmi fast path gives pymatgen's canonical arrays bit for bit, and falls back otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
from perf_data import mp_rows

from tlcgcnn.data import cif_fast, ingest, table

CIF_HEAD = """data_test
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   4.0
_cell_length_b   4.0
_cell_length_c   4.0
_cell_angle_alpha   90.0
_cell_angle_beta   90.0
_cell_angle_gamma   90.0
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
"""


def _assert_same(a: dict, b: dict) -> None:
    assert a["formula"] == b["formula"] and a["nsites"] == b["nsites"]
    for key in ("lattice", "atomic_numbers", "frac_coords"):
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key])


def test_gemmi_equals_pymatgen_on_real_cifs() -> None:
    cifs = mp_rows(120)["cif"]
    fast_count = 0
    for cif in cifs:
        fast = cif_fast.parse_p1_cif(cif)
        if fast is None:
            continue
        fast_count += 1
        _assert_same(fast, table.structure_arrays(ingest.parse_structure(cif)))
    assert fast_count >= 0.9 * len(cifs)


def test_snapping_wrapping_and_species_order_match_pymatgen() -> None:
    # O listed before Na (pymatgen sorts by electronegativity), 0.33333 snaps to 1/3, -0.25 wraps
    cif = CIF_HEAD + "  O  O0  0.33333  0.5  -0.25  1\n  Na  Na1  0.0  0.0  0.0  1\n  O  O2  0.66667  0.1  0.7  1\n"
    fast = cif_fast.parse_p1_cif(cif)
    assert fast is not None
    assert fast["atomic_numbers"].tolist() == [11, 8, 8]
    _assert_same(fast, table.structure_arrays(ingest.parse_structure(cif)))


def test_unsupported_cifs_fall_back_to_pymatgen() -> None:
    partial = CIF_HEAD + "  Na  Na0  0.0  0.0  0.0  0.5\n"
    uncertain = CIF_HEAD + "  Na  Na0  0.0(1)  0.0  0.0  1\n"
    symmetric = (
        CIF_HEAD.replace("  1  'x, y, z'", "  1  'x, y, z'\n  2  '-x, -y, -z'") + "  Na  Na0  0.1  0.0  0.0  1\n"
    )
    noble = CIF_HEAD + "  Ar  Ar0  0.0  0.0  0.0  1\n"
    for cif in (partial, uncertain, symmetric, noble, "not a cif", ""):
        assert cif_fast.parse_p1_cif(cif) is None


def test_ingest_results_identical_with_and_without_fast_path() -> None:
    rows = mp_rows(120).iloc[:50].copy()
    overlap = CIF_HEAD + "  Na  Na0  0.0  0.0  0.0  1\n  Cl  Cl1  0.01  0.0  0.0  1\n"
    partial = CIF_HEAD + "  Na  Na0  0.0  0.0  0.0  0.5\n"
    extra = pd.DataFrame({"material_id": ["bad-1", "bad-2"], "cif": [overlap, partial]})
    raw = pd.concat([rows, extra], ignore_index=True)
    outs = []
    for parser in ("auto", "pymatgen"):
        out, report, _ = ingest.ingest_frame(raw, ingest.IngestOptions(cif_parser=parser), progress=False)
        outs.append((out, report))
    (a, ra), (b, rb) = outs
    pd.testing.assert_frame_equal(ra, rb)
    assert set(ra["reason"]) == {"overlapping_atoms", "partial_occupancy"}
    assert a["material_id"].tolist() == b["material_id"].tolist()
    for col in ("formula", "nsites"):
        assert a[col].tolist() == b[col].tolist()
    for col in ("lattice", "atomic_numbers", "frac_coords"):
        for x, y in zip(a[col], b[col], strict=True):
            np.testing.assert_array_equal(x, y)
