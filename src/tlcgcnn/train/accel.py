"""How a training run uses its hardware: precision and compiled kernels, chosen by measurement.

Two settings of ``train:`` decide it:

* ``amp``: ``bf16`` autocast, ``none`` (fp32), or ``auto``;
* ``compile``: ``none`` (eager PyTorch, the reference path), ``dynamic`` (``torch.compile``
  with symbolic shapes: one compilation serves every batch, no padding), ``buckets``
  (batches padded to a few fixed shapes, :func:`tlcgcnn.nn.graphs.bucket`, each compiled
  once; the form CUDA graphs need), or ``auto``.

``auto`` is settled by a start-up probe (:func:`probe`) rather than by CPU flags: a few
training steps of the run's own model on its own batches, timed in fp32 and in bf16 (where
the device computes it), and the faster one kept. Compiling costs a minute or more on a CPU
the first time (Inductor's on-disk cache makes later processes fast); on the 2-core Intel
Xeon benchmark host (``benchmarks/training_speed.py``) fixed-shape buckets trained 1.65–1.75× as many
crystals a second as the eager bf16 model, symbolic shapes 1.35×. ``auto`` compiles
(``buckets``) when the eager estimate of the whole run is over :data:`COMPILE_AFTER_S`
seconds, so short fine-tuning cells stay eager. The probe's answer is cached per host, torch version, thread
count, device and model shape (:func:`cache_path`), so every run of a study on one machine
uses the same precision; a resumed run reuses the choice stored in its training state.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcgcnn.nn.graphs import Batch, GraphSet, bucket
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

AMP = ("auto", "none", "bf16")
COMPILE = ("auto", "none", "dynamic", "buckets")
# compile under `auto` when the eager run is estimated to take longer than this
COMPILE_AFTER_S = 600.0
PROBE_STEPS = 6
# compiled shapes allowed per run under `buckets` (the ladder has 11 rungs between 500 and 5,000 atoms)
MAX_SHAPES = 32


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a run was decided to use: ``amp`` 'bf16' or 'none', ``compile`` 'none',
    'dynamic' or 'buckets'; ``reason`` says how (configured, probe, cached probe)."""

    amp: str
    compile: str
    reason: str = "configured"

    @property
    def precision(self) -> str:
        return "bf16" if self.amp == "bf16" else "fp32"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA with bf16, a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def step_model(model: nn.Module, runtime: Runtime) -> Callable[[Batch], torch.Tensor]:
    """The callable a training step runs: the model, or its compiled form (``buckets``: one
    static compilation per bucket shape; Dynamo's limit of 8 recompilations per function is
    raised to :data:`MAX_SHAPES` so that every bucket of a large data set stays compiled)."""
    if runtime.compile == "none":
        return model
    if runtime.compile == "buckets":
        import torch._dynamo.config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, MAX_SHAPES)
    return torch.compile(model, dynamic=runtime.compile == "dynamic")  # type: ignore[return-value]


def train_batch(data: GraphSet, positions: torch.Tensor, runtime: Runtime, batch_size: int) -> Batch:
    """The batch of ``positions``: padded to its bucket (and to ``batch_size + 1`` crystal rows)
    under ``compile: buckets``, else as gathered."""
    if runtime.compile != "buckets":
        return data.batch(positions)
    counts = data.counts[positions.to(data.offsets.device)]
    return data.batch(positions, pad_atoms=bucket(int(counts.sum())), pad_crystals=batch_size + 1)


def cache_path() -> Path:
    """Where probe results live: ``$TLCGCNN_CACHE/runtime.json`` (default ``~/.cache/tlcgcnn``)."""
    root = os.environ.get("TLCGCNN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tlcgcnn")
    return Path(root) / "runtime.json"


