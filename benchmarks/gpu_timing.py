"""Time the two training rules on this machine's GPU (benchmarks/gpu.sh runs it).

(a) ``--epochs`` epochs (default 1) of ΔEf pretraining on the whole table, through the
pretrain rule's own call (:func:`tlcgcnn.train.pretrain.pretrain`, workflow/scripts/pretrain.py);
(b) one fine-tuning cell, log10 K_VRH at n = ``--size`` (default 1,000) from scratch with
``--seeds`` seeds (default 10), once one after the other and once as one vmapped ensemble
(``--ensemble off,on``: ``train.ensemble``), through the finetune rule's own call
(:func:`tlcgcnn.train.finetune.finetune_cell`, workflow/scripts/finetune.py), with the settings of
``benchmarks/configs/finetune_cell_fast.yaml`` (the CPU figure of benchmarks/README.md).

The table is first ingested, featurized and split as the ingest, featurize and split rules do
(not timed). Prints one JSON line per measurement: device, seconds (the call's wall time,
data loading included), accuracy. Work files and the log (``gpu_timing.log``) go to
``--work`` (default results/gpu_timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tlcgcnn.config import load  # noqa: E402
from tlcgcnn.utils.runtime import log_to  # noqa: E402

CONFIG = ROOT / "benchmarks" / "configs" / "finetune_cell_fast.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--table", required=True, help="the raw table (a file the config's dataset.path could name: .csv.gz, .parquet)"
    )
    ap.add_argument("--work", type=Path, default=ROOT / "results" / "gpu_timing")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument(
        "--amp", default="auto", choices=["auto", "bf16", "none"], help="train.amp (auto: bf16 where the device has it)"
    )
    ap.add_argument("--epochs", type=int, default=1, help="pretraining epochs")
    ap.add_argument("--size", type=int, default=1000, help="the fine-tuning cell's training size")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--ensemble",
        default="off,on",
        help="train.ensemble of the fine-tuning cell, comma-separated: each is timed (default: the seeds one "
        "after another, then as one vmapped ensemble)",
    )
    ap.add_argument(
        "--sample", type=int, help="a seeded subsample of this many rows, half labelled with K_VRH (dry runs)"
    )
    args = ap.parse_args()

    raw = yaml.safe_load(CONFIG.read_text())
    raw["name"] = "gpu_timing"
    raw["dataset"]["path"] = str(Path(args.table).resolve())
    if args.sample:
        raw["dataset"]["sample"] = {"n": args.sample - args.sample // 2, "keep": {"k_vrh": args.sample // 2}}
    raw["train"].update(device=args.device, amp=args.amp)
    raw["finetune"].update(sizes=[args.size], seeds=list(range(args.seeds)))
    raw["pretrain"] = [
        {"name": "ef", "property": "formation_energy_per_atom", "train": {"epochs": args.epochs, "warmup_epochs": 0}}
    ]
    cfg = load(raw, ROOT / "config" / "schema")
    config = cfg.as_dict()
    split_cfg = cfg.split_settings()
    threads = int(cfg.train.threads)

    w = args.work
    w.mkdir(parents=True, exist_ok=True)
    log = log_to(str(w / "gpu_timing.log"))
    table, graphs = w / "data" / "structures.parquet", w / "graphs" / cfg.graph_key()
    atom_features = cfg.featurize.atom_features or str(ROOT / "src" / "tlcgcnn" / "features" / "atom_features.csv")
    t0 = time.perf_counter()
    prepare(cfg, w, table, graphs, split_cfg)
    log.info("prepared %s and %s in %.0f s", table, graphs, time.perf_counter() - t0)

    from tlcgcnn.train.finetune import finetune_cell
    from tlcgcnn.train.pretrain import pretrain

    out = w / "pretrain" / "ef"
    shutil.rmtree(out, ignore_errors=True)  # no resumable state from an earlier call
    t = time.perf_counter()
    ck = pretrain(
        source=cfg.pretrain_source("ef"),
        table_path=str(table),
        split_path=str(w / "splits" / "ef.split.json"),
        graph_dir=str(graphs),
        atom_features_path=atom_features,
        target_splits=[str(w / "splits" / f"{n}.split.json") for n in cfg.transfer_target_names],
        split_cfg=split_cfg,
        threads=threads,
        config=config,
        out_checkpoint=str(out / "model.pt"),
    )
    seconds = time.perf_counter() - t
    res = ck["result"]
    el = ck["history"]["elapsed_s"]
    emit(
        {
            "measurement": "pretrain",
            "property": "formation_energy_per_atom",
            "device": res["hardware"],
            "precision": res["precision"],
            "seconds": round(seconds, 2),
            "epochs": res["epochs_run"],
            "epoch_s": [round(b - a, 3) for a, b in zip([0.0, *el[:-1]], el, strict=True)],
            "train_crystals": len(ck["split"]["train"]),
            "val_crystals": len(ck["split"]["val"]),
            "batch_size": ck["train_config"]["batch_size"],
            "accuracy": {"val_mae_eV_per_atom": round(float(res["best_val_mae"]), 5)},
        }
    )

    from tlcgcnn.config import Cell

    base = cfg.cell("log_kvrh", args.size, "scratch").as_params()
    for how in args.ensemble.split(","):
        cell = Cell.from_params({**base, "train": {**base["train"], "ensemble": how}})
        d = w / "finetune" / "log_kvrh" / f"n{args.size}" / f"scratch_ensemble_{how}"
        shutil.rmtree(d, ignore_errors=True)  # finished seeds would be reused
        t = time.perf_counter()
        records = finetune_cell(
            cell=cell,
            table_path=str(table),
            split_path=str(w / "splits" / "log_kvrh.split.json"),
            graph_dir=str(graphs),
            atom_features_path=atom_features,
            pretrained=None,
            split_cfg=split_cfg,
            threads=threads,
            config=config,
            out_metrics=str(d / "metrics.json"),
            out_predictions=str(d / "predictions.parquet"),
        )
        seconds = time.perf_counter() - t
        maes = [float(r["mae"]) for r in records]
        emit(
            {
                "measurement": "finetune_cell",
                "target": "log_kvrh",
                "size": args.size,
                "mode": "scratch",
                "seeds_as": "one vmapped ensemble" if how == "on" else "one after another",
                "device": records[0].get("hardware"),
                "precision": records[0].get("precision"),
                "seconds": round(seconds, 2),
                "seeds": len(records),
                "epochs_run": [r.get("epochs_run") for r in records],
                "accuracy": {
                    "test_mae_log10_GPa_mean": round(statistics.mean(maes), 5),
                    "test_mae_sd": round(statistics.stdev(maes), 5) if len(maes) > 1 else None,
                    "test_crystals": records[0].get("n_test"),
                },
            }
        )


def prepare(cfg: Any, w: Path, table: Path, graphs: Path, split_cfg: dict[str, Any]) -> None:
    """The ingest, featurize and split rules' calls (workflow/scripts/ingest.py, featurize.py,
    split.py) into ``w``; skipped where their outputs exist."""
    from tlcgcnn.data.ingest import IngestOptions, ingest
    from tlcgcnn.data.split import run as split
    from tlcgcnn.features.featurize import featurize, isolated_ids

    cores = os.cpu_count() or 1
    if not table.exists():
        ds = cfg.dataset_settings()
        ingest(
            ds["path"],
            str(table),
            str(w / "data" / "dropped.csv"),
            str(w / "data" / "ingest_summary.json"),
            IngestOptions(
                min_distance=ds["min_distance"],
                id_column=ds["id_column"],
                structure_column=ds["structure_column"],
                columns=ds["columns"],
                required_properties=cfg.required_properties(),
                threads=cores,
                source=ds["source_label"],
                labels=ds.get("labels"),
                sample=ds["sample"],
            ),
        )
    if not (graphs / "manifest.json").exists():
        featurize(
            str(table),
            str(graphs),
            cfg.featurize_params(),
            threads=cores,
            shard_size=cfg.featurize_settings()["shard_size"],
            progress=False,
        )
    subsets = w / "splits" / "subsets.json"
    if not subsets.exists():
        policy = cfg.featurize.isolated
        split(
            table_path=str(table),
            out=str(subsets),
            split_cfg=split_cfg,
            exclude=isolated_ids(str(graphs) if policy == "drop" else None, policy),
        )
    for name in ("ef", "log_kvrh"):
        path = w / "splits" / f"{name}.split.json"
        if not path.exists():
            split(
                table_path=str(table),
                out=str(path),
                split_cfg=split_cfg,
                subsets_path=str(subsets),
                spec=cfg.split_spec(name),
            )


def emit(rec: dict[str, Any]) -> None:
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
