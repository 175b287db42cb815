"""One vmapped ensemble step equals training the members one by one (BatchNorm included)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import ROOT

from tlcgcnn.nn import build_model
from tlcgcnn.nn.graphs import GraphSet
from tlcgcnn.train import ensemble

CFG = {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 32}


def _graphs() -> GraphSet:
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 5, 2, 4, 6])
    offsets = torch.zeros(len(counts) + 1, dtype=torch.long)
    offsets[1:] = counts.cumsum(0)
    z = torch.randint(1, 90, (int(offsets[-1]),), generator=g)
    nbr = torch.cat([torch.randint(0, int(c), (int(c), 12), generator=g) for c in counts])
    dist = torch.rand(int(offsets[-1]), 12, generator=g) * 5 + 1
    return GraphSet(ids=None, z=z, nbr_idx=nbr, nbr_dist=dist, offsets=offsets)  # type: ignore[arg-type]


def _members(k: int) -> list[torch.nn.Module]:
    table = torch.rand(101, 92, generator=torch.Generator().manual_seed(1))
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_model(CFG, table))
    return out


def _tol(ref: torch.Tensor) -> float:
    return 1e-5 * float(ref.abs().max()) + 1e-6


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_ensemble_step_equals_members_one_by_one(optimizer: str) -> None:
    data = _graphs()
    batch = data.batch(torch.tensor([0, 2, 3, 4]))
    y = torch.randn(4, generator=torch.Generator().manual_seed(2))
    members = _members(3)
    ens = ensemble.Ensemble.from_models([copy.deepcopy(m) for m in members])

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.05, momentum=0.9)
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, eps=1e-3)  # eps >> float noise

    probe = ensemble.Ensemble.from_models([copy.deepcopy(m) for m in members]).train()
    out = probe(batch).detach()  # training-mode outputs (a separate copy: running stats move)
    torch.testing.assert_close(ensemble.ensemble_loss(out, y), ((out.squeeze(-1) - y) ** 2).mean(1).sum())
    losses = ensemble.train_step(ens, batch, y, make(ens.parameters()))
    grads = {n: p.grad for n, p in ens.params.items()}

    for k, model in enumerate(members):
        model.train()
        pred = model(batch)
        torch.testing.assert_close(out[k], pred.detach(), rtol=1e-5, atol=1e-6)
        loss = torch.nn.functional.mse_loss(pred.squeeze(-1), y)
        assert float(losses[k]) == pytest.approx(float(loss.detach()), rel=1e-5)
        opt = make(list(model.parameters()))
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            # absolute tolerance: some gradients are exactly zero in theory (a bias before BatchNorm)
            assert (grads[name][k] - p.grad).abs().max() <= _tol(p.grad), name
        opt.step()
        state = ens.member_state_dict(k)
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                assert (state[name] - t).abs().max() <= _tol(t) + 1e-5, name
            else:
                assert torch.equal(state[name], t), name  # num_batches_tracked


def test_ensemble_eval_and_member_round_trip() -> None:
    data = _graphs()
    batch = data.batch(torch.arange(5))
    members = _members(2)
    ens = ensemble.Ensemble.from_models(members)
    assert len(ens) == 2
    pred = ensemble.predict(ens, [batch])
    for k, model in enumerate(members):
        model.eval()
        torch.testing.assert_close(pred[k], model(batch).detach(), rtol=1e-5, atol=1e-6)
        rebuilt = ens.member(k, lambda: build_model(CFG, torch.zeros(101, 92)))
        rebuilt.eval()
        torch.testing.assert_close(rebuilt(batch).detach(), pred[k], rtol=1e-5, atol=1e-6)


def test_graphset_to_device_keeps_everything_resident() -> None:
    data = _graphs()
    moved = data.to("cpu")
    b = moved.batch(torch.tensor([1, 3]))
    assert all(t.device.type == "cpu" for t in (b.z, b.nbr_idx, b.nbr_dist, b.crystal, b.counts))


def test_tcmalloc_preload_setting(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """benchmarks/allocator.py (the benchmark's tcmalloc row)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("allocator", ROOT / "benchmarks" / "allocator.py")
    assert spec and spec.loader
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)

    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    env = {"LD_PRELOAD": "/x/other.so"}
    assert allocator.preload(env, str(lib)) == str(lib)
    assert allocator.preload(env, str(lib)) == str(lib)  # idempotent
    assert env["LD_PRELOAD"] == f"/x/other.so {lib}"
    assert allocator.preload({}, "0") is None
    monkeypatch.setenv(allocator.ENV_VAR, "off")
    assert allocator.tcmalloc_path() is None
    with pytest.raises(FileNotFoundError):
        allocator.tcmalloc_path(str(tmp_path / "missing.so"))
