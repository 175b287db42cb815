"""Side-by-side benchmarks: tlcgcnn vs the original CGCNN way, on real Materials Project crystals.

Run from the repository root:

    python benchmarks/run.py --data ../shared/data/mp2018_36737.csv.gz --n 2000 --repeats 3 \
        --out benchmarks/results.json

Every number is a median over ``--repeats`` runs and every speed is also given as a ratio
to the reference measured in the same process (training: the same worker process, per
allocator and thread count). Sections: CIF parsing, featurization (+ neighbour-list check),
cache size and load time, training throughput and accuracy, peak memory, the batched seed
ensemble, and Snakemake DAG resolution on a paper-scale grid. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")

import allocator  # noqa: E402  (benchmarks/allocator.py)

from tlcgcnn.data import (  # noqa: E402  (graphs imports torch: lazily)
    ingest,
    table,
)
from tlcgcnn.features import featurize  # noqa: E402  (graphs imports torch: lazily)

TARGET = "formation_energy_per_atom"


# --------------------------------------------------------------------------- helpers


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``repeats`` runs, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def machine() -> dict[str, Any]:
    import torch

    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkl": bool(torch.backends.mkl.is_available()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- data


def prepare(data: Path, n: int, seed: int, work: Path) -> dict[str, Any]:
    """Seeded sample of ``n`` real crystals -> canonical table + our graph cache in ``work``."""
    raw = pd.read_csv(data).sample(n, random_state=seed).reset_index(drop=True)
    raw[["material_id", "cif"]].to_parquet(work / "cifs.parquet")
    t = time.perf_counter()
    df, _, summary = ingest.ingest_frame(raw, ingest.IngestOptions(), progress=False)
    ingest_s = time.perf_counter() - t
    table.write(df, work / "table.parquet")
    featurize.featurize(work / "table.parquet", work / "graphs", featurize.FeaturizeParams(), threads=1, progress=False)
    rng = np.random.default_rng(seed)
    ids = df["material_id"].to_numpy()[rng.permutation(len(df))]
    n_val = len(ids) // 5
    split = {"train": ids[n_val:].tolist(), "val": ids[:n_val].tolist()}
    (work / "split.json").write_text(json.dumps(split))
    return {
        "crystals": len(df),
        "atoms": int(df["nsites"].sum()),
        "ingest_s": ingest_s,
        "dropped": summary["rows_dropped"],
    }


# --------------------------------------------------------------------------- 1. parsing


def bench_parsing(work: Path, n: int, repeats: int) -> dict[str, Any]:
    import gemmi

    from tlcgcnn.data import cif_fast

    cifs = pd.read_parquet(work / "cifs.parquet")["cif"].tolist()[:n]
    t_pm, _ = median_time(lambda: [table.structure_arrays(ingest.parse_structure(c)) for c in cifs], repeats)
    t_gemmi_raw, _ = median_time(
        lambda: [gemmi.make_small_structure_from_block(gemmi.cif.read_string(c).sole_block()) for c in cifs], repeats
    )
    t_fast, fast = median_time(lambda: [cif_fast.parse_p1_cif(c) for c in cifs], repeats)
    return {
        "cifs": len(cifs),
        "pymatgen_ms_per_cif": 1e3 * t_pm / len(cifs),
        "gemmi_raw_ms_per_cif": 1e3 * t_gemmi_raw / len(cifs),
        "gemmi_canonical_ms_per_cif": 1e3 * t_fast / len(cifs),
        "fast_path_share": sum(f is not None for f in fast) / len(cifs),
        "speedup_raw": t_pm / t_gemmi_raw,
        "speedup_canonical": t_pm / t_fast,
    }


# --------------------------------------------------------------------------- 2. featurization


def reference_featurize(table_path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The original cgcnn way, from the canonical table: Structure -> get_all_neighbors -> sort -> pad -> Gaussians."""
    import reference_cgcnn as ref

    df = table.read(table_path)
    return [ref.featurize_structure(table.to_structure(row)) for _, row in df.iterrows()]


