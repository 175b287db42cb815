from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tlcgcnn.data import table
from tlcgcnn.features.featurize import FeaturizeParams, brute_force_neighbors, featurize, neighbor_graph
from tlcgcnn.nn import graphs


def graph_of(s: Structure, **kw):
    return neighbor_graph(s.lattice.matrix, s.frac_coords, FeaturizeParams(**kw))


def test_rock_salt_shells(nacl):
    a = 5.64
    g = graph_of(nacl, max_neighbors=18)
    assert np.allclose(g.nbr_dist[:, :6], a / 2, atol=1e-5)
    assert np.allclose(g.nbr_dist[:, 6:18], a / np.sqrt(2), atol=1e-5)
    z = np.array([site.specie.Z for site in nacl])
    assert (z[g.nbr_idx[:, :6]] != z[:, None]).all()  # first shell: the other species
    assert (z[g.nbr_idx[:, 6:]] == z[:, None]).all()  # second shell: the same species
    g12 = graph_of(nacl)
    assert g12.nbr_idx.shape == (8, 12) and not g12.grown and g12.padded_atoms == 0


def test_bcc_shells(bcc_fe):
    a = 2.87
    g = graph_of(bcc_fe, max_neighbors=14)
    assert np.allclose(g.nbr_dist[:, :8], a * np.sqrt(3) / 2, atol=1e-5)
    assert np.allclose(g.nbr_dist[:, 8:14], a, atol=1e-5)


def _assert_same_as_brute_force(s: Structure, m: int = 12, radius: float = 8.0) -> None:
    g = graph_of(s, max_neighbors=m, radius=radius)
    ref_idx, ref_dist = brute_force_neighbors(s, radius, m)
    for i in range(len(s)):
        assert np.allclose(g.nbr_dist[i], ref_dist[i], atol=1e-5)
        shells = np.unique(np.round(ref_dist[i], 4))
        for d in shells[:-1]:  # ties: compare index multisets per shell; the last may be cut at m
            ours = sorted(g.nbr_idx[i][np.isclose(g.nbr_dist[i], d, atol=1e-4)])
            ref = sorted(np.array(ref_idx[i])[np.isclose(ref_dist[i], d, atol=1e-4)])
            assert ours == ref


def test_equal_to_pymatgen_brute_force(nacl, bcc_fe):
    _assert_same_as_brute_force(nacl, m=18)
    _assert_same_as_brute_force(bcc_fe, m=14)


def test_equal_to_brute_force_on_real_crystals(mp500, tmp_path):
    raw = pd.read_csv(mp500, nrows=15)
    for text in raw["cif"]:
        _assert_same_as_brute_force(Structure.from_str(text, fmt="cif"))


def test_sparse_cell_grows_radius_then_pads():
    lone = Structure(Lattice.cubic(9.0), ["Ar"], [[0, 0, 0]])
    g = graph_of(lone)  # 6 images at 9 Å: outside 8 Å, so the radius grows to 12 Å (6 + 12 at 12.7 > 12)
    assert g.grown and np.allclose(g.nbr_dist[0, :6], 9.0)
    vacuum = Structure(Lattice.cubic(30.0), ["Ar"], [[0, 0, 0]])
    g2 = graph_of(vacuum, max_radius=16.0)
    assert g2.padded_atoms == 1 and (g2.nbr_idx == 0).all() and np.allclose(g2.nbr_dist, 17.0)


def test_cache_key_tracks_parameters():
    assert FeaturizeParams().key() == FeaturizeParams().key()
    assert FeaturizeParams(radius=6.0).key() != FeaturizeParams().key()
    assert FeaturizeParams(max_neighbors=8).key() != FeaturizeParams().key()


def test_shards_round_trip_and_batches(tmp_path, nacl, bcc_fe):
    rows = []
    for i, s in enumerate([nacl, bcc_fe, nacl, bcc_fe, nacl]):
        rows.append({"material_id": f"c{i}", "source": "t", **table.structure_arrays(s)})
    df = pd.DataFrame(rows)
    table.write(df, tmp_path / "t.parquet")
    manifest = featurize(
        tmp_path / "t.parquet", tmp_path / "g", FeaturizeParams(), threads=2, shard_size=2, progress=False
    )
    assert manifest["crystals"] == 5 and manifest["atoms"] == 8 * 3 + 2 * 2 and len(manifest["shards"]) == 3
    gs = graphs.load(tmp_path / "g")
    assert list(gs.ids) == [f"c{i}" for i in range(5)]
    sub = graphs.load(tmp_path / "g", ["c3", "c0"])
    assert sub.counts.tolist() == [2, 8]
    import torch

    b = gs.batch(torch.tensor([1, 2]))
    assert b.z.shape == (10,) and b.nbr_idx.max() < 10 and b.crystal.tolist() == [0, 0] + [1] * 8
    # the batch's neighbours of crystal 2 are crystal 2's own atoms, shifted by 2
    direct = graph_of(nacl)
    assert torch.equal(b.nbr_idx[2:], torch.from_numpy(direct.nbr_idx.astype(np.int64)) + 2)
    assert torch.allclose(b.nbr_dist[2:], torch.from_numpy(direct.nbr_dist))


def test_incomplete_cache_is_refused(tmp_path):
    (tmp_path / "g").mkdir()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        graphs.load(tmp_path / "g")


