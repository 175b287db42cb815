"""The reference: CGCNN written the original way (Xie & Grossman 2018, github.com/txie-93/cgcnn).

* Featurization: pymatgen ``Structure.get_all_neighbors(r)``, each site's list sorted in
  Python, padded to M, distances expanded into Gaussians, one [n, M, 41] array per crystal.
* Batching: a per-sample Python collate (``collate_pool``) that concatenates padded
  per-crystal tensors and shifts neighbour indices by the running atom count.
* Convolution: z = v_i ⊕ v_j ⊕ u_ij concatenated per edge, then ``Linear(2A + B, 2A)``.
* Pooling: a Python list of per-crystal index tensors, ``mean`` per crystal, ``cat``.

Same hyper-parameters and parameter count as ``tlcgcnn.nn.cgcnn.CGCNN``;
:func:`copy_weights_from` maps our factored weights onto ``fc_full`` so that both compute
the same function (checked by the benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # atom_fea, nbr_fea, nbr_idx, target


# --------------------------------------------------------------------------- featurization


def gaussian_expand(distances: np.ndarray, dmin: float = 0.0, dmax: float = 8.0, step: float = 0.2) -> np.ndarray:
    """cgcnn's ``GaussianDistance.expand``: exp(-(d - μ)² / σ²), σ = step."""
    centers = np.arange(dmin, dmax + step, step)
    return np.exp(-((distances[..., np.newaxis] - centers) ** 2) / step**2)


def featurize_structure(
    structure: Any, radius: float = 8.0, max_num_nbr: int = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cgcnn's ``CIFData.__getitem__`` neighbour part: (nbr_idx [n,M], nbr_dist [n,M], gaussians [n,M,41]).

    Ties are broken by index after rounding distances to 1e-8 Å (the original sorts by
    distance only, which leaves tied neighbours in pymatgen's arbitrary order)."""
    all_nbrs = structure.get_all_neighbors(radius, include_index=True)
    all_nbrs = [sorted(nbrs, key=lambda x: (round(x.nn_distance, 8), x.index)) for nbrs in all_nbrs]
    nbr_fea_idx, nbr_fea = [], []
    for nbr in all_nbrs:
        if len(nbr) < max_num_nbr:  # the original pads with index 0 at radius + 1
            nbr_fea_idx.append([x.index for x in nbr] + [0] * (max_num_nbr - len(nbr)))
            nbr_fea.append([x.nn_distance for x in nbr] + [radius + 1.0] * (max_num_nbr - len(nbr)))
        else:
            nbr_fea_idx.append([x.index for x in nbr[:max_num_nbr]])
            nbr_fea.append([x.nn_distance for x in nbr[:max_num_nbr]])
    idx = np.array(nbr_fea_idx, dtype=np.int64)
    dist = np.array(nbr_fea, dtype=np.float64)
    return idx, dist, gaussian_expand(dist).astype(np.float32)


# --------------------------------------------------------------------------- batching


def make_samples(
    atom_table: torch.Tensor,
    z: Sequence[np.ndarray],
    nbr_idx: Sequence[np.ndarray],
    gaussians: Sequence[np.ndarray],
    targets: np.ndarray,
) -> list[Sample]:
    """Per-crystal tensors as cgcnn's dataset returns them (atom features looked up per crystal)."""
    return [
        (
            atom_table[torch.as_tensor(np.asarray(zi, dtype=np.int64))],
            torch.as_tensor(np.asarray(g, dtype=np.float32)),
            torch.as_tensor(np.asarray(ix, dtype=np.int64)),
            torch.tensor([float(t)]),
        )
        for zi, ix, g, t in zip(z, nbr_idx, gaussians, targets, strict=True)
    ]


def collate_pool(
    dataset_list: Sequence[Sample],
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]], torch.Tensor]:
    """cgcnn's ``collate_pool``, one sample at a time in Python."""
    batch_atom_fea, batch_nbr_fea, batch_nbr_fea_idx = [], [], []
    crystal_atom_idx, batch_target = [], []
    base_idx = 0
    for atom_fea, nbr_fea, nbr_fea_idx, target in dataset_list:
        n_i = atom_fea.shape[0]
        batch_atom_fea.append(atom_fea)
        batch_nbr_fea.append(nbr_fea)
        batch_nbr_fea_idx.append(nbr_fea_idx + base_idx)
        crystal_atom_idx.append(torch.LongTensor(np.arange(n_i) + base_idx))
        batch_target.append(target)
        base_idx += n_i
    return (
        (
            torch.cat(batch_atom_fea, dim=0),
            torch.cat(batch_nbr_fea, dim=0),
            torch.cat(batch_nbr_fea_idx, dim=0),
            crystal_atom_idx,
        ),
        torch.stack(batch_target, dim=0),
    )