def ours_featurize(table_path: Path, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    return featurize.featurize(table_path, out, featurize.FeaturizeParams(), threads=1, progress=False)


def bench_featurize(work: Path, ref_n: int, repeats: int) -> dict[str, Any]:
    df = table.read(work / "table.parquet")
    sub = df.iloc[:ref_n]
    table.write(sub, work / "table_sub.parquet")
    t_ref, ref_out = median_time(lambda: reference_featurize(work / "table_sub.parquet"), repeats)
    t_sub, _ = median_time(lambda: ours_featurize(work / "table_sub.parquet", work / "g_sub"), repeats)
    t_all, manifest = median_time(lambda: ours_featurize(work / "table.parquet", work / "g_all"), repeats)
    check = compare_neighbors(work / "g_sub", ref_out)
    return {
        "reference_crystals": len(sub),
        "reference_crystals_per_s": len(sub) / t_ref,
        "ours_same_crystals_per_s": len(sub) / t_sub,
        "ours_all_crystals_per_s": len(df) / t_all,
        "speedup_same_crystals": t_ref / t_sub,
        "speedup_vs_ours_all": (len(df) / t_all) / (len(sub) / t_ref),
        "bytes_per_atom": manifest["bytes_per_atom"],
        "check": check,
    }


def compare_neighbors(graph_dir: Path, ref_out: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, int]:
    from tlcgcnn.nn import graphs

    gs = graphs.load(graph_dir)
    off = gs.offsets.numpy()
    same = differ = skipped = 0
    for i, (r_idx, r_dist, _) in enumerate(ref_out):
        a, b = off[i], off[i + 1]
        if np.any(r_dist > 8.0):  # the reference padded (< 12 neighbours within 8 Å); ours grew the radius
            skipped += 1
            continue
        ok = featurize.same_neighbors(
            gs.nbr_idx[a:b].numpy(), gs.nbr_dist[a:b].numpy(), r_idx, r_dist.astype(np.float32)
        )
        same += ok
        differ += not ok
    return {"crystals_equal": same, "crystals_different": differ, "crystals_skipped_padded": skipped}


# --------------------------------------------------------------------------- 3. cache


def bench_cache(work: Path, repeats: int) -> dict[str, Any]:
    from tlcgcnn.nn import graphs

    root = work / "graphs"
    manifest = json.loads((root / "manifest.json").read_text())
    shard = root / manifest["shards"][0]

    def load_shard() -> int:
        with np.load(shard) as d:
            return sum(d[k].nbytes for k in ("z", "nbr_idx", "nbr_dist", "offsets"))

    t_shard, _ = median_time(load_shard, repeats)
    t_all, _ = median_time(lambda: graphs.load(root), repeats)
    shard_crystals = len(np.load(shard)["offsets"]) - 1
    return {
        "bytes_per_atom": manifest["bytes_per_atom"],
        "raw_bytes_per_atom": 1 + 12 * (2 + 4),
        "bytes_on_disk": manifest["bytes_on_disk"],
        "shard_crystals": shard_crystals,
        "shard_load_ms": 1e3 * t_shard,
        "full_load_ms": 1e3 * t_all,
        "reference_bytes_per_atom_in_memory": 12 * 41 * 4 + 12 * 8,  # Gaussians float32 + int64 indices
    }


# --------------------------------------------------------------------------- 4. training (worker)


class TrainData:
    """Everything the training workers need, loaded once per process (also used by
    time_to_accuracy.py). ``reference``: also build the reference's per-sample inputs
    (Gaussian-expanded edges, ~2 kB an atom)."""

    def __init__(self, work: Path, reference: bool = True) -> None:
        import reference_cgcnn as ref
        import torch

        from tlcgcnn.features import atom_features
        from tlcgcnn.nn import graphs

        split = json.loads((work / "split.json").read_text())
        ids = split["train"] + split["val"]
        df = pd.read_parquet(work / "table.parquet", columns=["material_id", TARGET]).set_index("material_id")
        self.graphs = graphs.load(work / "graphs", ids)
        self.n_train = len(split["train"])
        self.y = torch.tensor(df.loc[ids, TARGET].to_numpy(), dtype=torch.float32)
        self.mean, self.std = float(self.y[: self.n_train].mean()), float(self.y[: self.n_train].std())
        self.y_norm = (self.y - self.mean) / self.std
        self.atom_table = torch.from_numpy(atom_features.load_matrix(atom_features.default_path()))
        self.samples: list[Any] = []
        if not reference:
            return
        off = self.graphs.offsets.numpy()
        g = self.graphs
        self.samples = ref.make_samples(
            self.atom_table,
            [g.z[off[i] : off[i + 1]].numpy() for i in range(len(ids))],
            [g.nbr_idx[off[i] : off[i + 1]].numpy() for i in range(len(ids))],
            [
                ref.gaussian_expand(g.nbr_dist[off[i] : off[i + 1]].numpy().astype(np.float64)).astype(np.float32)
                for i in range(len(ids))
            ],
            self.y_norm.numpy(),
        )

    def train_perm(self, gen: Any) -> Any:
        import torch

        return torch.randperm(self.n_train, generator=gen)


def _models(d: TrainData, seed: int) -> tuple[Any, Any]:
    import reference_cgcnn as ref
    import torch

    from tlcgcnn.nn import build_model

    torch.manual_seed(seed)
    ours = build_model({}, d.atom_table)
    reference = ref.CrystalGraphConvNet(92, ours.gauss.size)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in reference.parameters())
    assert n_ours == n_ref, (n_ours, n_ref)
    ref.copy_weights_from(reference, ours)  # identical start: the same function, same weights
    return ours, reference


