"""Run a study's training jobs on a borrowed GPU machine; time training epochs there.

For a machine that is lent for minutes, with no Snakemake, no network and no ``.git``: each
job's rule arguments are worked out here, shipped with its inputs, and the job runs there by
the same call the rule's script makes (:func:`tlcgcnn.pretrain.pretrain`,
:func:`tlcgcnn.finetune.finetune_cell`). Outputs land under the rule's own paths, so
Snakemake takes them as done. The study's other jobs keep running here meanwhile (give
Snakemake ``--omit-from`` the packed cells' ``metrics.json``).

Three steps, run from the repository root:

    # here: the jobs' arguments (jobs.json) and inputs (inputs.tar.gz) under .gpu/ (ignored):
    # pretraining sources by name, fine-tuning cells by training size (those not started;
    # with --started also those started here, with their finished seeds and resumable state)
    python benchmarks/gpu.py pack --configfile config/paper-cpu.yaml --workdir /work/run \\
        --sources ef_16k,ef_8k --sizes 1000,2000 --out .gpu
    # there ($OUT comes back): epoch times solo (if a source is packed), then the jobs,
    # --max-parallel at a time, until they end or --deadline s have passed
    TLCGCNN_GIT_COMMIT=<commit> python3 benchmarks/gpu.py run --pack .gpu --deadline 400 --out $OUT
    # here: finished outputs and logs, and unfinished jobs' seeds and states, into the run
    python benchmarks/gpu.py unpack --archive <files_at>/results.tar.gz* --workdir /work/run \\
        --report <files_at>/gpu.json

A job stopped at the deadline brings back its resumable state (a source's ``state.pt``, a
cell's finished seeds and its running seed's state); its rule resumes it, on any device.
``run`` writes ``gpu.json``: the machine, per-precision epoch times on the largest packed
source's training set, and per job its wall time and result. ``unpack --report`` (or
``timings``) writes those wall times as benchmark files under the study's
``benchmarks/offload/``, which the report sums per rule and device.
"""

from __future__ import annotations

import argparse
import io
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

from tlcgcnn import io as tlio  # noqa: E402  (torch-free: atomic writes)


# --------------------------------------------------------------------------- here: pack


def pack(configfile: Path, workdir: Path, sources: list[str], sizes: list[str], out: Path, started: bool = False) -> dict[str, Any]:
    """Write ``out/jobs.json`` (each job's rule arguments, paths relative to the repository
    root: the pretraining ``sources`` named, and every graph-model fine-tuning cell of the
    training ``sizes`` given that ``workdir`` has not started) and ``out/inputs.tar.gz`` (the
    table, graph shards, split files and source checkpoints the jobs read, from ``workdir``).
    ``started``: also the unfinished cells ``workdir`` has started, shipped with their
    ``runs/`` (finished seeds' records and predictions, the running seed's ``state.pt``;
    not the seeds' weights), which the cell keeps and resumes there."""
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
    common = {"table_path": f"{r}/data/structures.parquet", "graph_dir": graphs, "atom_features_path": atom_features, "split_cfg": cfg.split_settings(), "threads": int(cfg.train.threads)}
    jobs: list[dict[str, Any]] = []
    for name in sources:
        done = workdir / r / "pretrain" / name / "model.pt"
        if done.exists():
            raise SystemExit(f"{done}: source {name} is already trained")
        kw = {**common, "source": cfg.pretrain_source(name).as_params(), "split_path": f"{r}/splits/{name}.split.json", "target_splits": target_splits, "out_checkpoint": f"{r}/pretrain/{name}/model.pt"}
        jobs.append({"rule": "pretrain", "name": name, "log": f"{r}/logs/pretrain/{name}.log", "outputs": [kw["out_checkpoint"]], "resume": f"{r}/pretrain/{name}/state.pt", "kwargs": kw})
    cells = [c for c in cfg.cells() if c.mode.kind == "gnn" and str(c.size) in sizes]
    for c in sorted(cells, key=lambda c: -_size_rank(c.size)):
        d = f"{r}/finetune/{c.target.name}/n{c.size}/{c.mode.name}"
        runs = workdir / d / "runs"
        if (workdir / d / "metrics.json").exists() or (runs.exists() and not started):
            continue  # finished, or partly run there: the workflow finishes it (unless `started`)
        source = c.mode.pretrained
        pretrained = [cfg.pretrained_checkpoint(source) or f"{r}/pretrain/{source}/model.pt"] if source else []
        params = c.as_params()
        kw = {**common, "cell": params, "split_path": f"{r}/splits/{c.target.name}.split.json", "pretrained": pretrained, "device": params["train"]["device"], "out_metrics": f"{d}/metrics.json", "out_predictions": f"{d}/predictions.parquet"}
        name = f"{c.target.name}/n{c.size}/{c.mode.name}"
        ship = sorted(str(f.relative_to(workdir)) for f in runs.rglob("*") if f.is_file() and f.name != "model.pt" and _whole_files(tarfile.TarInfo(f.name)) is not None) if runs.exists() else []
        jobs.append({"rule": "finetune", "name": name, "log": f"{r}/logs/finetune/{name}.log", "outputs": [kw["out_metrics"], kw["out_predictions"]], "resume": f"{d}/runs", "kwargs": kw, "ship": ship})
    inputs = {common["table_path"], graphs}
    made = {p for j in jobs for p in j["outputs"]}  # a packed source is trained there before its cells
    for j in jobs:
        kw = j["kwargs"]
        inputs.add(kw["split_path"])
        inputs.update(kw.get("target_splits", []))
        inputs.update(p for p in kw.get("pretrained", []) if p.startswith("results/") and p not in made)  # the zoo's travel with the repository
        inputs.update(j.get("ship", []))  # a started cell's finished seeds and resumable state
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs.json").write_text(json.dumps({"config_file": str(configfile), "results": r, "config": resolve(raw).as_dict(), "jobs": jobs}, indent=1))
    with tarfile.open(out / "inputs.tar.gz", "w:gz", compresslevel=6) as tar:
        for p in sorted(inputs):
            if not (workdir / p).exists():
                raise SystemExit(f"{workdir / p}: a job's input is missing (run the study's ingest, split, featurize and pretrain rules first)")
            tar.add(workdir / p, arcname=p)
    size = (out / "inputs.tar.gz").stat().st_size
    print(f"{out}/jobs.json: {len(jobs)} jobs; {out}/inputs.tar.gz: {len(inputs)} paths, {size / 1e6:.1f} MB")
    return {"jobs": len(jobs), "inputs_bytes": size}