# --------------------------------------------------------------------------- model


class ConvLayer(nn.Module):
    """cgcnn's ``ConvLayer``: concatenated z_ij then one ``Linear(2A + B, 2A)``."""

    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.nbr_fea_len = nbr_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.sigmoid = nn.Sigmoid()
        self.softplus1 = nn.Softplus()
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)
        self.softplus2 = nn.Softplus()

    def forward(self, atom_in_fea: torch.Tensor, nbr_fea: torch.Tensor, nbr_fea_idx: torch.Tensor) -> torch.Tensor:
        n, m = nbr_fea_idx.shape
        atom_nbr_fea = atom_in_fea[nbr_fea_idx, :]
        total_nbr_fea = torch.cat(
            [atom_in_fea.unsqueeze(1).expand(n, m, self.atom_fea_len), atom_nbr_fea, nbr_fea], dim=2
        )
        total_gated_fea = self.fc_full(total_nbr_fea)
        total_gated_fea = self.bn1(total_gated_fea.view(-1, self.atom_fea_len * 2)).view(n, m, self.atom_fea_len * 2)
        nbr_filter, nbr_core = total_gated_fea.chunk(2, dim=2)
        nbr_filter = self.sigmoid(nbr_filter)
        nbr_core = self.softplus1(nbr_core)
        nbr_sumed = torch.sum(nbr_filter * nbr_core, dim=1)
        nbr_sumed = self.bn2(nbr_sumed)
        return self.softplus2(atom_in_fea + nbr_sumed)


class CrystalGraphConvNet(nn.Module):
    """cgcnn's ``CrystalGraphConvNet`` (regression)."""

    def __init__(
        self,
        orig_atom_fea_len: int,
        nbr_fea_len: int,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        h_fea_len: int = 128,
        n_h: int = 1,
    ) -> None:
        super().__init__()
        self.embedding = nn.Linear(orig_atom_fea_len, atom_fea_len)
        self.convs = nn.ModuleList([ConvLayer(atom_fea_len, nbr_fea_len) for _ in range(n_conv)])
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.conv_to_fc_softplus = nn.Softplus()
        self.fcs = nn.ModuleList([nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1)])
        self.softpluses = nn.ModuleList([nn.Softplus() for _ in range(n_h - 1)])
        self.fc_out = nn.Linear(h_fea_len, 1)

    def forward(
        self,
        atom_fea: torch.Tensor,
        nbr_fea: torch.Tensor,
        nbr_fea_idx: torch.Tensor,
        crystal_atom_idx: list[torch.Tensor],
    ) -> torch.Tensor:
        atom_fea = self.embedding(atom_fea)
        for conv_func in self.convs:
            atom_fea = conv_func(atom_fea, nbr_fea, nbr_fea_idx)
        crys_fea = self.pooling(atom_fea, crystal_atom_idx)
        crys_fea = self.conv_to_fc(self.conv_to_fc_softplus(crys_fea))
        crys_fea = self.conv_to_fc_softplus(crys_fea)
        for fc, softplus in zip(self.fcs, self.softpluses, strict=True):
            crys_fea = softplus(fc(crys_fea))
        return self.fc_out(crys_fea)

    @staticmethod
    def pooling(atom_fea: torch.Tensor, crystal_atom_idx: list[torch.Tensor]) -> torch.Tensor:
        summed_fea = [torch.mean(atom_fea[idx_map], dim=0, keepdim=True) for idx_map in crystal_atom_idx]
        return torch.cat(summed_fea, dim=0)


@torch.no_grad()
def copy_weights_from(ref: CrystalGraphConvNet, ours: nn.Module) -> None:
    """Load our factored CGCNN's weights into the reference: fc_full = [W_self | W_nbr | W_edge]."""
    ref.embedding.load_state_dict(ours.embedding.state_dict())
    for rc, oc in zip(ref.convs, ours.convs, strict=True):
        rc.fc_full.weight.copy_(torch.cat([oc.lin_self.weight, oc.lin_nbr.weight, oc.lin_edge.weight], dim=1))
        rc.fc_full.bias.copy_(oc.lin_self.bias)
        rc.bn1.load_state_dict(oc.bn1.state_dict())
        rc.bn2.load_state_dict(oc.bn2.state_dict())
    ref.conv_to_fc.load_state_dict(ours.conv_to_fc.state_dict())
    for rf, of in zip(ref.fcs, ours.fcs, strict=True):
        rf.load_state_dict(of.state_dict())
    ref.fc_out.load_state_dict(ours.fc_out.state_dict())
