"""Wall time of one fine-tuning cell: 10 seeds of log10 K_VRH at n = 1,000 (real MP-2018).

Run from the repository root, alone on the machine (the load average is recorded):

    python benchmarks/finetune_cell.py --out benchmarks/finetune_cell.json

Each protocol is a config in ``benchmarks/configs/`` run by the pipeline itself
(``snakemake --cores 2``): ingest, featurize, split, then the one ``finetune`` cell job that
trains and evaluates the 10 seeds (2 threads). The cell's wall time is Snakemake's own
benchmark file of that job; the test MAE per seed comes from the cell's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = {"paper": "finetune_cell_paper.yaml", "fast": "finetune_cell_fast.yaml"}


def run(protocol: str, cores: int) -> dict[str, Any]:
    cfg = ROOT / "benchmarks" / "configs" / PROTOCOLS[protocol]
    name = next(line.split(":", 1)[1].strip() for line in cfg.read_text().splitlines() if line.startswith("name:"))
    before = [round(x, 2) for x in os.getloadavg()]
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", str(cfg), "--quiet", "rules"],
        cwd=ROOT,
        check=True,
    )
    wall = time.perf_counter() - t
    res = ROOT / "results" / name
    with open(res / "benchmarks" / "finetune" / "log_kvrh" / "n1000" / "scratch.tsv") as fh:
        bench = next(csv.DictReader(fh, delimiter="\t"))
    records = json.loads((res / "finetune" / "log_kvrh" / "n1000" / "scratch" / "metrics.json").read_text())
    maes = [r["mae"] for r in records]
    return {
        "config": str(cfg.relative_to(ROOT)),
        "cell_s": float(bench["s"]),
        "cell_max_rss_mb": float(bench["max_rss"]),
        "pipeline_wall_s": wall,
        "seeds": len(records),
        "n_train": records[0]["n_train"],
        "n_val": records[0]["n_val"],
        "epochs_run": [r.get("epochs_run") for r in records],
        "seconds_per_seed": [r.get("seconds") for r in records],
        "test_mae": maes,
        "test_mae_mean": statistics.mean(maes),
        "test_mae_sd": statistics.stdev(maes) if len(maes) > 1 else 0.0,
        "precision": records[0].get("precision"),
        "load_before": before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocols", default="fast,paper")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "finetune_cell.json")
    args = ap.parse_args(argv)
    out: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for p in args.protocols.split(","):
        out[p] = run(p, args.cores)
        args.out.write_text(json.dumps(out, indent=1))
        r = out[p]
        print(
            f"{p}: cell {r['cell_s']:.0f} s for {r['seeds']} seeds; "
            f"test MAE {r['test_mae_mean']:.4f} ± {r['test_mae_sd']:.4f}; load {r['load_before']} -> {r['load_after']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
