"""Attention graph convolution (CS230/Berkeley report variant of CGCNN).

Same embedding, Gaussian edge expansion, pooling and head as :class:`CGCNN`; the
convolution replaces CGCNN's per-feature sigmoid gate with a softmax attention over each
atom's neighbours:

    h_ij  = BN(W_s v_i + W_n v_j + W_e u_ij)            (A features, CGCNN uses 2A)
    α_ij  = softmax_j(a · LeakyReLU(h_ij))               (sums to 1 over the neighbours of i)
    v_i' = softplus(v_i + BN(Σ_j α_ij softplus(h_ij)))

The per-edge projection is A wide instead of 2A, so a layer has roughly half the weights of
a CGCNN layer of the same width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlcgcnn.nn.cgcnn import CGCNN, ModelConfig, batch_norm, edge_rows, gather_neighbors
from tlcgcnn.nn.graphs import Batch


@dataclass
class AttentionConfig(ModelConfig):
    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": "attention"}


class AttentionConvLayer(nn.Module):
    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        a = atom_fea_len
        self.lin_self = nn.Linear(a, a)
        self.lin_nbr = nn.Linear(a, a, bias=False)
        self.lin_edge = nn.Linear(nbr_fea_len, a, bias=False)
        self.score = nn.Linear(a, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(a)
        self.bn2 = nn.BatchNorm1d(a)

    def _edges(
        self, v: torch.Tensor, nbr_idx: torch.Tensor, edge: torch.Tensor, atom_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, m = nbr_idx.shape
        h = self.lin_self(v).unsqueeze(1) + gather_neighbors(self.lin_nbr(v), nbr_idx) + self.lin_edge(edge)
        return batch_norm(self.bn1, h.view(n * m, -1), edge_rows(atom_mask, m)).view(n, m, -1)

    def weights(
        self,
        v: torch.Tensor,
        nbr_idx: torch.Tensor,
        edge: torch.Tensor,
        edge_mask: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention weights α [atoms, neighbours]; each row sums to one (zero on padded
        self-loops; an atom whose neighbours are all padded gets no message)."""
        return self._alpha(self._edges(v, nbr_idx, edge, atom_mask), edge_mask)

    def _alpha(self, h: torch.Tensor, edge_mask: torch.Tensor | None = None) -> torch.Tensor:
        score = self.score(F.leaky_relu(h, 0.2)).squeeze(-1)
        if edge_mask is None:
            return torch.softmax(score, dim=1)
        alpha = torch.softmax(score.masked_fill(~edge_mask, -1e4), dim=1)
        return alpha * edge_mask.to(alpha.dtype)

    def forward(
        self,
        v: torch.Tensor,
        nbr_idx: torch.Tensor,
        edge: torch.Tensor,
        edge_mask: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self._edges(v, nbr_idx, edge, atom_mask)
        alpha = self._alpha(h, edge_mask)
        msg = (alpha.unsqueeze(-1) * F.softplus(h)).sum(dim=1)
        return F.softplus(v + batch_norm(self.bn2, msg, atom_mask))


class AttentionCGCNN(CGCNN):
    """CGCNN with :class:`AttentionConvLayer` convolutions (``model.kind: attention``)."""

    def __init__(self, config: ModelConfig, atom_table: torch.Tensor) -> None:
        super().__init__(config, atom_table)
        self.convs = nn.ModuleList(
            AttentionConvLayer(config.atom_fea_len, self.gauss.size) for _ in range(config.n_conv)
        )

    def attention_weights(self, batch: Batch) -> list[torch.Tensor]:
        """α of every layer for a batch (for inspection and tests)."""
        v = self.embedding(self.atom_table[batch.z])
        edge = self.gauss(batch.nbr_dist)
        out = []
        for conv in self.convs:
            out.append(conv.weights(v, batch.nbr_idx, edge, batch.edge_mask, batch.atom_mask))  # type: ignore[operator]
            v = conv(v, batch.nbr_idx, edge, batch.edge_mask, batch.atom_mask)
        return out
