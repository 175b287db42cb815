"""One fine-tuning cell of the quickstart (`make run`) under each training runtime, side by side.

Where does the quickstart's time go, and does compiling pay for its small cells? Run from the
repository root after `make run` finished (it reads `results/quickstart/`), alone on the machine
(the load average is recorded):

    python benchmarks/quickstart_cell.py --out benchmarks/quickstart_cell.json

The cell (default: log10 K_VRH, n = 400, the zoo's multi-task source with its head
re-initialised, 5 seeds: the largest kind of quickstart cell) is trained and evaluated by
:func:`tlcgcnn.train.finetune.finetune_cell`, as its Snakemake job does, once per variant
(``amp/compile``: ``none/none`` eager fp32, ``none/dynamic``, ``bf16/dynamic``,
``bf16/buckets``; ``none/none/ensemble``: eager fp32 with the 5 seeds trained as one vmapped
ensemble, ``train.ensemble: on``), one after the other in one process at 1 thread (the
quickstart's `train.threads`). A variant's time includes its compilation (Inductor's on-disk cache is warm
after the first compiled variant, as it is for every job after the first in a real run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

from tlcgcnn.config import Cell, resolve  # noqa: E402
from tlcgcnn.train.device import processor  # noqa: E402
from tlcgcnn.train.finetune import finetune_cell  # noqa: E402

VARIANTS = ("none/none", "none/dynamic", "bf16/dynamic", "bf16/buckets", "none/none/ensemble")


def run_variant(cfg: Any, run: Path, target: str, size: int, mode: str, variant: str, work: Path) -> dict[str, Any]:
    amp, compile_mode, *rest = variant.split("/")
    base = cfg.cell(target, str(size), mode)
    params = base.as_params()
    params["train"] = {**params["train"], "amp": amp, "compile": compile_mode, "ensemble": "on" if rest else "off"}
    cell = Cell.from_params(params)
    out = work / variant.replace("/", "_")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    source = base.mode.pretrained
    pretrained = None
    if source:
        pretrained = cfg.pretrained_checkpoint(source) or str(run / "pretrain" / source / "model.pt")
    (graph_dir,) = [p for p in (run / "graphs").iterdir() if p.is_dir()]
    t = time.perf_counter()
    records = finetune_cell(
        cell=cell,
        table_path=str(run / "data" / "structures.parquet"),
        split_path=str(run / "splits" / f"{target}.split.json"),
        graph_dir=str(graph_dir),
        atom_features_path=str(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv"),
        pretrained=pretrained,
        split_cfg=cfg.split_settings(),
        threads=1,
        config=None,
        out_metrics=str(out / "metrics.json"),
        out_predictions=str(out / "predictions.parquet"),
    )
    wall = time.perf_counter() - t
    return {
        "cell_s": wall,
        "train_s_per_seed": [float(r["seconds"]) for r in records],
        "epochs_run": [int(r["epochs_run"]) for r in records],
        "test_mae": [float(r["mae"]) for r in records],
        "runtime": records[0].get("runtime"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--target", default="log_kvrh")
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--mode", default="zoo_mt_head")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "quickstart_cell.json")
    args = ap.parse_args()
    os.chdir(ROOT)  # the config's relative paths (zoo checkpoints, the committed subset)
    cfg = resolve(yaml.safe_load(args.config.read_text()))
    run = ROOT / "results" / cfg.name
    if not (run / "data" / "structures.parquet").is_file():
        ap.error(f"{run}: no finished quickstart run here; run `make run` first")
    torch.set_num_threads(1)
    before = [round(x, 2) for x in os.getloadavg()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="quickstart_cell_") as tmp:
        for variant in args.variants.split(","):
            results[variant] = run_variant(cfg, run, args.target, args.size, args.mode, variant, Path(tmp))
            r = results[variant]
            print(
                f"{variant:14s} {r['cell_s']:7.1f} s  test MAE {sum(r['test_mae']) / len(r['test_mae']):.4f}",
                flush=True,
            )
    ref = results.get("none/none", {}).get("cell_s")
    out = {
        "machine": {
            "cpu": processor(torch.device("cpu")),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "cell": {"target": args.target, "size": args.size, "mode": args.mode, "threads": 1},
        "load_before": before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "variants": {k: {**v, "vs_eager_fp32": (ref / v["cell_s"]) if ref else None} for k, v in results.items()},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {args.out}; load {out['load_before']} -> {out['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