# --------------------------------------------------------------------------- there: run


def machine() -> dict[str, Any]:
    import torch

    from tlcgcnn.provenance import cpu_model

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count(), "cpu": cpu_model()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"unavailable: {err}"
    return info


def epoch_times(job: dict[str, Any], config: dict[str, Any], epochs: int, out_dir: Path) -> dict[str, Any]:
    """Seconds per epoch (training + validation, as the pretrain rule runs it) on a source's
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
            transfer=None, threads=kw["threads"], config=config, out_checkpoint=str(out_dir / f"epochs_{amp}.pt"), progress=False,
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
    """One job, as its rule's script runs it (workflow/scripts/pretrain.py, finetune.py)."""
    from tlcgcnn.runtime import log_to

    spec = json.loads((pack_dir / "jobs.json").read_text())
    job = next(j for j in spec["jobs"] if j["name"] == name)
    for p in (job["log"], *job["outputs"]):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    log_to(job["log"])
    if job["rule"] == "pretrain":
        from tlcgcnn.pretrain import pretrain

        pretrain(**job["kwargs"], config=spec["config"])
    else:
        from tlcgcnn.finetune import finetune_cell

        finetune_cell(**job["kwargs"], config=spec["config"])


def run(pack_dir: Path, deadline: float, bench_epochs: int, max_parallel: int, out: Path, part_bytes: int = 15 * 2**20) -> dict[str, Any]:
    """Unpack the inputs, time epochs solo (if a source is packed), then run the jobs, at
    most ``max_parallel`` at once (one process each, in the packed order), until they finish
    or ``deadline`` seconds after the start; pack what they left in ``out/results.tar.gz``
    (cut into parts above ``part_bytes``). A finished job brings back its outputs and log
    (not a fine-tuning cell's per-seed files); an unfinished one its log and its finished
    seeds and resumable state."""
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    spec = json.loads((pack_dir / "jobs.json").read_text())
    jobs = spec["jobs"]
    with tarfile.open(pack_dir / "inputs.tar.gz") as tar:
        tar.extractall(ROOT, filter="data")
    report: dict[str, Any] = {
        "machine": machine(), "config": spec["config_file"], "results": spec.get("results"), "git_commit": os.environ.get("TLCGCNN_GIT_COMMIT"),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)), "deadline_s": deadline, "max_parallel": max_parallel,
    }
    print(json.dumps(report["machine"]), flush=True)
    sources = [j for j in jobs if j["rule"] == "pretrain"]
    if bench_epochs > 0 and sources:
        biggest = max(sources, key=lambda j: _size_rank(j["kwargs"]["source"]["size"]))
        try:
            report["epochs"] = epoch_times(biggest, spec["config"], bench_epochs, Path("/tmp"))
        except Exception as err:  # noqa: BLE001 - the jobs still run; the report says why
            report["epochs"] = {"error": f"{type(err).__name__}: {err}"}
            print(f"epoch timing failed: {err}", flush=True)
    waiting = list(jobs)
    running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    ended: dict[str, dict[str, Any]] = {}
    while waiting or running:
        for name, (p, t0) in list(running.items()):
            if p.poll() is not None:
                ended[name] = {"returncode": p.returncode, "wall_s": round(time.time() - t0, 1)}
                del running[name]
                print(f"{time.time() - t_start:5.0f} s  {name}: exit {p.returncode} after {ended[name]['wall_s']} s", flush=True)
        if time.time() - t_start > deadline:
            for name, (p, t0) in running.items():
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                ended[name] = {"returncode": "killed at the deadline", "wall_s": round(time.time() - t0, 1)}
                print(f"{name}: stopped at the deadline after {ended[name]['wall_s']} s", flush=True)
            for j in waiting:
                ended[j["name"]] = {"returncode": "not started before the deadline", "wall_s": 0.0}
            break
        while waiting and len(running) < max_parallel:
            j = waiting.pop(0)
            cmd = [sys.executable, __file__, "job", "--pack", str(pack_dir), "--name", j["name"]]
            running[j["name"]] = (subprocess.Popen(cmd, cwd=ROOT, start_new_session=True), time.time())
        time.sleep(1)
    report["jobs"] = {}
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for j in jobs:
            outs = [Path(p) for p in j["outputs"]]
            done = all(p.exists() for p in outs)
            info = {"rule": j["rule"], **ended[j["name"]], "finished": done}
            keep = [*outs, Path(j["log"])] if done else [Path(j["log"]), Path(j["resume"])]
            for p in keep:
                if p.exists():
                    tar.add(p, arcname=str(p), filter=_whole_files)
            if done and j["rule"] == "pretrain":
                import torch

                res = torch.load(outs[0], map_location="cpu", weights_only=False)["result"]
                info.update({k: res[k] for k in ("best_epoch", "best_val_mae", "epochs_run", "seconds", "device", "precision")})
            elif done:
                recs = json.loads(outs[0].read_text())
                info.update({"seeds": len(recs), "mean_error": round(sum(r["error"] for r in recs) / len(recs), 5)})
            report["jobs"][j["name"]] = info
    parts = split_file(out / "results.tar.gz", part_bytes)
    report["wall_s"] = round(time.time() - t_start, 1)
    report["archive_parts"] = [p.name for p in parts]
    (out / "gpu.json").write_text(json.dumps(report, indent=1))
    n_done = sum(v["finished"] for v in report["jobs"].values())
    print(f"{n_done} of {len(jobs)} jobs finished in {report['wall_s']} s", flush=True)
    return report


