"""Training throughput and 6-epoch accuracy: the original CGCNN formulation against ours, eager
and compiled (``train.compile``, tlcgcnn.train.accel), side by side in one worker process per
thread count, on the same seeded sample and the same batches as ``benchmarks/run.py``.

    python benchmarks/training_speed.py --data ../shared/data/mp2018_36737.csv.gz --out benchmarks/training_speed.json

Variants (each trains the same model from the same weights):

* ``reference``: txie-93/cgcnn's formulation (benchmarks/reference_cgcnn.py), AdamW;
* ``ours_fp32`` / ``ours_bf16``: the pipeline's eager model, fused AdamW, fp32 / bf16 autocast;
* ``ours_compiled_fp32`` / ``ours_compiled_bf16``: the same under ``torch.compile(dynamic=True)``
  (what ``compile: dynamic`` and ``compile: auto`` on a long run use);
* with ``--buckets``: ``ours_buckets_bf16``, fixed-shape padded batches compiled per shape.

Compilation time is measured apart (the first epoch of a compiled variant, over a plain
one); the throughput is the median over ``--repeats`` interleaved epochs after it. Run alone
on the machine: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import run as R  # noqa: E402  (benchmarks/run.py: the sample, the reference, the epochs)

EAGER = ("reference", "ours_fp32", "ours_bf16")
COMPILED = ("ours_compiled_fp32", "ours_compiled_bf16")


def _epoch(
    model: Any, forward: Any, d: Any, opt: Any, gen: Any, batch_size: int, amp: bool, buckets: bool = False
) -> None:
    import torch

    from tlcgcnn.train import accel

    runtime = accel.Runtime("bf16" if amp else "none", "buckets" if buckets else "none")
    model.train()
    for b in d.train_perm(gen).split(batch_size):
        if b.numel() < 2:
            continue
        batch = accel.train_batch(d.graphs, b, runtime, batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = forward(batch)[: batch.n_crystals].float().squeeze(-1)
        loss = torch.nn.functional.mse_loss(out, d.y_norm[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _runners(d: Any, batch_size: int, variants: list[str]) -> dict[str, Callable[[Any], None]]:
    """One trainer per variant, each on its own copy of the same initial weights."""
    import torch

    out: dict[str, Callable[[Any], None]] = {}
    for name in variants:
        ours, reference = R._models(d, 0)
        if name == "reference":
            opt = torch.optim.AdamW(reference.parameters(), lr=1e-3)
            out[name] = lambda g, m=reference, o=opt: R.epoch_reference(m, d, o, g, batch_size)
            continue
        opt = R._our_optimizer(ours, 1e-3)
        amp = name.endswith("bf16")
        buckets = "buckets" in name
        forward = torch.compile(ours, dynamic=not buckets) if ("compiled" in name or buckets) else ours
        out[name] = lambda g, m=ours, f=forward, o=opt, a=amp, bk=buckets: _epoch(m, f, d, o, g, batch_size, a, bk)
    return out


def worker_throughput(work: Path, threads: int, repeats: int, batch_size: int, variants: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    d = R.TrainData(work)
    runners = _runners(d, batch_size, variants)
    first: dict[str, float] = {}
    for name in variants:  # first epoch: compilation (compiled variants), allocator and kernel warm-up
        t = time.perf_counter()
        runners[name](torch.Generator().manual_seed(99))
        first[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):  # interleaved, so load changes hit every variant alike
        for name in variants:
            t = time.perf_counter()
            runners[name](torch.Generator().manual_seed(r))
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "threads": threads,
        "train_crystals": d.n_train,
        "epoch_seconds": times,
        "crystals_per_s": {name: d.n_train / t for name, t in med.items()},
        "speedup_vs_reference": {name: med["reference"] / t for name, t in med.items()},
        "first_epoch_extra_s": {name: first[name] - med[name] for name in variants},
        "loadavg": list(os.getloadavg()),
    }


def worker_accuracy(work: Path, threads: int, epochs: int, batch_size: int, variants: list[str]) -> dict[str, Any]:
    """Validation MAE (eV/atom, ΔEf) after ``epochs`` epochs at lr 3e-3 (run.py's accuracy setting)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    d = R.TrainData(work)
    out: dict[str, Any] = {"epochs": epochs, "threads": threads, "lr": 3e-3}
    for name in variants:
        ours, reference = R._models(d, 0)
        if name == "reference":
            opt = torch.optim.AdamW(reference.parameters(), lr=3e-3)
        else:
            opt = R._our_optimizer(ours, 3e-3)
        amp = name.endswith("bf16")
        buckets = "buckets" in name
        forward = torch.compile(ours, dynamic=not buckets) if ("compiled" in name or buckets) else ours
        gen = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(epochs):
            if name == "reference":
                R.epoch_reference(reference, d, opt, gen, batch_size)
            else:
                _epoch(ours, forward, d, opt, gen, batch_size, amp, buckets)
        seconds = time.perf_counter() - t
        mae = R.val_mae_reference(reference, d) if name == "reference" else R.val_mae_ours(ours, d, amp=amp)
        out[name] = {"val_mae": mae, "train_seconds_incl_compile": seconds}
    return out


def _worker(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=HERE.parent
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "mp2018_36737.csv.gz")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", default="2", help="comma-separated thread counts of the throughput rows")
    ap.add_argument("--buckets", action="store_true", help="also fixed-shape batches compiled per shape (slow)")
    ap.add_argument("--out", type=Path, default=HERE / "training_speed.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--variants", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "throughput":
        res = worker_throughput(args.work, int(args.threads), args.repeats, args.batch_size, args.variants.split(","))
        print(json.dumps(res))
        return
    if args.worker == "accuracy":
        res = worker_accuracy(args.work, int(args.threads), args.epochs, args.batch_size, args.variants.split(","))
        print(json.dumps(res))
        return
    variants = [*EAGER, *COMPILED, *(["ours_buckets_bf16"] if args.buckets else [])]
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": R.machine(), "variants": variants}
    with tempfile.TemporaryDirectory(prefix="tlcgcnn-speed-") as tmp:
        work = Path(tmp)
        results["data"] = R.prepare(args.data, args.n, args.seed, work)
        common = ["--work", str(work), "--repeats", str(args.repeats), "--batch-size", str(args.batch_size)]
        results["throughput"] = {}
        for threads in args.threads.split(","):
            print(f"throughput, {threads} threads", flush=True)
            results["throughput"][threads] = _worker(
                ["--worker", "throughput", "--threads", threads, "--variants", ",".join(variants), *common]
            )
        print("accuracy", flush=True)
        results["accuracy"] = _worker(
            ["--worker", "accuracy", "--threads", "2", "--epochs", str(args.epochs), "--variants", ",".join(variants)]
            + common
        )
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(results, indent=2))
    for threads, tp in results["throughput"].items():
        for name in variants:
            acc = results["accuracy"][name]["val_mae"]
            print(
                f"{threads} threads {name:22s} {tp['crystals_per_s'][name]:7.0f} crystals/s "
                f"{tp['speedup_vs_reference'][name]:5.2f}x  first-epoch extra {tp['first_epoch_extra_s'][name]:6.1f} s"
                f"  6-epoch val MAE {acc:.4f}"
            )
    print(f"load {results['machine']['loadavg_start']} -> {results['machine']['loadavg_end']}; -> {args.out}")


if __name__ == "__main__":
    main()
