from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tlcgcnn import atom_features
from tlcgcnn.featurize import FeaturizeParams, neighbor_graph
from tlcgcnn.graphs import GraphSet
from tlcgcnn.models import ModelConfig, build_model
from tlcgcnn.models.cgcnn import ConvLayer, count_parameters

from conftest import ROOT


def test_atom_feature_table_shape_and_determinism():
    shipped = pd.read_csv(atom_features.default_path())
    fresh = atom_features.build_table()
    assert fresh.shape == (100, 94) and atom_features.N_FEATURES == 92
    pd.testing.assert_frame_equal(fresh, shipped, check_dtype=False)
    mat = atom_features.load_matrix()
    assert mat.shape == (101, 92) and not mat[0].any()
    # each category is one-hot (or empty for unknown data): at most one bit per category
    start = 0
    for _, n in atom_features.CATEGORIES:
        assert (mat[1:, start : start + n].sum(1) <= 1).all()
        start += n
    assert not np.array_equal(mat[11], mat[19])  # Na and K differ (period)


def toy_graphs(structures) -> GraphSet:
    zs, idx, dist, counts = [], [], [], []
    for s in structures:
        g = neighbor_graph(s.lattice.matrix, s.frac_coords, FeaturizeParams())
        zs.append(np.array([site.specie.Z for site in s]))
        idx.append(g.nbr_idx)
        dist.append(g.nbr_dist)
        counts.append(len(s))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return GraphSet(
        np.array([f"c{i}" for i in range(len(structures))]),
        torch.from_numpy(np.concatenate(zs)).long(),
        torch.from_numpy(np.concatenate(idx)).long(),
        torch.from_numpy(np.concatenate(dist)),
        torch.from_numpy(offsets).long(),
    )


def test_forward_backward_shapes(nacl, bcc_fe, atom_table):
    gs = toy_graphs([nacl, bcc_fe, nacl])
    model = build_model(ModelConfig(atom_fea_len=16, n_conv=2, h_fea_len=32, n_h=2, n_out=3), atom_table)
    out = model(gs.batch(torch.arange(3)))
    assert out.shape == (3, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_factored_convolution_equals_concatenated_linear():
    torch.manual_seed(0)
    a, b, n, m = 8, 5, 7, 4
    conv = ConvLayer(a, b).eval()
    v, edge = torch.randn(n, a), torch.randn(n, m, b)
    nbr = torch.randint(0, n, (n, m))
    # the original: one Linear(2a + b, 2a) over v_i ⊕ v_j ⊕ u_ij
    w = torch.cat([conv.lin_self.weight, conv.lin_nbr.weight, conv.lin_edge.weight], dim=1)
    z = torch.cat([v.unsqueeze(1).expand(n, m, a), v[nbr], edge], dim=2) @ w.T + conv.lin_self.bias
    z = conv.bn1(z.view(n * m, -1)).view(n, m, -1)
    gate, core = z.chunk(2, dim=-1)
    ref = F.softplus(v + conv.bn2((torch.sigmoid(gate) * F.softplus(core)).sum(1)))
    assert torch.allclose(conv(v, nbr, edge), ref, atol=1e-5)
    assert sum(p.numel() for p in conv.parameters() if p.dim() == 2 or p.shape[0] == 2 * a) - 2 * 2 * a == (2 * a + b) * 2 * a + 2 * a


def test_parameter_count_matches_original_cgcnn(atom_table):
    # Xie & Grossman defaults: 92 -> 64 embedding, 3 convs with 41 Gaussians, 128 hidden
    model = build_model(ModelConfig(), atom_table)
    a, b, h = 64, 41, 128
    expected = (92 * a + a) + 3 * ((2 * a + b) * 2 * a + 2 * a + 2 * 2 * a + 2 * a) + (a * h + h) + (h + 1)
    assert count_parameters(model) == expected


def test_gaussians_have_no_denormals():
    from tlcgcnn.models.cgcnn import GaussianExpansion

    g = GaussianExpansion(8.0, 0.2)(torch.linspace(0, 17, 500))
    tiny = (g > 0) & (g < torch.finfo(torch.float32).tiny)
    assert g.shape == (500, 41) and not tiny.any()
