from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tlcgcnn.features import atom_features
from tlcgcnn.features.featurize import FeaturizeParams, neighbor_graph
from tlcgcnn.nn import ModelConfig, build_model
from tlcgcnn.nn.cgcnn import ConvLayer, count_parameters
from tlcgcnn.nn.graphs import GraphSet


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
    assert (
        sum(p.numel() for p in conv.parameters() if p.dim() == 2 or p.shape[0] == 2 * a) - 2 * 2 * a
        == (2 * a + b) * 2 * a + 2 * a
    )


def test_parameter_count_matches_original_cgcnn(atom_table):
    # Xie & Grossman defaults: 92 -> 64 embedding, 3 convs with 41 Gaussians, 128 hidden
    model = build_model(ModelConfig(), atom_table)
    a, b, h = 64, 41, 128
    expected = (92 * a + a) + 3 * ((2 * a + b) * 2 * a + 2 * a + 2 * 2 * a + 2 * a) + (a * h + h) + (h + 1)
    assert count_parameters(model) == expected


def test_gaussians_have_no_denormals():
    from tlcgcnn.nn.cgcnn import GaussianExpansion

    g = GaussianExpansion(8.0, 0.2)(torch.linspace(0, 17, 500))
    tiny = (g > 0) & (g < torch.finfo(torch.float32).tiny)
    assert g.shape == (500, 41) and not tiny.any()


def _plain_conv(conv: ConvLayer, v: torch.Tensor, nbr_idx: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """CGCNN's convolution as first written: advanced-indexing gather, no mask."""
    n, m = nbr_idx.shape
    z = conv.lin_self(v).unsqueeze(1) + conv.lin_nbr(v)[nbr_idx] + conv.lin_edge(edge)
    z = conv.bn1(z.view(n * m, -1)).view(n, m, -1)
    gate, core = z.chunk(2, dim=-1)
    return F.softplus(v + conv.bn2((torch.sigmoid(gate) * F.softplus(core)).sum(dim=1)))


def test_fast_gather_equals_advanced_indexing_forward_and_backward():
    from tlcgcnn.nn.cgcnn import gather_neighbors

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 16, generator=gen, requires_grad=True)
    idx = torch.randint(0, 50, (50, 12), generator=gen)
    w = torch.randn(50, 12, 16, generator=gen)
    (gather_neighbors(x, idx) * w).sum().backward()
    g_fast = x.grad.clone()
    x.grad = None
    (x[idx] * w).sum().backward()
    assert torch.equal(gather_neighbors(x, idx), x[idx])
    torch.testing.assert_close(g_fast, x.grad, rtol=1e-6, atol=1e-6)


def test_fast_path_predictions_equal_plain_path(nacl, bcc_fe):
    """The model's convolution (fast gather) equals the plain formulation; bf16 autocast
    (on by default where the CPU computes bf16 natively) stays within bf16 tolerance of
    fp32; one fused AdamW step equals the unfused one to float rounding."""
    from tlcgcnn.train.loop import TrainConfig, make_optimizer

    torch.manual_seed(0)
    table = torch.from_numpy(atom_features.load_matrix())
    model = build_model({}, table).eval()
    g = toy_graphs([nacl, bcc_fe, nacl])
    batch = g.batch(torch.arange(3))
    fast = model(batch)
    v = model.embedding(model.atom_table[batch.z])
    edge = model.gauss(batch.nbr_dist)
    for conv in model.convs:
        v = _plain_conv(conv, v, batch.nbr_idx, edge)
    from tlcgcnn.nn.cgcnn import mean_pool

    h = F.softplus(model.conv_to_fc(F.softplus(mean_pool(v, batch.crystal, batch.counts, batch.n))))
    torch.testing.assert_close(fast, model.fc_out(h), rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(batch).float()
    torch.testing.assert_close(low, fast, rtol=0.05, atol=0.05)

    fused_model, plain_model = build_model({}, table), build_model({}, table)
    plain_model.load_state_dict(fused_model.state_dict())
    opts = [
        make_optimizer(list(fused_model.parameters()), TrainConfig(), torch.device("cpu")),
        torch.optim.AdamW(plain_model.parameters(), lr=1e-3, foreach=False),
    ]
    assert opts[0].defaults["fused"]
    for m, opt in zip((fused_model, plain_model), opts, strict=True):
        m.train()
        m(g.batch(torch.arange(3))).pow(2).mean().backward()
        opt.step()
    for (name, a), b in zip(fused_model.state_dict().items(), plain_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_padded_self_loops_carry_no_message():
    """Atoms with no neighbour within max_radius are padded with self-loops at max_radius + 1;
    the batch masks them, so where those loops point does not change the prediction."""
    from dataclasses import asdict

    from pymatgen.core import Lattice, Structure

    params = FeaturizeParams()
    isolated = Structure(Lattice.cubic(40.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    g = toy_graphs([isolated])
    assert (g.nbr_dist > params.max_radius).all()  # every edge is padding
    g.featurize = {"format_version": 1, "params": asdict(params), "key": params.key()}
    batch = g.batch(torch.arange(1))
    assert batch.edge_mask is not None and not batch.edge_mask.any()
    torch.manual_seed(0)
    for kind in ("cgcnn", "attention"):
        model = build_model({"kind": kind}, torch.from_numpy(atom_features.load_matrix())).eval()
        out = model(batch)
        batch.nbr_idx = 1 - batch.nbr_idx  # point the padding at the other atom
        torch.testing.assert_close(model(batch), out)
        batch.nbr_idx = 1 - batch.nbr_idx
        assert torch.isfinite(out).all()
