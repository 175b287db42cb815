"""Train the seeds of one cell as a single batched ensemble (``torch.func``).

K models of the same architecture are stacked parameter by parameter
(:func:`torch.func.stack_module_state`) and evaluated with one ``vmap`` over
:func:`torch.func.functional_call`: every layer runs once for all K members, as a batched
matmul, instead of K small launches. This pays off on a GPU, where one member alone leaves
most of the device idle; on CPU it is about break-even (see ``benchmarks/README.md``).

Members see the same batches and differ in their initialisation (their seeds). BatchNorm
runs in training mode per member: its batch statistics are computed over that member's
activations only and each member's running statistics are updated in its own slice of the
stacked buffers, so one ensemble step equals K separate steps (``tests/train/test_perf_ensemble.py``).
AdamW (and SGD) update each element independently, so one optimizer over the stacked
parameters is K independent optimizers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from tlcgcnn.nn.graphs import Batch


@dataclass
class Ensemble:
    """K stacked members: ``params`` / ``buffers`` map names to tensors of shape [K, ...]."""

    template: nn.Module  # the architecture, on the 'meta' device (holds no weights)
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    training: bool = field(default=True)

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> Ensemble:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        params, buffers = stack_module_state(list(models))  # params: fresh leaves with grad
        template = copy.deepcopy(models[0]).to("meta")
        return cls(template, params, buffers)

    def __len__(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    def train(self, mode: bool = True) -> Ensemble:
        self.training = mode
        self.template.train(mode)
        return self

    def eval(self) -> Ensemble:
        return self.train(False)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self, batch: Batch) -> torch.Tensor:
        """Outputs of every member on ``batch``: [K, crystals, n_out]."""

        def member(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.template, (p, b), (batch,))

        return vmap(member, in_dims=(0, 0), randomness="different")(self.params, self.buffers)

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s weights in the single model's ``state_dict`` layout (checkpoint format)."""
        keys = self.template.state_dict().keys()  # persistent entries only (no gauss.centers)
        stacked = {**self.params, **self.buffers}
        return {name: stacked[name][k].detach().clone() for name in keys}

    def member(self, k: int, build: Callable[[], nn.Module]) -> nn.Module:
        """A regular module holding member ``k`` (``build`` makes an instance of the architecture)."""
        model = build()
        model.load_state_dict(self.member_state_dict(k))
        return model


def ensemble_loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over members of each member's MSE: the gradient of member k is that of its own loss."""
    per_member = ((outputs.squeeze(-1) - target.unsqueeze(0)) ** 2).mean(dim=1)
    return per_member.sum()


def train_step(
    ens: Ensemble, batch: Batch, target: torch.Tensor, opt: torch.optim.Optimizer, amp: bool = False
) -> torch.Tensor:
    """One optimizer step of every member on ``batch``; returns the per-member losses [K]."""
    ens.train()
    with torch.autocast(device_type=target.device.type, dtype=torch.bfloat16, enabled=amp):
        out = ens(batch).float()
    per_member = ((out.squeeze(-1) - target.unsqueeze(0)) ** 2).mean(dim=1)
    opt.zero_grad(set_to_none=True)
    per_member.sum().backward()
    opt.step()
    return per_member.detach()


@torch.no_grad()
def predict(ens: Ensemble, batches: Sequence[Batch] | Callable[[], list[Batch]]) -> torch.Tensor:
    """Evaluation-mode outputs of every member, concatenated over ``batches``: [K, n, n_out]."""
    ens.eval()
    items = batches() if callable(batches) else batches
    return torch.cat([ens(b) for b in items], dim=1)
