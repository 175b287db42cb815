"""Pretrain a study's sources on a borrowed GPU machine, and time training epochs there.

For a machine that is lent for minutes, with no Snakemake, no network and no ``.git``: the
pretrain rule's arguments are worked out here, shipped with its inputs, and each source is
trained there by the same call the rule's script makes (:func:`tlcgcnn.pretrain.pretrain`).
Outputs land under the same paths as the rule's, so Snakemake takes them as done.

Three steps, run from the repository root:

    # here: the rule's arguments for each source (jobs.json) and its inputs, under .gpu/
    python benchmarks/gpu.py pack --configfile config/paper-cpu.yaml --workdir /work/run \\
        --sources ef_16k,ef_8k --out .gpu
    # there ($OUT comes back): epoch times solo, then every source at once until --deadline s
    TLCGCNN_GIT_COMMIT=<commit> python3 benchmarks/gpu.py run --pack .gpu --deadline 500 --out $OUT
    # here: finished checkpoints, logs and the resumable state of unfinished ones into the run
    python benchmarks/gpu.py unpack --archive <files_at>/pretrain.tar.gz --workdir /work/run

A source that did not finish leaves its ``state.pt`` beside ``model.pt``'s path; the pretrain
rule resumes it (on any device) from its last epoch. ``run`` writes ``gpu.json``: the
machine, per-precision epoch times on the largest source's training set, and per source its
wall time, epochs and best validation MAE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


# --------------------------------------------------------------------------- here: pack


def pack(configfile: Path, workdir: Path, sources: list[str], out: Path) -> dict[str, Any]:
    """Write ``out/jobs.json`` (each source's pretrain-rule arguments, paths relative to the
    repository root) and ``out/inputs.tar.gz`` (the table, graph shards and split files the
    jobs read, taken from ``workdir``)."""
    import yaml

    from tlcgcnn.config import load, resolve

    raw = yaml.safe_load(configfile.read_text())
    cfg = load(raw, ROOT / "config" / "schema")
    r = f"results/{cfg.name}"
    unknown = sorted(set(sources) - set(cfg.trained_pretrain_names))
    if unknown:
        raise SystemExit(f"{configfile}: no trained pretraining source named {', '.join(unknown)} (sources: {', '.join(cfg.trained_pretrain_names)})")
    graphs = f"{r}/graphs/{cfg.graph_key()}"
    target_splits = [f"{r}/splits/{t}.split.json" for t in cfg.transfer_target_names]
    atom_features = cfg.featurize.atom_features or "src/tlcgcnn/data/atom_features.csv"
    jobs = []
    for name in sources:
        done = workdir / r / "pretrain" / name / "model.pt"
        if done.exists():
            raise SystemExit(f"{done}: source {name} is already trained")
        jobs.append(
            {
                "name": name,
                "log": f"{r}/logs/pretrain/{name}.log",
                "kwargs": {
                    "source": cfg.pretrain_source(name).as_params(),
                    "table_path": f"{r}/data/structures.parquet",
                    "split_path": f"{r}/splits/{name}.split.json",
                    "graph_dir": graphs,
                    "atom_features_path": atom_features,
                    "target_splits": target_splits,
                    "split_cfg": cfg.split_settings(),
                    "threads": int(cfg.train.threads),
                    "config": resolve(raw).as_dict(),  # as the rule's script: resolve(snakemake.config)
                    "out_checkpoint": f"{r}/pretrain/{name}/model.pt",
                },
            }
        )
    inputs = sorted({f"{r}/data/structures.parquet", graphs, *target_splits, *(j["kwargs"]["split_path"] for j in jobs)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs.json").write_text(json.dumps({"config": str(configfile), "jobs": jobs}, indent=1))
    with tarfile.open(out / "inputs.tar.gz", "w:gz", compresslevel=6) as tar:
        for p in inputs:
            if not (workdir / p).exists():
                raise SystemExit(f"{workdir / p}: input of the pretrain rule is missing (run the study's ingest, split and featurize rules first)")
            tar.add(workdir / p, arcname=p)
    size = (out / "inputs.tar.gz").stat().st_size
    print(f"{out}/jobs.json: {len(jobs)} sources; {out}/inputs.tar.gz: {len(inputs)} paths, {size / 1e6:.1f} MB")
    return {"jobs": len(jobs), "inputs_bytes": size}


# --------------------------------------------------------------------------- there: run


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"unavailable: {err}"
    return info


def epoch_times(job: dict[str, Any], epochs: int, out_dir: Path) -> dict[str, Any]:
    """Seconds per epoch (training + validation, as the pretrain rule runs it) on the job's
    training set, alone on the device, in bf16 autocast and in fp32. The first epoch holds
    the start-up (CUDA context, kernels); the later ones are the steady state."""
    from tlcgcnn.train import run_training

    kw = job["kwargs"]
    res: dict[str, Any] = {"source": job["name"]}
    for amp in ("bf16", "none"):
        src = kw["source"]
        t = time.perf_counter()
        ck = run_training(
            stage="benchmark", table_path=kw["table_path"], split_path=kw["split_path"], graph_dir=kw["graph_dir"],
            atom_features_path=kw["atom_features_path"], pretrained=[], spec=src["target"], size=src["size"], seed=int(src["seed"]),
            mode=None, split_cfg=kw["split_cfg"], model_cfg=src["model"], train_cfg={**src["train"], "epochs": epochs, "amp": amp, "device": "cuda"},
            transfer=None, threads=kw["threads"], config=kw["config"], out_checkpoint=str(out_dir / f"epochs_{amp}.pt"), progress=False,
            exclude_ids=None,
        )
        el = ck["history"]["elapsed_s"]
        res[amp] = {
            "train_crystals": len(ck["split"]["train"]), "val_crystals": len(ck["split"]["val"]), "batch_size": ck["train_config"]["batch_size"],
            "epoch_s": [round(b - a, 3) for a, b in zip([0.0, *el[:-1]], el, strict=True)], "total_s_with_load": round(time.perf_counter() - t, 2),
            "device": ck["result"]["device"], "precision": ck["result"]["precision"],
        }
        print(f"epochs {amp}: {res[amp]['epoch_s']} s ({res[amp]['train_crystals']} train crystals, batch {res[amp]['batch_size']})", flush=True)
    return res


def run_job(pack_dir: Path, name: str) -> None:
    """One source, as the pretrain rule's script runs it."""
    from tlcgcnn.pretrain import pretrain
    from tlcgcnn.runtime import log_to

    job = next(j for j in json.loads((pack_dir / "jobs.json").read_text())["jobs"] if j["name"] == name)
    Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
    Path(job["kwargs"]["out_checkpoint"]).parent.mkdir(parents=True, exist_ok=True)
    log_to(job["log"])
    pretrain(**job["kwargs"])