def probe_key(model: nn.Module, device: torch.device, batch_size: int) -> str:
    """What a probe's answer depends on: chip, torch version, threads, device, model shape, batch."""
    from tlcgcnn.train.device import processor

    cfg = getattr(model, "config", None)
    shape = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else type(model).__name__
    return io.sha256_json(
        {
            "chip": processor(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": device.type,
            "model": shape,
            "batch_size": batch_size,
        }
    )[:16]


def _read_cache() -> dict[str, Any]:
    path = cache_path()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = _read_cache()
        cache[key] = entry
        io.write_json(path, cache)
    except OSError as err:  # a read-only home: the probe simply runs again next time
        log.warning("cannot write the runtime probe cache %s: %s", path, err)


def time_steps(
    model: nn.Module,
    data: GraphSet,
    batches: list[torch.Tensor],
    y: torch.Tensor,
    amp: str,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """Median seconds of one training step (forward, backward, AdamW) of a copy of ``model``
    on ``batches`` (the first two are warm-up)."""
    trial = copy.deepcopy(model)
    trial.train()
    params = [p for p in trial.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    dev = data.z.device
    times = []
    for i, pos in enumerate(batches):
        t = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = trial(data.batch(pos)).float()
        loss = loss_fn(out, y[pos])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times) if times else float("inf")


def probe(
    model: nn.Module,
    data: GraphSet,
    train_pos: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
) -> dict[str, float]:
    """Seconds per training step in fp32 and (where native) bf16, on the run's own batches.
    Leaves the model, its gradients and torch's global RNG as they were."""
    dev = data.z.device
    gen = torch.Generator().manual_seed(12345)
    perm = train_pos[torch.randperm(train_pos.numel(), generator=gen).to(train_pos.device)]
    chunks = [c for c in perm.split(batch_size) if c.numel() >= 2]
    if not chunks:
        raise ValueError("the runtime probe needs at least two training crystals")
    chunks = [chunks[i % len(chunks)] for i in range(PROBE_STEPS + 2)]  # a small set's batches again
    rng = torch.get_rng_state()
    try:
        out = {"none": time_steps(model, data, chunks, y, "none", loss_fn)}
        if bf16_native(dev):
            out["bf16"] = time_steps(model, data, chunks, y, "bf16", loss_fn)
    finally:
        torch.set_rng_state(rng)
    return out


def resolve(
    amp: str,
    compile_mode: str,
    *,
    model: nn.Module,
    data: GraphSet,
    train_pos: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    epochs: int,
) -> Runtime:
    """The :class:`Runtime` of a run: configured values kept, ``auto`` settled by the probe
    (cached per host; see the module docstring)."""
    if amp not in AMP:
        raise ValueError(f"unknown amp {amp!r}; choose from {AMP}")
    if compile_mode not in COMPILE:
        raise ValueError(f"unknown compile {compile_mode!r}; choose from {COMPILE}")
    dev = data.z.device
    if amp == "bf16" and not bf16_native(dev) and dev.type == "cpu":
        log.warning("amp: bf16 on a CPU without native bf16: emulated, usually slower than fp32")
    if amp != "auto" and compile_mode != "auto":
        return Runtime(amp, compile_mode)
    key = probe_key(model, dev, batch_size)
    cached = _read_cache().get(key)
    if cached is not None and not all(0 < float(v) < float("inf") for v in cached["seconds_per_step"].values()):
        cached = None  # an unusable entry (e.g. written by an older version): measure again
    if cached is None:
        timed = probe(model, data, train_pos, y, loss_fn, batch_size)
        cached = {"seconds_per_step": timed}
        _write_cache(key, cached)
        source = "probe"
    else:
        source = "cached probe"
    timed = {k: float(v) for k, v in cached["seconds_per_step"].items()}
    best_amp = min(timed, key=timed.__getitem__)
    chosen_amp = best_amp if amp == "auto" else amp
    steps = epochs * max(1, -(-train_pos.numel() // batch_size))
    eager_s = timed.get(chosen_amp, timed["none"]) * steps
    chosen_compile = compile_mode
    if compile_mode == "auto":
        chosen_compile = "buckets" if eager_s > COMPILE_AFTER_S else "none"
    text = ", ".join(f"{'fp32' if k == 'none' else k} {v * 1e3:.1f} ms" for k, v in sorted(timed.items()))
    reason = f"{source}: {text} a step; eager estimate {eager_s:.0f} s"
    log.info("runtime: amp %s, compile %s (%s)", chosen_amp, chosen_compile, reason)
    return Runtime(chosen_amp, chosen_compile, reason)