# ------------------------------------------------------------------ isolated atoms (issue 10)
def _far_pair() -> Structure:
    """Two atoms 20 Å apart in a 40 Å cubic cell: no neighbour within max_radius 16 Å, not
    even their own periodic images (40 Å away)."""
    return Structure(Lattice.cubic(40.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0, 0]])


def test_isolated_atoms_are_found():
    g = graph_of(_far_pair())
    assert g.isolated_atoms == (0, 1) and g.padded_atoms == 2 and g.grown
    assert (g.nbr_idx == np.arange(2)[:, None]).all() and np.allclose(g.nbr_dist, 17.0)  # self-loops only
    # a bonded pair plus a lone atom 20 Å away: only the lone atom is isolated
    mixed = Structure(Lattice.cubic(40.0), ["Na", "Cl", "Ar"], [[0, 0, 0], [2.8 / 40, 0, 0], [0.5, 0.5, 0]])
    g = graph_of(mixed)
    assert g.isolated_atoms == (2,) and g.padded_atoms == 3  # the pair has 1 of 12 neighbours each
    # a short-of-M but connected crystal is padded, not isolated
    assert graph_of(Structure(Lattice.cubic(9.0), ["Ar"], [[0, 0, 0]])).isolated_atoms == ()


def _isolated_table(tmp_path, nacl):
    rows = [
        {"material_id": "ok-1", "source": "t", **table.structure_arrays(nacl)},
        {"material_id": "far-pair", "source": "t", **table.structure_arrays(_far_pair())},
        *({"material_id": f"ok-{i}", "source": "t", **table.structure_arrays(nacl)} for i in (2, 3, 4)),
    ]
    for r, v in zip(rows, (1.0, 2.0, 3.0, 4.0, 5.0), strict=True):
        r["band_gap"] = v
        r["is_metal"] = False
    table.write(pd.DataFrame(rows), tmp_path / "t.parquet")
    return tmp_path / "t.parquet"


def test_isolated_crystals_are_reported_and_kept(tmp_path, nacl):
    from tlcgcnn.features.featurize import isolated_ids

    path = _isolated_table(tmp_path, nacl)
    manifest = featurize(path, tmp_path / "g", FeaturizeParams(), shard_size=2, progress=False)
    iso = manifest["isolated"]
    assert iso["crystals"] == 1 and iso["atoms"] == 2 and iso["file"] == "isolated.csv"
    assert [e["material_id"] for e in iso["list"]] == ["far-pair"]
    assert (
        "2 of 2 atoms" in iso["list"][0]["reason"] and "no neighbour within max_radius 16" in iso["list"][0]["reason"]
    )
    report = pd.read_csv(tmp_path / "g" / "isolated.csv")
    assert list(report.columns) == ["material_id", "nsites", "isolated_atoms", "atoms", "reason"]
    assert report.to_dict("records")[0] | {"reason": ""} == {
        "material_id": "far-pair",
        "nsites": 2,
        "isolated_atoms": 2,
        "atoms": "0 1",
        "reason": "",
    }
    # the graphs do not depend on the policy: every crystal has its graph
    assert list(graphs.load(tmp_path / "g").ids) == ["ok-1", "far-pair", "ok-2", "ok-3", "ok-4"]
    assert isolated_ids(tmp_path / "g", "keep") == {}
    assert isolated_ids(tmp_path / "g", "drop") == {"far-pair": iso["list"][0]["reason"]}
    with pytest.raises(ValueError, match="keep"):
        isolated_ids(tmp_path / "g", "remove")
    # no isolated atoms: an empty report with the same columns
    clean = featurize(path, tmp_path / "g2", FeaturizeParams(max_radius=40.0), progress=False)
    assert clean["isolated"]["crystals"] == 0 and pd.read_csv(tmp_path / "g2" / "isolated.csv").empty


def test_dropped_isolated_crystals_leave_every_split(tmp_path, nacl):
    from tlcgcnn.data import split
    from tlcgcnn.features.featurize import isolated_ids
    from tlcgcnn.utils import fileio as io

    path = _isolated_table(tmp_path, nacl)
    featurize(path, tmp_path / "g", FeaturizeParams(), progress=False)
    cfg = {"metal_rule": "is_metal", "band_gap_threshold": 0.0, "test_fraction": 0.34, "test_max": None, "seed": 0}
    kept = split.run(str(path), str(tmp_path / "keep.json"), cfg, exclude=isolated_ids(tmp_path / "g", "keep"))
    assert "far-pair" in kept["all"] and kept["excluded"] == []
    dropped = split.run(str(path), str(tmp_path / "drop.json"), cfg, exclude=isolated_ids(tmp_path / "g", "drop"))
    assert "far-pair" not in dropped["all"] + dropped["nonmetal"] + dropped["metal"]
    assert [e["material_id"] for e in dropped["excluded"]] == ["far-pair"]
    spec = {"name": "gap", "property": "band_gap", "subset": "all"}
    sp = split.run(str(path), str(tmp_path / "gap.json"), cfg, subsets_path=str(tmp_path / "drop.json"), spec=spec)
    assert set(sp["test"]) | set(sp["pool"]) == {"ok-1", "ok-2", "ok-3", "ok-4"}
    # what training asks for has a graph (tlcgcnn.nn.graphs.load raises for a missing id)
    assert len(graphs.load(tmp_path / "g", [*sp["test"], *sp["pool"]]).ids) == 4
    assert io.read_json(tmp_path / "drop.json")["excluded"][0]["reason"].startswith("2 of 2 atoms")
