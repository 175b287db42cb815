"""Crystal Graph Convolutional Neural Network (Xie & Grossman, PRL 120, 145301, 2018).

Embedding → ``n_conv`` edge-gated convolutions with batch norm and softplus → mean pooling
→ hidden layer(s) → output.

The convolution's linear layer acts on z_ij = v_i ⊕ v_j ⊕ u_ij. It is factored into
per-atom projections W_s v_i and W_n v_j, computed once per atom and gathered per edge,
plus the edge projection W_e u_ij. This is exactly the same function and the same
parameter count as the original ``Linear(2A + B, 2A)``, but it multiplies N atom vectors
instead of N×M concatenated edge vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlcgcnn.config import FeaturizeSettings, ModelSettings
from tlcgcnn.nn.graphs import Batch


@dataclass
class ModelConfig:
    """The network's architecture. Defaults: :class:`tlcgcnn.config.ModelSettings`' (written
    once, there), ``radius`` (the Gaussian expansion's range) the featurization radius of
    :class:`tlcgcnn.config.FeaturizeSettings`; ``n_out`` and ``orig_atom_fea_len`` (outputs,
    atom-feature width) are fixed by the target and the atom table."""

    atom_fea_len: int = ModelSettings.atom_fea_len
    n_conv: int = ModelSettings.n_conv
    h_fea_len: int = ModelSettings.h_fea_len
    n_h: int = ModelSettings.n_h
    radius: float = FeaturizeSettings.radius
    gaussian_step: float = ModelSettings.gaussian_step
    task_heads: int = ModelSettings.task_heads
    n_out: int = 1
    orig_atom_fea_len: int = 92

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"kind"}
        if unknown:
            raise ValueError(f"unknown model options {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": "cgcnn", **asdict(self)}
        if not self.task_heads:  # a checkpoint of the shared-output model is what it was before task heads
            del out["task_heads"]
        return out


class GaussianExpansion(nn.Module):
    """exp(-(d - μ_k)² / σ²) with μ_k = 0, step, ..., radius and σ = step."""

    def __init__(self, radius: float, step: float) -> None:
        super().__init__()
        n = int(round(radius / step)) + 1
        self.register_buffer("centers", torch.linspace(0.0, step * (n - 1), n), persistent=False)
        self.inv_var = 1.0 / step**2

    @property
    def size(self) -> int:
        return int(self.centers.numel())

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        x = (dist.unsqueeze(-1) - self.centers) ** 2 * self.inv_var
        # exp(-x) for x > 60 is < 1e-26: set it to exactly zero. The far tails would
        # otherwise underflow into denormal floats, which slow CPU matmuls down ~6x.
        return torch.exp(-x).masked_fill_(x > 60.0, 0.0)


class ConvLayer(nn.Module):
    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        a = atom_fea_len
        self.lin_self = nn.Linear(a, 2 * a)
        self.lin_nbr = nn.Linear(a, 2 * a, bias=False)
        self.lin_edge = nn.Linear(nbr_fea_len, 2 * a, bias=False)
        self.bn1 = nn.BatchNorm1d(2 * a)
        self.bn2 = nn.BatchNorm1d(a)

    def forward(
        self,
        v: torch.Tensor,
        nbr_idx: torch.Tensor,
        edge: torch.Tensor,
        edge_mask: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, m = nbr_idx.shape
        z = self.lin_self(v).unsqueeze(1) + gather_neighbors(self.lin_nbr(v), nbr_idx) + self.lin_edge(edge)
        z = batch_norm(self.bn1, z.view(n * m, -1), edge_rows(atom_mask, m)).view(n, m, -1)
        gate, core = z.chunk(2, dim=-1)
        msg = torch.sigmoid(gate) * F.softplus(core)
        if edge_mask is not None:  # padded self-loops carry no message
            msg = msg * edge_mask.unsqueeze(-1).to(msg.dtype)
        return F.softplus(v + batch_norm(self.bn2, msg.sum(dim=1), atom_mask))


def edge_rows(atom_mask: torch.Tensor | None, m: int) -> torch.Tensor | None:
    """The [atoms * M] row mask of the flattened edges of the atoms in ``atom_mask``."""
    return None if atom_mask is None else atom_mask.repeat_interleave(m)


def batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """``bn(x)``, with the batch statistics (training) taken over the ``rows`` that are True
    only: padding rows of a fixed-shape batch (:func:`tlcgcnn.nn.graphs.pad`) then change
    neither the real rows' outputs nor the running statistics. Statistics in fp32 (the
    running-variance update uses the unbiased variance, as ``nn.BatchNorm1d`` does)."""
    if rows is None or not bn.training:
        return bn(x)
    w = rows.to(torch.float32).unsqueeze(1)
    xf = x.float()
    count = w.sum()
    mean = (xf * w).sum(0) / count
    centred = xf - mean
    var = (centred * centred * w).sum(0) / count
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        momentum = 0.1 if bn.momentum is None else bn.momentum
        with torch.no_grad():
            bn.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
            bn.running_var.mul_(1 - momentum).add_(var.detach() * (count / (count - 1)) * momentum)
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
    out = centred * torch.rsqrt(var + bn.eps)
    if bn.affine:
        out = out * bn.weight + bn.bias
    return out.to(x.dtype)


def gather_neighbors(x: torch.Tensor, nbr_idx: torch.Tensor) -> torch.Tensor:
    """x[nbr_idx] as [atoms, M, features]. ``index_select`` on the flattened indices: the same
    values as advanced indexing, but its backward is a parallel ``index_add`` instead of the
    serial accumulating ``index_put`` (27 % of CPU training time before)."""
    n, m = nbr_idx.shape
    return x.index_select(0, nbr_idx.reshape(-1)).view(n, m, -1)


def mean_pool(v: torch.Tensor, crystal: torch.Tensor, counts: torch.Tensor, n: int) -> torch.Tensor:
    # out-of-place index_add: also works under torch.func.vmap (batched ensembles)
    # counts >= 1: the empty crystal rows of a padded batch (tlcgcnn.nn.graphs.pad) stay finite
    out = torch.zeros(n, v.shape[-1], dtype=v.dtype, device=v.device).index_add(0, crystal, v)
    return out / counts.clamp(min=1).unsqueeze(1).to(v.dtype)


class CGCNN(nn.Module):
    def __init__(self, config: ModelConfig, atom_table: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        if atom_table.shape[1] != config.orig_atom_fea_len:
            raise ValueError(
                f"atom feature table has {atom_table.shape[1]} columns, model expects {config.orig_atom_fea_len}"
            )
        self.register_buffer("atom_table", atom_table.float())
        self.gauss = GaussianExpansion(config.radius, config.gaussian_step)
        self.embedding = nn.Linear(config.orig_atom_fea_len, config.atom_fea_len)
        self.convs = nn.ModuleList(ConvLayer(config.atom_fea_len, self.gauss.size) for _ in range(config.n_conv))
        self.conv_to_fc = nn.Linear(config.atom_fea_len, config.h_fea_len)
        self.fcs = nn.ModuleList(nn.Linear(config.h_fea_len, config.h_fea_len) for _ in range(config.n_h - 1))
        if config.task_heads < 0:
            raise ValueError(f"task_heads must be >= 0, not {config.task_heads}")
        if config.task_heads:
            # MT-CGCNN's form: per output its own hidden layer(s) on the shared crystal vector
            self.task_heads = nn.ModuleList(task_head(config.h_fea_len, config.task_heads) for _ in range(config.n_out))
        else:
            self.fc_out = nn.Linear(config.h_fea_len, config.n_out)

    def crystal_features(self, batch: Batch) -> torch.Tensor:
        """The crystal vector the output layer reads: [batch.n, h_fea_len].

        Atom features after the convolutions, mean-pooled per crystal, then softplus →
        ``conv_to_fc`` → softplus and the ``n_h - 1`` hidden layers (each followed by
        softplus); ``forward`` is the output layer (``fc_out``, or each task head) on this.
        Its dimension is ``config.h_fea_len`` (128 by default) for either kind of convolution.
        The frozen-features transfer mode (:mod:`tlcgcnn.train.frozen`) fits its estimator on
        it; call in eval mode (batch norm then uses its running statistics, so a crystal's
        vector does not depend on its batch)."""
        v = self.embedding(self.atom_table[batch.z])
        edge = self.gauss(batch.nbr_dist)
        for conv in self.convs:
            v = conv(v, batch.nbr_idx, edge, batch.edge_mask, batch.atom_mask)
        pooled = mean_pool(v, batch.crystal, batch.counts, batch.n)
        h = F.softplus(self.conv_to_fc(F.softplus(pooled)))
        for fc in self.fcs:
            h = F.softplus(fc(h))
        return h

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.crystal_features(batch)
        if self.config.task_heads:
            return torch.cat([head(h) for head in self.task_heads], dim=1)
        return self.fc_out(h)

    def head_modules(self) -> list[nn.Module]:
        """Layers after the convolutions (re-initialised by 'reinit head' transfer modes)."""
        out = list(self.task_heads) if self.config.task_heads else [self.fc_out]
        return [self.conv_to_fc, *self.fcs, *out]


def task_head(width: int, hidden: int) -> nn.Sequential:
    """One output's head: ``hidden`` layers Linear(width, width) → softplus, then Linear(width, 1)."""
    layers: list[nn.Module] = []
    for _ in range(hidden):
        layers += [nn.Linear(width, width), nn.Softplus()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def build_model(config: ModelConfig | dict[str, Any], atom_table: torch.Tensor) -> CGCNN:
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    return CGCNN(cfg, atom_table)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
