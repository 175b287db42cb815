"""Fixed-shape batches, compiled training steps and the runtime probe (tlcgcnn.train.accel,
tlcgcnn.nn.graphs.pad). The padded path must compute what the plain path computes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import copy_state_of_epoch, random_graphs

from tlcgcnn.nn import build_model, graphs
from tlcgcnn.nn.normalize import Normalizer
from tlcgcnn.train import accel
from tlcgcnn.train.loop import TrainConfig, fit


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(out.squeeze(-1), target)


SMALL = {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 16, "radius": 6.0, "gaussian_step": 0.5}


def test_the_bucket_ladder_holds_a_padding_atom_and_wastes_at_most_a_quarter():
    sizes = {graphs.bucket(n) for n in range(500, 5001)}
    assert len(sizes) <= 12, sorted(sizes)  # a handful of shapes for compiled code
    for n in range(1, 6000, 7):
        b = graphs.bucket(n)
        assert b >= n + 1 and b % 64 == 0
        if n > 256:
            assert (b - n) / b <= 0.25, (n, b)
    assert graphs.bucket(1000) == graphs.bucket(1001)  # nearby sizes share a shape


@pytest.mark.parametrize("kind", ["cgcnn", "attention"])
def test_a_padded_batch_gives_the_plain_batchs_outputs_gradients_and_statistics(atom_table, kind):
    g = random_graphs(n=24, m=6, seed=3)
    g.featurize = {"params": {"max_radius": 16.0}}
    torch.manual_seed(0)
    plain = build_model({**SMALL, "kind": kind}, atom_table)
    padded = copy.deepcopy(plain)
    index = torch.arange(20)
    b = g.batch(index)
    bp = g.batch(index, pad_atoms=graphs.bucket(int(b.z.numel())), pad_crystals=33)
    assert bp.z.numel() > b.z.numel() and bp.n == 33 and bp.n_crystals == 20
    out, out_p = plain(b), padded(bp)
    assert out_p.shape[0] == 33
    torch.testing.assert_close(out_p[:20], out, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out_p).all()  # empty crystal rows stay finite
    out.square().sum().backward()
    out_p[:20].square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), padded.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), c in zip(plain.named_buffers(), padded.buffers(), strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-6, msg=name)  # running mean / var
    plain.eval()
    padded.eval()
    torch.testing.assert_close(padded(bp)[:20], plain(b), rtol=1e-5, atol=1e-5)


def test_padding_needs_room_for_a_padding_crystal(atom_table):
    g = random_graphs(n=8)
    b = g.batch(torch.arange(8))
    with pytest.raises(ValueError, match="cannot pad"):
        graphs.pad(b, b.z.numel() + 4, 8)
    with pytest.raises(ValueError, match="cannot pad"):
        graphs.pad(b, b.z.numel(), 9)


def _fit(atom_table, g, compile_mode="none", amp="none", state=None, epochs=3):
    torch.manual_seed(0)
    model = build_model(SMALL, atom_table)
    y = torch.linspace(-1.0, 2.0, len(g))
    pos = torch.arange(len(g))
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, amp=amp, compile=compile_mode, patience=50)
    res = fit(
        model, g, y, pos[:30], pos[30:], Normalizer.fit(y[:30].numpy()), cfg, seed=0, progress=False, state_path=state
    )
    return model, res


def test_training_on_fixed_shape_batches_follows_the_plain_path(atom_table):
    """compile: buckets pads every batch (here without compiling, so the padding alone is
    tested): the same training trajectory as the plain path, to float rounding."""
    g = random_graphs(n=40, m=6, seed=1)
    g.featurize = {"params": {"max_radius": 16.0}}
    _, plain = _fit(atom_table, g)
    bucketed = accel.Runtime("none", "buckets")
    original = accel.step_model
    accel.step_model = lambda model, runtime: model  # the padded batches, eager
    try:
        import tlcgcnn.train.loop as loop

        real_resolve = accel.resolve
        loop.accel.resolve = lambda *a, **k: bucketed  # type: ignore[assignment]
        _, padded = _fit(atom_table, g)
    finally:
        accel.step_model = original
        loop.accel.resolve = real_resolve  # type: ignore[assignment]
    assert padded.runtime["compile"] == "buckets"
    for a, b in zip(plain.history["val_mae"], padded.history["val_mae"], strict=True):
        assert a == pytest.approx(b, rel=1e-3)


def test_auto_is_settled_by_a_probe_cached_per_host(atom_table, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCGCNN_CACHE", str(tmp_path / "cache"))
    g = random_graphs(n=40)
    calls = []
    real = accel.probe

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(accel, "probe", counted)
    _, first = _fit(atom_table, g, compile_mode="auto", amp="auto")
    assert len(calls) == 1
    cache = json.loads((tmp_path / "cache" / "runtime.json").read_text())
    (entry,) = cache.values()
    assert "none" in entry["seconds_per_step"]
    assert first.runtime["reason"].startswith("probe")
    assert first.runtime["compile"] == "none"  # a run of seconds is not worth a compilation
    assert first.precision == ("bf16" if first.runtime["amp"] == "bf16" else "fp32")
    _, second = _fit(atom_table, g, compile_mode="auto", amp="auto")
    assert len(calls) == 1 and second.runtime["reason"].startswith("cached probe")
    assert second.history["val_mae"] == first.history["val_mae"]  # same choice, same run
    _, configured = _fit(atom_table, g, compile_mode="none", amp="none")
    assert len(calls) == 1 and configured.runtime == {"amp": "none", "compile": "none", "reason": "configured"}


def test_the_probe_leaves_the_model_and_the_random_stream_alone(atom_table):
    g = random_graphs(n=40)
    torch.manual_seed(0)
    model = build_model(SMALL, atom_table)
    before = copy.deepcopy(model.state_dict())
    y = torch.randn(40)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    timed = accel.probe(model, g, torch.arange(30), y, _mse, 8)
    assert set(timed) <= {"none", "bf16"} and all(t > 0 for t in timed.values())
    assert torch.equal(torch.get_rng_state(), state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_resumed_run_keeps_the_runtime_it_started_with(atom_table, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCGCNN_CACHE", str(tmp_path / "cache"))
    g = random_graphs(n=40)
    state = tmp_path / "state.pt"
    with copy_state_of_epoch(tmp_path / "after0.pt"):
        _, full = _fit(atom_table, g, compile_mode="auto", amp="auto", state=state)
    st = torch.load(tmp_path / "after0.pt", weights_only=True)
    assert st["runtime"] == full.runtime
    # a different probe answer now must not change the resumed run's precision
    (tmp_path / "cache" / "runtime.json").unlink()
    monkeypatch.setattr(accel, "probe", lambda *a, **k: pytest.fail("a resumed run must not probe again"))
    _, resumed = _fit(atom_table, g, compile_mode="auto", amp="auto", state=tmp_path / "after0.pt")
    assert resumed.runtime == full.runtime
    assert resumed.history["val_mae"] == full.history["val_mae"]


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="unknown compile"):
        TrainConfig.from_dict({"compile": "fast"})


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["dynamic", "buckets"])
def test_compiled_training_reaches_the_plain_paths_validation_error(atom_table, mode, tmp_path, monkeypatch):
    """torch.compile (Inductor on the CPU): 6 epochs end within 2 % of the eager run's
    validation MAE (fusion reorders floating-point sums, so not bitwise)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "tlcgcnn-test-inductor"))
    g = random_graphs(n=40, m=6, seed=2)
    g.featurize = {"params": {"max_radius": 16.0}}
    _, plain = _fit(atom_table, g, epochs=6)
    _, compiled = _fit(atom_table, g, compile_mode=mode, epochs=6)
    assert compiled.runtime["compile"] == mode
    assert compiled.history["val_mae"][-1] == pytest.approx(plain.history["val_mae"][-1], rel=0.02)


def test_a_training_set_smaller_than_a_batch_is_probed_on_its_one_batch_again(atom_table, tmp_path, monkeypatch):
    """A set of 30 crystals at batch 64 has one batch: the probe times it repeatedly (it once
    timed nothing and cached an infinite step time, which then forced compilation)."""
    monkeypatch.setenv("TLCGCNN_CACHE", str(tmp_path / "cache"))
    g = random_graphs(n=40)
    torch.manual_seed(0)
    model = build_model(SMALL, atom_table)
    timed = accel.probe(model, g, torch.arange(30), torch.randn(40), _mse, 64)
    assert all(0 < t < float("inf") for t in timed.values())
    key = accel.probe_key(model, torch.device("cpu"), 64)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "runtime.json").write_text(json.dumps({key: {"seconds_per_step": {"none": float("inf")}}}))
    rt = accel.resolve(
        "auto",
        "auto",
        model=model,
        data=g,
        train_pos=torch.arange(30),
        y=torch.randn(40),
        loss_fn=_mse,
        batch_size=64,
        epochs=5,
    )
    assert rt.reason.startswith("probe") and rt.compile == "none"