def run(pack_dir: Path, deadline: float, bench_epochs: int, out: Path) -> dict[str, Any]:
    """Unpack the inputs, time epochs solo, then train every source at once (one process
    each) until they finish or ``deadline`` seconds after the start; pack what they left."""
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    spec = json.loads((pack_dir / "jobs.json").read_text())
    jobs = spec["jobs"]
    with tarfile.open(pack_dir / "inputs.tar.gz") as tar:
        tar.extractall(ROOT, filter="data")
    report: dict[str, Any] = {"machine": machine(), "config": spec["config"], "git_commit": os.environ.get("TLCGCNN_GIT_COMMIT"), "deadline_s": deadline}
    print(json.dumps(report["machine"]), flush=True)
    if bench_epochs > 0:
        biggest = max(jobs, key=lambda j: _size_rank(j["kwargs"]["source"]["size"]))
        try:
            report["epochs"] = epoch_times(biggest, bench_epochs, Path("/tmp"))
        except Exception as err:  # noqa: BLE001 - the pretraining still runs; the report says why
            report["epochs"] = {"error": f"{type(err).__name__}: {err}"}
            print(f"epoch timing failed: {err}", flush=True)
    procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    for j in jobs:
        procs[j["name"]] = (subprocess.Popen([sys.executable, __file__, "job", "--pack", str(pack_dir), "--name", j["name"]], cwd=ROOT, start_new_session=True), time.time())
    print(f"started {len(procs)} sources at {time.time() - t_start:.0f} s", flush=True)
    ended: dict[str, dict[str, Any]] = {}
    while len(ended) < len(procs):
        for name, (p, t0) in procs.items():
            if name not in ended and p.poll() is not None:
                ended[name] = {"returncode": p.returncode, "wall_s": round(time.time() - t0, 1)}
                print(f"{name}: exit {p.returncode} after {ended[name]['wall_s']} s", flush=True)
        if time.time() - t_start > deadline:
            for name, (p, t0) in procs.items():
                if name not in ended:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    ended[name] = {"returncode": "killed at the deadline", "wall_s": round(time.time() - t0, 1)}
                    print(f"{name}: stopped at the deadline after {ended[name]['wall_s']} s", flush=True)
            break
        time.sleep(2)
    report["sources"] = {}
    with tarfile.open(out / "pretrain.tar.gz", "w:gz") as tar:
        for j in jobs:
            ck = Path(j["kwargs"]["out_checkpoint"])
            state = ck.with_name("state.pt")
            info = {**ended[j["name"]], "finished": ck.exists(), "resumable_state": state.exists()}
            for p in (ck, state, Path(j["log"])):
                if p.exists():
                    tar.add(p, arcname=str(p))
            if ck.exists():
                import torch

                res = torch.load(ck, map_location="cpu", weights_only=False)["result"]
                info.update({k: res[k] for k in ("best_epoch", "best_val_mae", "epochs_run", "seconds", "device", "precision")})
            report["sources"][j["name"]] = info
    report["wall_s"] = round(time.time() - t_start, 1)
    (out / "gpu.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["sources"], indent=1), flush=True)
    return report


def _size_rank(size: Any) -> float:
    return float("inf") if size in ("all", None) else float(size)


# --------------------------------------------------------------------------- here: unpack


def _source_of(member: str) -> str:
    """The source a packed path belongs to: ``.../pretrain/<name>/x`` or ``.../logs/pretrain/<name>.log``."""
    p = Path(member)
    return p.stem if p.parent.name == "pretrain" and p.parent.parent.name == "logs" else p.parent.name


def unpack(archive: Path, workdir: Path) -> list[str]:
    """Put the archive's checkpoints, logs and training states into ``workdir``. A source
    trained there meanwhile is left alone (none of its files is overwritten)."""
    placed, kept = [], set()
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for m in members:
            if m.name.endswith("/model.pt") and (workdir / m.name).exists():
                kept.add(_source_of(m.name))
        for m in members:
            if _source_of(m.name) in kept:
                continue
            dest = workdir / m.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(src, fh)
            os.replace(tmp, dest)
            placed.append(m.name)
    for name in sorted(kept):
        print(f"{name}: already trained in {workdir}; left alone")
    for p in placed:
        print(f"placed {p}")
    return placed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--configfile", type=Path, required=True)
    a.add_argument("--workdir", type=Path, default=ROOT)
    a.add_argument("--sources", required=True, help="comma-separated pretrain source names")
    a.add_argument("--out", type=Path, default=ROOT / ".gpu")
    b = sub.add_parser("run")
    b.add_argument("--pack", type=Path, default=ROOT / ".gpu")
    b.add_argument("--deadline", type=float, default=500.0, help="seconds after the start at which unfinished sources are stopped")
    b.add_argument("--bench-epochs", type=int, default=3)
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("job")
    c.add_argument("--pack", type=Path, required=True)
    c.add_argument("--name", required=True)
    d = sub.add_parser("unpack")
    d.add_argument("--archive", type=Path, required=True)
    d.add_argument("--workdir", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.configfile, args.workdir, [s for s in args.sources.split(",") if s], args.out)
    elif args.cmd == "run":
        run(args.pack, args.deadline, args.bench_epochs, args.out)
    elif args.cmd == "job":
        run_job(args.pack, args.name)
    else:
        unpack(args.archive, args.workdir)


if __name__ == "__main__":
    main()