def _whole_files(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave out a temporary file that a job killed at the deadline was writing
    (:func:`tlcgcnn.io.atomic_path`: ``.<name>.<random>.tmp``)."""
    name = Path(info.name).name
    return None if name.startswith(".") and name.endswith(".tmp") else info


def split_file(path: Path, part_bytes: int) -> list[Path]:
    """Cut ``path`` into ``path.part-000``, ``-001``, ... of at most ``part_bytes`` each (a
    lender may return files of a limited size); a file that fits stays whole."""
    if path.stat().st_size <= part_bytes:
        return [path]
    parts = []
    with open(path, "rb") as fh:
        while chunk := fh.read(part_bytes):
            parts.append(path.with_name(f"{path.name}.part-{len(parts):03d}"))
            parts[-1].write_bytes(chunk)
    path.unlink()
    return parts


def _size_rank(size: Any) -> float:
    return float("inf") if size in ("all", None) else float(size)


# --------------------------------------------------------------------------- here: unpack


def device_name(report: dict[str, Any]) -> str:
    """The machine a ``run`` report ran on, as its timing files name it: the GPU, else its CPU."""
    m = report.get("machine") or {}
    return str(m.get("gpu") or f"CPU {m.get('cpu') or ''}".strip())


def timing_files(report: dict[str, Any], results: str, workdir: Path) -> list[Path]:
    """Write each job's wall time on the other machine as a benchmark file under
    ``<results>/benchmarks/offload/`` at its rule's own benchmark path (rules/pretrain.smk,
    rules/finetune.smk), so the study's per-rule compute (:func:`tlcgcnn.report.wall_times`)
    counts it, as ``<rule> on <device>``. Columns: Snakemake's ``s`` and ``h:m:s``, plus
    ``device``, ``finished`` (a job stopped at the deadline still did work: its seeds or
    state came back) and ``git_commit``. A row already there (same commit and seconds) is
    not written twice. ``report``: ``run``'s gpu.json (the first version kept sources
    under ``sources``)."""
    import pandas as pd

    jobs = report.get("jobs") or {name: {"rule": "pretrain", **info} for name, info in (report.get("sources") or {}).items()}
    written = []
    for name, info in jobs.items():
        wall = float(info.get("wall_s") or 0.0)
        if wall <= 0:
            continue  # not started before the deadline
        path = workdir / results / "benchmarks" / "offload" / str(info["rule"]) / f"{name}.tsv"
        row = pd.DataFrame([{"s": round(wall, 4), "h:m:s": time.strftime("%H:%M:%S", time.gmtime(wall)), "device": device_name(report),
                             "finished": bool(info.get("finished")), "git_commit": report.get("git_commit")}])
        old = pd.read_csv(path, sep="\t", dtype={"git_commit": str}) if path.exists() else None
        if old is not None and ((old["git_commit"].astype(str) == str(report.get("git_commit"))) & (old["s"].round(4) == row["s"].iloc[0])).any():
            continue
        table = row if old is None else pd.concat([old, row], ignore_index=True)
        with tlio.atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False)
        written.append(path)
    print(f"{len(written)} timing files under {workdir / results / 'benchmarks' / 'offload'}")
    return written


def unpack(archive: list[Path], pack_dir: Path, workdir: Path, report: Path | None = None) -> list[str]:
    """Put the archive's finished outputs and logs, and the resumable state of unfinished
    jobs, into ``workdir``. ``archive``: the file, or its parts in order. A job finished
    there meanwhile is left alone. ``report``: ``run``'s gpu.json, whose job times become
    benchmark files (:func:`timing_files`)."""
    jobs = json.loads((pack_dir / "jobs.json").read_text())["jobs"]
    placed: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in archive)), mode="r:gz") as tar:
        names = {m.name: m for m in tar.getmembers() if m.isfile()}
        for j in jobs:
            if all((workdir / p).exists() for p in j["outputs"]):
                print(f"{j['name']}: already finished in {workdir}; left alone")
                continue
            own = (j["log"], *j["outputs"], j["resume"])  # files, or the folder of a cell's seeds
            for name, m in names.items():
                if not any(name == p or name.startswith(p + "/") for p in own) or _whole_files(m) is None:
                    continue
                src = tar.extractfile(m)
                assert src is not None
                with tlio.atomic_path(workdir / name) as tmp, open(tmp, "wb") as fh:
                    shutil.copyfileobj(src, fh)
                placed.append(name)
    print(f"placed {len(placed)} files in {workdir}")
    if report is not None:
        spec = json.loads((pack_dir / "jobs.json").read_text())
        timing_files(json.loads(report.read_text()), spec.get("results") or f"results/{spec['config']['name']}", workdir)
    return placed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--configfile", type=Path, required=True)
    a.add_argument("--workdir", type=Path, default=ROOT)
    a.add_argument("--sources", default="", help="comma-separated pretraining source names")
    a.add_argument("--sizes", default="", help="comma-separated training sizes: every unfinished graph-model fine-tuning cell of these")
    a.add_argument("--out", type=Path, default=ROOT / ".gpu")
    a.add_argument("--started", action="store_true", help="also the cells of these sizes that the workdir has started (with their finished seeds and resumable state)")
    b = sub.add_parser("run")
    b.add_argument("--pack", type=Path, default=ROOT / ".gpu")
    b.add_argument("--deadline", type=float, default=500.0, help="seconds after the start at which unfinished jobs are stopped")
    b.add_argument("--bench-epochs", type=int, default=3)
    b.add_argument("--max-parallel", type=int, default=16)
    b.add_argument("--part-mb", type=float, default=15.0, help="cut the returned archive into parts of at most this many MiB")
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("job")
    c.add_argument("--pack", type=Path, required=True)
    c.add_argument("--name", required=True)
    d = sub.add_parser("unpack")
    d.add_argument("--archive", type=Path, nargs="+", required=True, help="results.tar.gz, or its parts in order")
    d.add_argument("--pack", type=Path, default=ROOT / ".gpu")
    d.add_argument("--workdir", type=Path, required=True)
    d.add_argument("--report", type=Path, help="run's gpu.json: its job times become benchmark files under results/<name>/benchmarks/offload/")
    e = sub.add_parser("timings", help="only write the benchmark files of a run's gpu.json (as unpack --report)")
    e.add_argument("--report", type=Path, required=True)
    e.add_argument("--results", required=True, help="the study's results folder, e.g. results/paper-cpu")
    e.add_argument("--workdir", type=Path, default=ROOT)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.configfile, args.workdir, [s for s in args.sources.split(",") if s], [s for s in args.sizes.split(",") if s], args.out, args.started)
    elif args.cmd == "run":
        run(args.pack, args.deadline, args.bench_epochs, args.max_parallel, args.out, int(args.part_mb * 2**20))
    elif args.cmd == "job":
        run_job(args.pack, args.name)
    elif args.cmd == "timings":
        timing_files(json.loads(args.report.read_text()), args.results, args.workdir)
    else:
        unpack(args.archive, args.pack, args.workdir, args.report)


if __name__ == "__main__":
    main()
