"""Model kinds: CGCNN and attention convolution share the Batch format; multi-task heads."""

from __future__ import annotations

import torch

from tlcgcnn.nn import AttentionCGCNN, build_model, count_parameters
from tlcgcnn.nn.attention import AttentionConvLayer
from tlcgcnn.nn.cgcnn import ConvLayer

CFG = {"atom_fea_len": 16, "n_conv": 3, "h_fea_len": 24, "radius": 6.0, "gaussian_step": 0.5}


def test_forward_backward_shapes(graphs, atom_table):
    batch = graphs.batch(torch.arange(len(graphs)))
    for kind in ("cgcnn", "attention"):
        for n_out in (1, 3):
            torch.manual_seed(0)
            model = build_model({**CFG, "kind": kind, "n_out": n_out}, atom_table)
            out = model(batch)
            assert out.shape == (len(graphs), n_out)
            out.sum().backward()
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert model.config.to_dict()["kind"] == kind


def test_parameter_counts(atom_table):
    a, b = CFG["atom_fea_len"], int(round(CFG["radius"] / CFG["gaussian_step"])) + 1
    cg = ConvLayer(a, b)
    att = AttentionConvLayer(a, b)
    # CGCNN: Linear(2A + B -> 2A) factored + 2 batch norms (2A and A wide)
    assert count_parameters(cg) == (a * 2 * a + 2 * a) + a * 2 * a + b * 2 * a + 2 * (2 * a) + 2 * a
    # attention: A-wide projections, one score vector, 2 batch norms of A
    assert count_parameters(att) == (a * a + a) + a * a + b * a + a + 2 * a + 2 * a
    full_cg = build_model({**CFG, "kind": "cgcnn"}, atom_table)
    full_att = build_model({**CFG, "kind": "attention"}, atom_table)
    assert count_parameters(full_att) < count_parameters(full_cg)
    assert isinstance(full_att, AttentionCGCNN)


def test_attention_weights_sum_to_one_per_atom(graphs, atom_table):
    torch.manual_seed(1)
    model = build_model({**CFG, "kind": "attention"}, atom_table).eval()
    batch = graphs.batch(torch.arange(len(graphs)))
    alphas = model.attention_weights(batch)
    assert len(alphas) == CFG["n_conv"]
    for alpha in alphas:
        assert alpha.shape == batch.nbr_idx.shape
        assert (alpha >= 0).all()
        torch.testing.assert_close(alpha.sum(dim=1), torch.ones(alpha.shape[0]))


def test_attention_is_not_uniform(graphs, atom_table):
    """The weights depend on the neighbours (a trivial softmax would give 1/M everywhere)."""
    torch.manual_seed(2)
    model = build_model({**CFG, "kind": "attention"}, atom_table).eval()
    alpha = model.attention_weights(graphs.batch(torch.arange(len(graphs))))[0]
    assert alpha.std() > 1e-4


def test_unknown_kind(atom_table):
    import pytest

    with pytest.raises(ValueError, match="unknown model kind"):
        build_model({**CFG, "kind": "transformer"}, atom_table)
