"""Time to accuracy on the full MP-2018 table: ΔEf pretraining, ours vs the original CGCNN way.

Run from the repository root, alone on the machine (the load average is recorded):

    python benchmarks/time_to_accuracy.py --data ../shared/data/mp2018_36737.csv.gz \
        --out benchmarks/time_to_accuracy.json

Sections, each in its own worker process (so that peak RSS is per section):

* ``epochs``: seconds per training epoch on the whole training set at batch 64, 2 threads,
  for the pipeline as it was before the speed work (advanced-indexing gather, unfused AdamW,
  fp32), ours in fp32, ours as configured by default (``amp: auto``) and the reference
  (txie-93/cgcnn formulation: per-sample collate, padded Gaussian edges, concatenated linear
  layer; ``benchmarks/reference_cgcnn.py``).
* ``ours``: :func:`tlcgcnn.train.loop.fit` exactly as the pretrain rule runs it (validation every
  epoch), for ``--ours-epochs`` epochs with the configured schedule; validation MAE against
  wall seconds.
* ``reference``: the reference model and collate with the original code's default optimiser
  (SGD, lr 0.01, momentum 0.9, batch 256) for ``--ref-budget`` seconds; validation MAE
  against wall seconds.

The split is seeded: 1,000 test crystals held out (never used), 10 % of the rest validation,
the remainder training (32,167 crystals of the 36,737 after the one label set missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")

from run import TARGET, TrainData  # noqa: E402  (benchmarks/run.py: the same data loading)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def prepare(data: Path, work: Path, seed: int = 0) -> dict[str, Any]:
    """Ingest and featurize the whole table once (cached in ``work``); write the split."""
    from tlcgcnn.data import ingest, table
    from tlcgcnn.features import featurize

    work.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {}
    if not (work / "graphs" / "manifest.json").exists():
        raw = pd.read_csv(data, dtype={"material_id": str})
        t = time.perf_counter()
        df, _, summary = ingest.ingest_frame(raw, ingest.IngestOptions(), progress=False)
        info["ingest_s"] = time.perf_counter() - t
        table.write(df, work / "table.parquet")
        t = time.perf_counter()
        featurize.featurize(
            work / "table.parquet", work / "graphs", featurize.FeaturizeParams(), threads=2, progress=False
        )
        info["featurize_s"] = time.perf_counter() - t
    df = pd.read_parquet(work / "table.parquet", columns=["material_id", TARGET])
    df = df[df[TARGET].notna()]
    ids = df["material_id"].astype(str).to_numpy()[np.random.default_rng(seed).permutation(len(df))]
    test, rest = ids[:1000], ids[1000:]
    n_val = len(rest) // 10
    split = {"train": rest[n_val:].tolist(), "val": rest[:n_val].tolist(), "test": test.tolist()}
    (work / "split.json").write_text(json.dumps(split))
    info.update(
        {"crystals": int(len(df)), "train": len(split["train"]), "val": len(split["val"]), "test": len(split["test"])}
    )
    return info


def _legacy_pipeline(model: Any) -> None:
    """Restore the pre-speed-work convolution (advanced indexing, whose backward is a serial
    accumulating index_put) on ``model``, for the 'before' row."""
    import types

    import torch
    from torch.nn import functional as F

    def forward(self: Any, v: Any, nbr_idx: Any, edge: Any, edge_mask: Any = None) -> Any:
        n, m = nbr_idx.shape
        z = self.lin_self(v).unsqueeze(1) + self.lin_nbr(v)[nbr_idx] + self.lin_edge(edge)
        z = self.bn1(z.view(n * m, -1)).view(n, m, -1)
        gate, core = z.chunk(2, dim=-1)
        return F.softplus(v + self.bn2((torch.sigmoid(gate) * F.softplus(core)).sum(dim=1)))

    for conv in model.convs:
        conv.forward = types.MethodType(forward, conv)


def worker_epochs(work: Path, variant: str, batch_size: int, epochs: int) -> dict[str, Any]:
    """Seconds per training epoch (no validation) of one variant."""
    import torch

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    d = TrainData(work, reference=variant == "reference")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    y_norm = d.y_norm
    from tlcgcnn.nn import build_model
    from tlcgcnn.train.loop import TrainConfig, make_optimizer, resolve_amp

    if variant == "reference":
        import reference_cgcnn as ref

        model = ref.CrystalGraphConvNet(92, 41)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    else:
        model = build_model({}, d.atom_table)
        if variant == "before":
            _legacy_pipeline(model)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        else:
            opt = make_optimizer(list(model.parameters()), TrainConfig(), torch.device("cpu"))
    amp = resolve_amp("auto", torch.device("cpu")) if variant == "ours_default" else "none"
    times = []
    model.train()
    for _ in range(epochs):
        t = time.perf_counter()
        for b in torch.randperm(d.n_train, generator=gen).split(batch_size):
            if b.numel() < 2:
                continue
            if variant == "reference":
                (atom_fea, nbr_fea, nbr_idx, cai), target = ref.collate_pool([d.samples[i] for i in b.tolist()])
                loss = torch.nn.functional.mse_loss(model(atom_fea, nbr_fea, nbr_idx, cai), target)
            else:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                    out = model(d.graphs.batch(b)).float().squeeze(-1)
                loss = torch.nn.functional.mse_loss(out, y_norm[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return {
        "variant": variant,
        "precision": amp if amp == "bf16" else "fp32",
        "epoch_s": times,
        "train_crystals": d.n_train,
        "crystals_per_s": d.n_train / float(np.median(times)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker_ours(
    work: Path, epochs: int, batch_size: int, lr: float, schedule: str, warmup: float, amp: str, compile_mode: str
) -> dict[str, Any]:
    """The pipeline's own fit(), as the pretrain rule runs it."""
    import torch

    from tlcgcnn.nn import build_model
    from tlcgcnn.nn.normalize import Normalizer
    from tlcgcnn.train.loop import TrainConfig, fit

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    d = TrainData(work, reference=False)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = build_model({}, d.atom_table)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        warmup_epochs=warmup,
        amp=amp,
        compile=compile_mode,
        patience=epochs,
        threads=2,
    )
    norm = Normalizer.fit(d.y[: d.n_train].numpy())
    res = fit(
        model,
        d.graphs,
        d.y,
        torch.arange(d.n_train),
        torch.arange(d.n_train, len(d.y)),
        norm,
        cfg,
        seed=0,
        progress=False,
    )
    return {
        "config": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "schedule": schedule,
            "warmup_epochs": warmup,
            "amp": amp,
            "compile": compile_mode,
        },
        "precision": res.precision,
        "runtime": res.runtime,
        "load_s": load_s,
        "elapsed_s": res.history["elapsed_s"],
        "val_mae": res.history["val_mae"],
        "best_val_mae": res.best_val_mae,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker_reference(work: Path, budget_s: float) -> dict[str, Any]:
    """txie-93/cgcnn's way with its default optimiser (SGD 0.01, momentum 0.9, batch 256)."""
    import reference_cgcnn as ref
    import torch

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    d = TrainData(work)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = ref.CrystalGraphConvNet(92, 41)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    elapsed, maes = [], []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < budget_s:
        model.train()
        for b in torch.randperm(d.n_train, generator=gen).split(256):
            if b.numel() < 2:
                continue
            (atom_fea, nbr_fea, nbr_idx, cai), target = ref.collate_pool([d.samples[i] for i in b.tolist()])
            loss = torch.nn.functional.mse_loss(model(atom_fea, nbr_fea, nbr_idx, cai), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        preds = []
        with torch.no_grad():
            for a in range(d.n_train, len(d.y), 512):
                (atom_fea, nbr_fea, nbr_idx, cai), _ = ref.collate_pool(d.samples[a : min(a + 512, len(d.y))])
                preds.append(model(atom_fea, nbr_fea, nbr_idx, cai).squeeze(-1))
        maes.append(float((torch.cat(preds) * d.std + d.mean - d.y[d.n_train :]).abs().mean()))
        elapsed.append(time.perf_counter() - t0)
        print(
            f"reference epoch {len(maes)}: val MAE {maes[-1]:.4f} at {elapsed[-1]:.0f} s", file=sys.stderr, flush=True
        )
    return {
        "config": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 256},
        "load_s": load_s,
        "elapsed_s": elapsed,
        "val_mae": maes,
        "best_val_mae": min(maes),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_worker(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_to(elapsed: list[float], maes: list[float], threshold: float) -> float | None:
    best = float("inf")
    for t, m in zip(elapsed, maes, strict=True):
        best = min(best, m)
        if best <= threshold:
            return t
    return None


def figure(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label, color in (
        ("ours", "tlcgcnn (this pipeline)", "#1f77b4"),
        ("reference", "original CGCNN approach", "#d62728"),
    ):
        r = result.get(key)
        if not r:
            continue
        best = np.minimum.accumulate(r["val_mae"])
        ax.plot(np.array(r["elapsed_s"]) / 60, r["val_mae"], color=color, alpha=0.35, lw=1)
        ax.plot(np.array(r["elapsed_s"]) / 60, best, color=color, lw=2, label=f"{label}: best {best[-1]:.3f}")
    for thr in (0.060, 0.045):
        ax.axhline(thr, color="0.5", ls=":", lw=1)
        ax.text(0.2, thr, f" goal {thr:.3f}", va="bottom", fontsize=8, color="0.4")
    ax.axvline(15, color="0.5", ls="--", lw=1)
    ax.text(15, ax.get_ylim()[1], " 15 min", va="top", fontsize=8, color="0.4")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = [0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    ax.set_xlabel("wall time, minutes (2 CPU cores)")
    ax.set_ylabel("validation MAE of ΔEf, eV/atom")
    ax.set_title(f"ΔEf pretraining on MP-2018 ({result['data']['train']:,} training crystals)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(png, dpi=150)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mp2018_36737.csv.gz")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tlcgcnn-tta"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "time_to_accuracy.json")
    ap.add_argument("--sections", default="epochs,ours,reference")
    ap.add_argument("--epoch-variants", default="before,ours_fp32,ours_default,reference")
    ap.add_argument("--epoch-repeats", type=int, default=1)
    ap.add_argument("--ours-epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--compile", default="auto", help="train.compile of the 'ours' section (tlcgcnn.train.accel)")
    ap.add_argument("--ref-budget", type=float, default=900.0)
    ap.add_argument("--figure-only", action="store_true", help="redraw the figure from --out")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.figure_only:
        figure(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    if args.worker:
        kind, *rest = args.worker.split(":")
        if kind == "epochs":
            res = worker_epochs(args.work, rest[0], args.batch_size, args.epoch_repeats)
        elif kind == "ours":
            res = worker_ours(
                args.work,
                args.ours_epochs,
                args.batch_size,
                args.lr,
                args.schedule,
                args.warmup,
                args.amp,
                args.compile,
            )
        else:
            res = worker_reference(args.work, args.ref_budget)
        print(json.dumps(res))
        return
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    from run import machine as run_machine

    result["machine"] = {
        "cpu": run_machine()["cpu"],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    result["data"] = prepare(args.data, args.work)
    common = ["--work", str(args.work), "--batch-size", str(args.batch_size)]
    for section in args.sections.split(","):
        before = load_avg()
        t = time.perf_counter()
        if section == "epochs":
            rows = {}
            for v in args.epoch_variants.split(","):
                rows[v] = run_worker([*common, "--worker", f"epochs:{v}", "--epoch-repeats", str(args.epoch_repeats)])
                print(f"epoch {v}: {rows[v]['epoch_s']} s", file=sys.stderr, flush=True)
            res: dict[str, Any] = {"variants": rows}
        elif section == "ours":
            res = run_worker(
                [
                    *common,
                    "--worker",
                    "ours",
                    "--ours-epochs",
                    str(args.ours_epochs),
                    "--lr",
                    str(args.lr),
                    "--schedule",
                    args.schedule,
                    "--warmup",
                    str(args.warmup),
                    "--amp",
                    args.amp,
                    "--compile",
                    args.compile,
                ]
            )
        elif section == "reference":
            res = run_worker(["--work", str(args.work), "--worker", "reference", "--ref-budget", str(args.ref_budget)])
        else:
            raise SystemExit(f"unknown section {section!r}")
        res["load_before"], res["load_after"], res["wall_s"] = before, load_avg(), time.perf_counter() - t
        if section in ("ours", "reference"):
            res["time_to"] = {
                f"{thr:.3f}": time_to(res["elapsed_s"], res["val_mae"], thr) for thr in (0.080, 0.060, 0.045)
            }
        result[section] = res
        args.out.write_text(json.dumps(result, indent=1))
        print(
            f"{section}: done in {res['wall_s']:.0f} s (load {before} -> {res['load_after']})",
            file=sys.stderr,
            flush=True,
        )
    figure(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