def epoch_ours(
    model: Any, d: TrainData, opt: Any, gen: Any, batch_size: int, amp: bool, max_batches: int | None = None
) -> None:
    import torch

    model.train()
    for b in d.train_perm(gen).split(batch_size)[:max_batches]:
        if b.numel() < 2:
            continue
        batch = d.graphs.batch(b)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(batch).float().squeeze(-1)
        loss = torch.nn.functional.mse_loss(out, d.y_norm[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def epoch_reference(
    model: Any, d: TrainData, opt: Any, gen: Any, batch_size: int, max_batches: int | None = None
) -> None:
    import reference_cgcnn as ref
    import torch

    model.train()
    for b in d.train_perm(gen).split(batch_size)[:max_batches]:
        if b.numel() < 2:
            continue
        (atom_fea, nbr_fea, nbr_idx, crystal_atom_idx), target = ref.collate_pool([d.samples[i] for i in b.tolist()])
        out = model(atom_fea, nbr_fea, nbr_idx, crystal_atom_idx)
        loss = torch.nn.functional.mse_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def epoch_reference_model_our_batches(
    model: Any, d: TrainData, opt: Any, gen: Any, batch_size: int, max_batches: int | None = None
) -> None:
    """Lever isolation: the original concatenating model fed by our vectorised batches."""
    import torch

    model.train()
    gauss_centers = torch.arange(0.0, 8.0 + 0.2, 0.2)
    for b in d.train_perm(gen).split(batch_size)[:max_batches]:
        if b.numel() < 2:
            continue
        batch = d.graphs.batch(b)
        nbr_fea = torch.exp(-((batch.nbr_dist.unsqueeze(-1) - gauss_centers) ** 2) / 0.04)
        v = model.embedding(d.atom_table[batch.z])
        for conv in model.convs:
            v = conv(v, nbr_fea, batch.nbr_idx)
        pooled = torch.zeros(batch.n, v.shape[1]).index_add(0, batch.crystal, v) / batch.counts.unsqueeze(1)
        h = model.conv_to_fc_softplus(model.conv_to_fc(model.conv_to_fc_softplus(pooled)))
        loss = torch.nn.functional.mse_loss(model.fc_out(h).squeeze(-1), d.y_norm[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def val_mae_ours(model: Any, d: TrainData, amp: bool) -> float:
    import torch

    from tlcgcnn.train.loop import predict

    pos = torch.arange(d.n_train, len(d.y))
    pred = predict(model, d.graphs, pos, 512, "bf16" if amp else "none").squeeze(-1) * d.std + d.mean
    return float((pred - d.y[pos]).abs().mean())


def val_mae_reference(model: Any, d: TrainData) -> float:
    import reference_cgcnn as ref
    import torch

    model.eval()
    preds = []
    with torch.no_grad():
        for a in range(d.n_train, len(d.y), 512):
            (atom_fea, nbr_fea, nbr_idx, cai), _ = ref.collate_pool(d.samples[a : min(a + 512, len(d.y))])
            preds.append(model(atom_fea, nbr_fea, nbr_idx, cai).squeeze(-1))
    pred = torch.cat(preds) * d.std + d.mean
    return float((pred - d.y[d.n_train :]).abs().mean())


def _our_optimizer(model: Any, lr: float) -> Any:
    """The pipeline's optimizer (tlcgcnn.train.loop.make_optimizer: fused AdamW on CPU)."""
    import torch

    from tlcgcnn.train.loop import TrainConfig, make_optimizer

    return make_optimizer(list(model.parameters()), TrainConfig(lr=lr), torch.device("cpu"))


def worker_throughput(work: Path, threads: int, repeats: int, batch_size: int, variants: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    d = TrainData(work)
    ours, reference = _models(d, 0)
    opt_ref = torch.optim.AdamW(reference.parameters(), lr=1e-3)
    opt_ours = _our_optimizer(ours, 1e-3)
    runners: dict[str, Callable[[Any, int | None], None]] = {
        "reference": lambda g, k: epoch_reference(reference, d, opt_ref, g, batch_size, k),
        "reference_model_our_batches": lambda g, k: epoch_reference_model_our_batches(
            reference, d, opt_ref, g, batch_size, k
        ),
        "ours_fp32": lambda g, k: epoch_ours(ours, d, opt_ours, g, batch_size, False, k),
        "ours_bf16": lambda g, k: epoch_ours(ours, d, opt_ours, g, batch_size, True, k),
    }
    for name in variants:  # warm-up: one batch each (allocator pools, MKL kernels)
        runners[name](torch.Generator().manual_seed(99), 1)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):  # interleaved, so load changes hit every variant alike
        for name in variants:
            t = time.perf_counter()
            runners[name](torch.Generator().manual_seed(r), None)
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "threads": threads,
        "tcmalloc": allocator.active(),
        "train_crystals": d.n_train,
        "crystals_per_s": {name: d.n_train / t for name, t in med.items()},
        "speedup_vs_reference": {name: med["reference"] / t for name, t in med.items()},
        "loadavg": list(os.getloadavg()),
    }


def worker_accuracy(work: Path, threads: int, epochs: int, batch_size: int, lr: float) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    d = TrainData(work)
    out: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "threads": threads,
        "tcmalloc": allocator.active(),
    }
    for name in ("reference", "ours_fp32", "ours_bf16"):
        ours, reference = _models(d, 0)
        model = reference if name == "reference" else ours
        opt = torch.optim.AdamW(model.parameters(), lr=lr) if name == "reference" else _our_optimizer(model, lr)
        gen = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(epochs):
            if name == "reference":
                epoch_reference(model, d, opt, gen, batch_size)
            else:
                epoch_ours(model, d, opt, gen, batch_size, amp=name == "ours_bf16")
        seconds = time.perf_counter() - t
        mae = val_mae_reference(model, d) if name == "reference" else val_mae_ours(model, d, amp=name == "ours_bf16")
        out[name] = {"val_mae": mae, "train_seconds": seconds, "crystals_per_s": epochs * d.n_train / seconds}
    out["val_mae_std_of_target"] = float(d.y[d.n_train :].std())
    return out


def worker_ensemble(work: Path, threads: int, members: int, repeats: int, batch_size: int) -> dict[str, Any]:
    import torch

    from tlcgcnn.nn import build_model
    from tlcgcnn.train import ensemble

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    d = TrainData(work)
    models = []
    for k in range(members):
        torch.manual_seed(k)
        models.append(build_model({}, d.atom_table))
    ens = ensemble.Ensemble.from_models(models)
    opt_ens = torch.optim.AdamW(ens.parameters(), lr=1e-3)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in models]

    def ens_epoch(gen: Any, max_batches: int | None = None) -> None:
        for b in d.train_perm(gen).split(batch_size)[:max_batches]:
            if b.numel() >= 2:
                ensemble.train_step(ens, d.graphs.batch(b), d.y_norm[b], opt_ens)

    def one_by_one(gen: Any, max_batches: int | None = None) -> None:
        for m, o in zip(models, opts, strict=True):
            epoch_ours(m, d, o, gen, batch_size, False, max_batches)

    ens_epoch(torch.Generator().manual_seed(99), 1)  # warm-up (vmap tracing, allocator)
    one_by_one(torch.Generator().manual_seed(99), 1)

    times: dict[str, list[float]] = {"ensemble": [], "one_by_one": []}
    for r in range(repeats):
        for name, fn in (("ensemble", ens_epoch), ("one_by_one", one_by_one)):
            t = time.perf_counter()
            fn(torch.Generator().manual_seed(r))
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "members": members,
        "threads": threads,
        "member_crystals_per_s": {k: members * d.n_train / t for k, t in med.items()},
        "speedup_ensemble_vs_one_by_one": med["one_by_one"] / med["ensemble"],
    }


