"""The own-data path as a user runs it, timed: a CIF folder with ``id_prop.csv`` and a label
the package does not know, fine-tuned from the published ΔEf model with ``tlcgcnn finetune``
(sizes 50 / 100 / all, 3 seeds, scratch vs transfer, default training settings), and
``tlcgcnn.load_model(...).predict`` on 1,000 structures.

Data: the committed MP-2018 subset (``resources/mp2018/``): the first ``--n`` crystals with a
bulk modulus (by id) as ``my_modulus`` in GPa for the fine-tune; 1,000 other crystals of the
subset as CIF files for prediction. Run from the repository root, alone on the machine:

    python benchmarks/own_data.py --n 500 --out benchmarks/own_data.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="labelled crystals in the CIF folder")
    ap.add_argument("--predict", type=int, default=1000, help="structures to predict")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "own_data.json")
    args = ap.parse_args()

    df = pd.read_parquet(SUBSET, columns=["material_id", "k_vrh", "cif"]).sort_values("material_id")
    labelled = df.dropna(subset=["k_vrh"]).iloc[: args.n]
    others = df[~df["material_id"].isin(labelled["material_id"])].iloc[: args.predict]
    record: dict = {
        "cpu": cpu_model(),
        "cores": args.cores,
        "load_before": os.getloadavg()[0],
        "n_labelled": len(labelled),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cifs, new = root / "my_cifs", root / "new_cifs"
        cifs.mkdir()
        new.mkdir()
        for rec in labelled.itertuples():
            (cifs / f"{rec.material_id}.cif").write_text(rec.cif)
        (cifs / "id_prop.csv").write_text("".join(f"{r.material_id},{r.k_vrh}\n" for r in labelled.itertuples()))
        for rec in others.itertuples():
            (new / f"{rec.material_id}.cif").write_text(rec.cif)

        exe = Path(sys.executable).parent / "tlcgcnn"
        cmd = [
            str(exe),
            "finetune",
            "--pretrained",
            "mp2018-ef",
            "--data",
            str(cifs),
            "--label",
            "my_modulus",
            "--unit",
            "GPa",
            "--transform",
            "log10",
            "--sizes",
            "50",
            "100",
            "all",
            "--seeds",
            "0",
            "1",
            "2",
            "--modes",
            "scratch",
            "transfer",
            "--workdir",
            str(root / "run"),
            "--cores",
            str(args.cores),
        ]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        record["finetune_seconds"] = time.perf_counter() - t0
        record["finetune_command"] = " ".join(cmd[1:]).replace(str(root), "<tmp>")
        if res.returncode != 0:
            print(res.stderr[-4000:], file=sys.stderr)
            return 1
        results = root / "run" / "results" / "my_cifs_my_modulus"
        tt = pd.read_csv(results / "stats" / "ttests.csv")
        record["ttests"] = tt[["size", "mode", "mae_baseline", "mae_mode", "p_value"]].to_dict("records")

        import tlcgcnn

        files = sorted(new.glob("*.cif"))
        t0 = time.perf_counter()
        model = tlcgcnn.load_model("mp2018-log_kvrh")
        pred = model.predict(files, threads=1)
        record["predict_seconds"] = time.perf_counter() - t0
        record["predict_structures"] = len(files)
        record["predicted"] = len(pred)
        record["dropped"] = len(pred.attrs["dropped"])
    record["load_after"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