def worker_memory(work: Path, what: str, ref_n: int) -> dict[str, Any]:
    base = peak_rss_mb()
    if what.startswith("featurize"):
        # numpy and Python allocations are all traced: peak bytes held by the featurization itself
        # (the process's RSS high-water mark is set by the imports, far above either)
        import tracemalloc

        from pymatgen.core import Structure  # noqa: F401  (import cost not counted)

        tracemalloc.start()
        if what == "featurize_ours":
            ours_featurize(work / "table_sub.parquet", Path(tempfile.mkdtemp()) / "g")
        else:
            reference_featurize(work / "table_sub.parquet")
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return {
            "what": what,
            "method": "tracemalloc peak",
            "peak_minus_baseline_mb": peak,
            "peak_rss_mb": peak_rss_mb(),
        }
    if what in ("train_ours", "train_reference"):
        import torch

        torch.set_num_threads(1)
        d = TrainData(work)
        base = peak_rss_mb()  # the data set itself (held by both) is not the training's memory
        ours, reference = _models(d, 0)
        if what == "train_ours":
            epoch_ours(ours, d, torch.optim.AdamW(ours.parameters()), torch.Generator().manual_seed(0), 256, amp=False)
        else:
            epoch_reference(
                reference, d, torch.optim.AdamW(reference.parameters()), torch.Generator().manual_seed(0), 256
            )
    else:
        raise ValueError(what)
    return {
        "what": what,
        "method": "ru_maxrss above the loaded data",
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": base,
        "peak_minus_baseline_mb": peak_rss_mb() - base,
    }


def run_worker(args: list[str], tcmalloc: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env[allocator.ENV_VAR] = "auto" if tcmalloc else "0"
    if tcmalloc and allocator.preload(env) is None:
        return {"skipped": "tcmalloc not installed (apt-get install libtcmalloc-minimal4)"}
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- 5. DAG


def paper_grid_config(path: Path, data: Path) -> dict[str, int]:
    import yaml

    targets = ["gap_nonmetal", "bulk_modulus", "shear_modulus", "gap_hse", "dielectric"]
    props = ["band_gap", "k_vrh", "g_vrh", "band_gap_hse", "diel_total_mp"]
    pretrain = [
        {"name": n, "property": p, "subset": "all", "size": "all", "seed": 0}
        for n, p in (("ef_all", "formation_energy_per_atom"), ("gap_all", "band_gap"), ("efermi_all", "efermi"))
    ]
    # config/config.yaml (always loaded first) has modes scratch and transfer: reuse those names
    modes: dict[str, Any] = {"scratch": {}, "transfer": {"pretrained": "ef_all"}}
    for pre in ("gap_all", "efermi_all"):
        modes[f"transfer_{pre}"] = {"pretrained": pre}
    modes["freeze2_ef_all"] = {"pretrained": "ef_all", "freeze": 2}
    modes["reinit_head_ef_all"] = {"pretrained": "ef_all", "reinit": "head"}
    cfg = {
        "name": "paper_grid_bench",
        "dataset": {"source": "local", "path": str(data)},
        "split": {"metal_rule": "is_metal", "test_fraction": 0.2, "val_fraction": 0.2, "val_min": 10, "seed": 42},
        "featurize": {"radius": 8.0, "max_neighbors": 12},
        "model": {"atom_fea_len": 64, "n_conv": 3, "h_fea_len": 128},
        "train": {"epochs": 100, "batch_size": 64, "lr": 0.002, "patience": 20, "threads": 1},
        "pretrain": pretrain,
        "finetune": {
            "targets": [
                {"name": t, "property": p, "subset": "nonmetal" if t.startswith("gap") else "all"}
                for t, p in zip(targets, props, strict=True)
            ],
            "sizes": [25, 50, 100, 200, 500, 1000],
            "seeds": list(range(10)),
            "modes": modes,
            "baseline": "scratch",
        },
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return {
        "targets": len(targets),
        "sizes": 6,
        "seeds": 10,
        "modes": len(modes),
        "pretrain": len(pretrain),
        "finetune_cells": len(targets) * 6 * 10 * len(modes),
    }


def bench_dag(work: Path, data: Path, repeats: int) -> dict[str, Any]:
    paper = ROOT / "config" / "paper.yaml"
    if paper.exists():
        cfg_path, grid = paper, {"config": "config/paper.yaml"}
    else:
        cfg_path = work / "paper_grid.yaml"
        grid = paper_grid_config(cfg_path, data.resolve())
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    cmd = [snakemake, "-n", "--quiet", "rules", "--cores", "2", "--configfile", str(cfg_path)]

    def run() -> str:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake -n failed:\n{proc.stderr[-3000:]}")
        return proc.stdout + proc.stderr

    t, out = median_time(run, repeats)
    jobs = next((int(ln.split()[-1]) for ln in out.splitlines() if ln.strip().startswith("total")), None)
    return {
        "grid": grid,
        "jobs": jobs,
        "seconds": t,
        "target_s": 10.0,
        "command": " ".join(cmd[:1] + ["-n", "--quiet", "rules", "--cores", "2", "--configfile", "<grid>"]),
    }


# --------------------------------------------------------------------------- report


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, ours, reference, ratio) rows of the summary table."""
    rows = []
    p = r["parsing"]
    rows.append(
        (
            "CIF parse, ms/CIF (gemmi raw)",
            f"{p['gemmi_raw_ms_per_cif']:.3f}",
            f"{p['pymatgen_ms_per_cif']:.2f}",
            f"{p['speedup_raw']:.0f}x",
        )
    )
    rows.append(
        (
            "CIF -> canonical arrays, ms/CIF (gemmi path)",
            f"{p['gemmi_canonical_ms_per_cif']:.3f}",
            f"{p['pymatgen_ms_per_cif']:.2f}",
            f"{p['speedup_canonical']:.1f}x",
        )
    )
    f = r["featurize"]
    rows.append(
        (
            f"featurize, crystals/s/core (same {f['reference_crystals']} crystals)",
            f"{f['ours_same_crystals_per_s']:.0f}",
            f"{f['reference_crystals_per_s']:.1f}",
            f"{f['speedup_same_crystals']:.0f}x",
        )
    )
    rows.append(
        (
            f"featurize, crystals/s/core (ours on all {r['data']['crystals']})",
            f"{f['ours_all_crystals_per_s']:.0f}",
            f"{f['reference_crystals_per_s']:.1f}",
            f"{f['speedup_vs_ours_all']:.0f}x",
        )
    )
    c = f["check"]
    rows.append(
        (
            "neighbour lists equal (crystals)",
            f"{c['crystals_equal']} equal / {c['crystals_different']} differ",
            f"{c['crystals_skipped_padded']} padded skipped",
            "",
        )
    )
    k = r["cache"]
    rows.append(
        (
            "cache, bytes/atom on disk",
            f"{k['bytes_per_atom']:.1f}",
            f"{k['reference_bytes_per_atom_in_memory']} (in memory)",
            f"{k['reference_bytes_per_atom_in_memory'] / k['bytes_per_atom']:.0f}x smaller",
        )
    )
    rows.append((f"load one shard ({k['shard_crystals']} crystals), ms", f"{k['shard_load_ms']:.1f}", "", ""))
    for key, tp in r["training"].items():
        if "skipped" in tp:
            rows.append((f"train {key}", tp["skipped"], "", ""))
            continue
        cps, sp = tp["crystals_per_s"], tp["speedup_vs_reference"]
        for name in cps:
            if name != "reference":
                rows.append(
                    (
                        f"train crystals/s, {key}, {name}",
                        f"{cps[name]:.0f}",
                        f"{cps['reference']:.0f}",
                        f"{sp[name]:.2f}x",
                    )
                )
    if "cross" in r:
        for name, val in r["cross"].items():
            rows.append(
                (
                    f"train crystals/s, {name} (tcmalloc) vs reference (glibc)",
                    f"{val['ours']:.0f}",
                    f"{val['reference']:.0f}",
                    f"{val['speedup']:.2f}x",
                )
            )  # only with tcmalloc installed
    for name, value in levers(r).items():
        rows.append((f"lever: {name}", "", "", f"{value:.2f}x"))
    a = r["accuracy"]
    for name in ("ours_fp32", "ours_bf16"):
        rows.append(
            (
                f"val MAE eV/atom after {a['epochs']} epochs, {name}",
                f"{a[name]['val_mae']:.4f}",
                f"{a['reference']['val_mae']:.4f}",
                f"{a[name]['val_mae'] / a['reference']['val_mae']:.3f}",
            )
        )
    m = r["memory"]
    rows.append(
        (
            f"peak memory featurize {f['reference_crystals']} crystals, MB (tracemalloc)",
            f"{m['featurize_ours']['peak_minus_baseline_mb']:.1f}",
            f"{m['featurize_reference']['peak_minus_baseline_mb']:.1f}",
            "",
        )
    )
    rows.append(
        (
            "peak memory 1 training epoch, MB above data",
            f"{m['train_ours']['peak_minus_baseline_mb']:.0f}",
            f"{m['train_reference']['peak_minus_baseline_mb']:.0f}",
            "",
        )
    )
    e = r["ensemble"]
    rows.append(
        (
            f"ensemble of {e['members']} seeds, member-crystals/s (vmap vs one by one)",
            f"{e['member_crystals_per_s']['ensemble']:.0f}",
            f"{e['member_crystals_per_s']['one_by_one']:.0f}",
            f"{e['speedup_ensemble_vs_one_by_one']:.2f}x",
        )
    )
    g = r["dag"]
    rows.append((f"snakemake -n, {g['jobs']} jobs, s", f"{g['seconds']:.1f}", "target 10", ""))
    return rows


def levers(r: dict[str, Any]) -> dict[str, float]:
    """Training speed-up of each lever alone, from the throughput workers (1 thread unless said)."""
    t = r["training"]
    glibc, two, two_tcm = t.get("1 thread, glibc", {}), t.get("2 threads, glibc", {}), t.get("2 threads, tcmalloc", {})
    out: dict[str, float] = {}
    if "crystals_per_s" in glibc:
        c = glibc["crystals_per_s"]
        out["contiguous vectorised batching (reference model, our batches vs Python collate)"] = (
            c["reference_model_our_batches"] / c["reference"]
        )
        out[
            "factored convolution + index_select gather + fused AdamW (ours fp32 vs reference model on our batches)"
        ] = c["ours_fp32"] / c["reference_model_our_batches"]
        out["bf16 autocast (ours bf16 vs ours fp32, 1 thread)"] = c["ours_bf16"] / c["ours_fp32"]
        if "crystals_per_s" in two:
            out["2 threads vs 1 (ours bf16)"] = two["crystals_per_s"]["ours_bf16"] / c["ours_bf16"]
    if "crystals_per_s" in two and "crystals_per_s" in two_tcm:
        out["tcmalloc (ours bf16, 2 threads, tcmalloc vs glibc process)"] = (
            two_tcm["crystals_per_s"]["ours_bf16"] / two["crystals_per_s"]["ours_bf16"]
        )
    return out


def markdown(rows: list[tuple[str, str, str, str]]) -> str:
    out = ["| measure | ours | reference | ours vs reference |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mp2018_36737.csv.gz")
    ap.add_argument("--n", type=int, default=2000, help="crystals in the seeded sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-n", type=int, default=150, help="crystals featurized the reference way (~0.1 s each)")
    ap.add_argument("--parse-n", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the accuracy comparison")
    ap.add_argument("--batch-size", type=int, default=64, help="the pipeline's default training batch")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--variants", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(dispatch_worker(args)))
        return

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tlcgcnn-bench-"))
    try:
        results: dict[str, Any] = {
            "machine": machine(),
            "args": {k: str(v) for k, v in vars(args).items() if k not in ("worker", "work", "threads", "variants")},
        }
        say = lambda msg: print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)  # noqa: E731
        say("preparing the sample")
        results["data"] = prepare(args.data, args.n, args.seed, work)
        say("1. parsing")
        results["parsing"] = bench_parsing(work, args.parse_n, args.repeats)
        say("2. featurization")
        results["featurize"] = bench_featurize(work, args.ref_n, args.repeats)
        say("3. cache")
        results["cache"] = bench_cache(work, args.repeats)
        say("4. training throughput")
        common = ["--work", str(work), "--repeats", str(args.repeats), "--batch-size", str(args.batch_size)]
        all_variants = "reference,reference_model_our_batches,ours_fp32,ours_bf16"
        results["training"] = {}
        configs = (  # (threads, tcmalloc, variants): glibc malloc is what a fresh install has;
            # the tcmalloc row runs only where libtcmalloc is installed (else it says skipped)
            (1, False, all_variants),
            (2, False, "reference,ours_fp32,ours_bf16"),
            (2, True, "reference,ours_fp32,ours_bf16"),
        )
        for threads, tcm, variants in configs:
            key = f"{threads} thread{'s' if threads > 1 else ''}, {'tcmalloc' if tcm else 'glibc'}"
            say(f"   {key}")
            results["training"][key] = run_worker(
                ["--worker", "throughput", "--threads", str(threads), "--variants", variants, *common], tcm
            )
        results["cross"] = cross_allocator(results["training"])
        say("   accuracy")
        results["accuracy"] = run_worker(
            ["--worker", "accuracy", "--threads", "2", "--epochs", str(args.epochs), *common], False
        )
        say("   ensemble")
        ens_args = ["--work", str(work), "--repeats", "1", "--batch-size", str(args.batch_size)]
        results["ensemble"] = run_worker(
            ["--worker", "ensemble", "--threads", "1", "--members", str(args.members), *ens_args], False
        )
        say("5. peak memory")
        results["memory"] = {
            w: run_worker(["--worker", "memory", "--variants", w, "--ref-n", str(args.ref_n), *common], False)
            for w in ("featurize_ours", "featurize_reference", "train_ours", "train_reference")
        }
        say("6. DAG")
        results["dag"] = bench_dag(work, args.data, min(args.repeats, 2))
        results["machine"]["loadavg_end"] = list(os.getloadavg())
        results["seconds"] = time.perf_counter() - t0
        rows = table_rows(results)
        results["table_markdown"] = markdown(rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=float))
        print(results["table_markdown"])
        print(
            f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
            f"load {results['machine']['loadavg_start']} -> {results['machine']['loadavg_end']}; "
            f"{results['seconds']:.0f} s; -> {args.out}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cross_allocator(training: dict[str, Any]) -> dict[str, Any]:
    """Ours with tcmalloc vs the reference with glibc (measured in different processes)."""
    out = {}
    for suffix in ("1 thread", "2 threads"):
        g, t = training.get(f"{suffix}, glibc", {}), training.get(f"{suffix}, tcmalloc", {})
        if "crystals_per_s" not in g or "crystals_per_s" not in t:
            continue
        for name in ("ours_fp32", "ours_bf16"):
            ours, ref = t["crystals_per_s"][name], g["crystals_per_s"]["reference"]
            out[f"{suffix}, {name}"] = {"ours": ours, "reference": ref, "speedup": ours / ref}
    return out


def dispatch_worker(args: argparse.Namespace) -> dict[str, Any]:
    if args.worker == "throughput":
        return worker_throughput(args.work, args.threads, args.repeats, args.batch_size, args.variants.split(","))
    if args.worker == "accuracy":
        return worker_accuracy(args.work, args.threads, args.epochs, args.batch_size, lr=3e-3)
    if args.worker == "ensemble":
        return worker_ensemble(args.work, args.threads, args.members, args.repeats, args.batch_size)
    if args.worker == "memory":
        return worker_memory(args.work, args.variants, args.ref_n)
    raise ValueError(f"unknown worker {args.worker!r}")


if __name__ == "__main__":
    main()
