"""Snapshots carry an unfinished run from one machine to the next (tlcgcnn.snapshot)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, tiny_mp500_config
from tlcgcnn import snapshot
from tlcgcnn.snapshot import SnapshotError


def _write(path: Path, text: str = "x", mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _marker(workdir: Path, kind: str, rel: str) -> None:
    _write(workdir / ".snakemake" / kind / base64.urlsafe_b64encode(rel.encode()).decode(), "{}")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A results folder as a run leaves it (file contents stand in for real ones: what is
    tested is which files travel, their bytes and their mtimes)."""
    r = tmp_path / "results" / "demo"
    t0 = 1_700_000_000_000_000_000
    for i, rel in enumerate([
        "data/structures.parquet", "data/ingest_summary.json", "graphs/abc/shard_000.npz", "graphs/abc/.snakemake_timestamp",
        "splits/log_kvrh.split.json", "pretrain/ef/model.pt", "pretrain/ef/state.pt",
        "finetune/log_kvrh/n50/scratch/metrics.json", "finetune/log_kvrh/n50/scratch/predictions.parquet",
        "finetune/log_kvrh/n50/scratch/runs/s0/metrics.json", "finetune/log_kvrh/n50/scratch/runs/s0/model.pt",
        "finetune/log_kvrh/n50/scratch/runs/s0/run_key", "finetune/log_kvrh/n100/scratch/runs/s0/state.pt",
        "finetune/log_kvrh/n100/scratch/runs/s1/model.pt", "finetune/log_kvrh/n100/ef_ft/predictions.parquet", "logs/ingest.log", "stats/.ttests.csv.abc123.tmp",
    ]):
        _write(r / rel, f"content of {rel}", t0 + i * 1_000_000_123)
    return r


def test_save_leaves_out_regenerated_resumable_and_incomplete_files_and_lists_each(run_dir: Path, tmp_path: Path):
    _marker(tmp_path, "incomplete", "results/demo/finetune/log_kvrh/n100/ef_ft/predictions.parquet")
    archive = tmp_path / "snap.tar.xz"
    manifest = snapshot.save("results/demo", archive, workdir=tmp_path)
    why = {f["path"]: f["left_out"] for f in manifest["files"]}
    assert len(why) == 17
    assert why["data/structures.parquet"] == why["graphs/abc/shard_000.npz"] == why["splits/log_kvrh.split.json"] == "regenerated"
    assert why["finetune/log_kvrh/n50/scratch/runs/s0/metrics.json"] == snapshot.FINISHED_SEEDS  # the cell holds them
    assert "weights" in why["finetune/log_kvrh/n100/scratch/runs/s1/model.pt"]
    assert "incomplete" in why["finetune/log_kvrh/n100/ef_ft/predictions.parquet"]
    assert "temporary" in why["stats/.ttests.csv.abc123.tmp"]
    kept = {p for p, w in why.items() if w is None}
    assert kept == {  # a stopped run's state.pt travels: it resumes from it
        "pretrain/ef/state.pt", "finetune/log_kvrh/n100/scratch/runs/s0/state.pt",
        "pretrain/ef/model.pt", "finetune/log_kvrh/n50/scratch/metrics.json",
        "finetune/log_kvrh/n50/scratch/predictions.parquet", "logs/ingest.log",
    }
    with tarfile.open(archive) as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(["snapshot.json"] + [f"files/{p}" for p in kept])
    shown = snapshot._summary(snapshot.read_manifest(archive))
    assert "6 files" in shown and "1 fine-tuning cells (+ 0 seeds of unfinished ones), 1 pretrained sources" in shown


def test_restore_brings_back_bytes_and_mtimes_and_refuses_to_overwrite(run_dir: Path, tmp_path: Path):
    archive = tmp_path / "snap.tar.xz"
    manifest = snapshot.save("results/demo", archive, workdir=tmp_path)
    new = tmp_path / "clone"
    rep = snapshot.restore(archive, workdir=new, regenerate=False)
    assert rep.restored == 7 and not rep.regenerated_same  # 6 + the cell no job marks incomplete here
    assert sorted(rep.regenerated_missing) == [
        "data/ingest_summary.json", "data/structures.parquet", "graphs/abc/.snakemake_timestamp", "graphs/abc/shard_000.npz", "splits/log_kvrh.split.json",
    ]
    kept = sorted((f for f in manifest["files"] if f["left_out"] is None), key=lambda f: f["mtime_ns"])
    script = _write(new / "workflow" / "scripts" / "finetune.py")  # a fresh clone: newer than any saved result
    assert script.stat().st_mtime_ns > kept[-1]["mtime_ns"]
    snapshot.restore(archive, workdir=new, regenerate=False, force=True)
    stamps = [(new / "results" / "demo" / f["path"]).stat().st_mtime_ns for f in kept]
    for f in kept:
        assert (new / "results" / "demo" / f["path"]).read_text() == f"content of {f['path']}"
    assert stamps == sorted(set(stamps)) and stamps[0] > script.stat().st_mtime_ns  # the run's order, after the checkout
    assert stamps[-1] <= time.time_ns()
    with pytest.raises(SnapshotError, match="already holds files"):
        snapshot.restore(archive, workdir=new, regenerate=False)


def test_a_regenerated_file_that_differs_reruns_its_dependents_unless_trusted(run_dir: Path, tmp_path: Path):
    """Another CPU rounds the last bits of featurized floats differently: the regenerated
    bytes differ. By default that file is newest (what depends on it reruns); trusted, it
    takes its recorded place in the run's order, older than the restored results."""
    archive = tmp_path / "snap.tar.xz"
    manifest = snapshot.save("results/demo", archive, workdir=tmp_path)
    recorded = {f["path"]: f for f in manifest["files"]}
    kept = sorted((f["path"] for f in manifest["files"] if f["left_out"] is None), key=lambda p: recorded[p]["mtime_ns"])
    for trust in (False, True):
        new = tmp_path / f"clone-{trust}"
        for f in manifest["files"]:  # as the regeneration rebuilt them: one file's bytes differ
            if f["left_out"] == "regenerated":
                _write(new / "results" / "demo" / f["path"], f"content of {f['path']}" + (" (other rounding)" if f["path"].endswith(".npz") else ""))
        rep = snapshot.restore(archive, workdir=new, regenerate=False, force=True, trust_regenerated=trust)
        shard = (new / "results" / "demo" / "graphs/abc/shard_000.npz").stat().st_mtime_ns
        newest_restored = max((new / "results" / "demo" / p).stat().st_mtime_ns for p in kept)
        same = ["data/ingest_summary.json", "data/structures.parquet", "splits/log_kvrh.split.json"]
        assert sorted(rep.regenerated_same) == sorted(same + ["graphs/abc/.snakemake_timestamp"] * trust)
        if trust:
            assert rep.regenerated_trusted == ["graphs/abc/shard_000.npz"] and not rep.regenerated_changed
            ts = (new / "results" / "demo" / "graphs/abc/.snakemake_timestamp").stat().st_mtime_ns
            assert shard < ts < (new / "results" / "demo" / "pretrain/ef/model.pt").stat().st_mtime_ns  # the recorded order
        else:
            assert rep.regenerated_changed == ["graphs/abc/shard_000.npz", "graphs/abc/.snakemake_timestamp"] and not rep.regenerated_trusted
            assert shard > newest_restored  # newer than every restored result: its dependents rerun


def test_regeneration_targets_ask_for_directory_outputs_whole():
    entries = [snapshot.Entry(p, 1, 1, "0", "regenerated") for p in ("data/a.parquet", "graphs/k/.snakemake_timestamp", "graphs/k/s0.npz", "graphs/k/sub/x")]
    assert snapshot.regeneration_targets(entries, "results/demo") == ["results/demo/graphs/k", "results/demo/data/a.parquet"]


def test_save_refuses_while_snakemake_holds_a_lock_and_restore_rejects_a_damaged_archive(run_dir: Path, tmp_path: Path):
    _write(tmp_path / ".snakemake" / "locks" / "0.input.lock")
    with pytest.raises(SnapshotError, match="holds a lock"):
        snapshot.save("results/demo", tmp_path / "snap.tar.xz", workdir=tmp_path)
    shutil.rmtree(tmp_path / ".snakemake" / "locks")
    archive = tmp_path / "snap.tar.xz"
    snapshot.save("results/demo", archive, workdir=tmp_path)
    with tarfile.open(archive) as tar:  # a copy whose manifest records other bytes for one file
        manifest = json.loads(tar.extractfile("snapshot.json").read())  # type: ignore[union-attr]
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.name != "snapshot.json"]  # type: ignore[union-attr]
    next(f for f in manifest["files"] if f["path"] == "logs/ingest.log")["sha256"] = "0" * 64
    bad = tmp_path / "bad.tar.xz"
    with tarfile.open(bad, "w:xz") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("snapshot.json")
        info.size = len(data)
        import io

        tar.addfile(info, io.BytesIO(data))
        for m, blob in members:
            tar.addfile(m, io.BytesIO(blob))
    with pytest.raises(SnapshotError, match="logs/ingest.log does not match its sha256"):
        snapshot.restore(bad, workdir=tmp_path / "clone", regenerate=False)
    (tmp_path / "junk.tar.xz").write_bytes(b"not an archive")
    with pytest.raises(SnapshotError, match="not a tlcgcnn snapshot"):
        snapshot.read_manifest(tmp_path / "junk.tar.xz")


def test_restore_warns_when_a_setting_changed_not_when_a_comment_did(run_dir: Path, tmp_path: Path):
    cfg = _write(tmp_path / "demo.yaml", "name: demo\nfinetune: {seeds: [0, 1]}\n")
    archive = tmp_path / "snap.tar.xz"
    snapshot.save("results/demo", archive, workdir=tmp_path, config_path=cfg)
    cfg.write_text("# how this run spans machines\nname: demo\nfinetune:\n  seeds: [0, 1]\n")
    rep = snapshot.restore(archive, workdir=tmp_path / "a", configfile=cfg, regenerate=False)
    assert not [w for w in rep.warnings if "differs from the config" in w], rep.warnings
    cfg.write_text("name: demo\nfinetune: {seeds: [0, 1, 2]}\n")
    rep = snapshot.restore(archive, workdir=tmp_path / "b", configfile=cfg, regenerate=False)
    assert [w for w in rep.warnings if "differs from the config" in w], rep.warnings


def test_a_live_save_beside_a_running_job_keeps_what_was_whole_and_leaves_out_what_started(run_dir: Path, tmp_path: Path, monkeypatch):
    _write(tmp_path / ".snakemake" / "locks" / "0.input.lock")  # Snakemake is running
    state = run_dir / "finetune/log_kvrh/n100/scratch/runs/s0/state.pt"
    log = run_dir / "logs/ingest.log"
    real_read = Path.read_bytes
    seen: dict[str, int] = {}

    def racing_read(self: Path) -> bytes:
        data = real_read(self)
        seen[str(self)] = seen.get(str(self), 0) + 1
        if self == state and seen[str(self)] == 1:  # the training loop checkpoints mid-read
            self.write_text("epoch 7 state")
        if self == log:  # a job whose output is this log starts while the snapshot is taken
            _marker(tmp_path, "incomplete", "results/demo/logs/ingest.log")
        return data

    monkeypatch.setattr(Path, "read_bytes", racing_read)
    archive = tmp_path / "live.tar.xz"
    manifest = snapshot.save("results/demo", archive, workdir=tmp_path, live=True)
    why = {f["path"]: f for f in manifest["files"]}
    assert why["logs/ingest.log"]["left_out"] == snapshot.LIVE_STARTED
    assert seen[str(state)] == 2  # read again once it stood still
    monkeypatch.undo()
    with tarfile.open(archive) as tar:
        assert tar.extractfile("files/finetune/log_kvrh/n100/scratch/runs/s0/state.pt").read() == b"epoch 7 state"  # type: ignore[union-attr]
        assert "files/logs/ingest.log" not in tar.getnames()
    rep = snapshot.restore(archive, workdir=tmp_path / "clone", regenerate=False)  # every sha256 checks out
    assert rep.restored == sum(f["left_out"] is None for f in manifest["files"]) == 6
    with pytest.raises(SnapshotError, match="or save with --live"):
        snapshot.save("results/demo", archive, workdir=tmp_path)


def test_a_checkpointed_run_saves_while_it_runs_and_passes_sigterm_on(tmp_path: Path, caplog):
    import signal
    import sys
    import threading

    job = tmp_path / "job.py"  # stands in for Snakemake: holds a lock, finishes a cell, stops on SIGTERM
    job.write_text(
        "import pathlib, signal, sys, time\n"
        "lock = pathlib.Path('.snakemake/locks/0.input.lock'); lock.parent.mkdir(parents=True); lock.write_text('')\n"
        "def stop(*_):\n"
        "    pathlib.Path('results/demo/logs/stopped.log').write_text('SIGTERM'); lock.unlink(); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "cell = pathlib.Path('results/demo/finetune/t/n50/scratch'); cell.mkdir(parents=True)\n"
        "(cell / 'metrics.json').write_text('{}'); (cell / 'predictions.parquet').write_text('p')\n"
        "pathlib.Path('results/demo/logs').mkdir(); time.sleep(60)\n"
    )
    archive = tmp_path / "snap.tar.xz"
    threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with caplog.at_level("INFO", logger="tlcgcnn.snapshot"):
        rc = snapshot.checkpointed_run([sys.executable, str(job)], "results/demo", archive, every_s=0.5, workdir=tmp_path,
                                       config_path=ROOT / "config" / "config.yaml")
    assert rc == 0
    messages = [r.message for r in caplog.records]
    assert any("(live)" in m for m in messages) and "(final)" in messages[-2]
    # after each snapshot, how far the run is (the quickstart config's 64 cells; none of them in results/demo)
    assert messages[-1] == "progress: 0 of 64 fine-tuning cells finished; about 0 min of job time left (≈ 0 min with 2 at once; 64 cells not estimated)"
    kept = {f["path"] for f in snapshot.read_manifest(archive)["files"] if f["left_out"] is None}
    assert kept == {"finetune/t/n50/scratch/metrics.json", "finetune/t/n50/scratch/predictions.parquet", "logs/stopped.log"}


def _checkout_copy(dest: Path) -> Path:
    """A copy of this checkout's files as a fresh clone has them: every mtime is now."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in listed.stdout.split():
        if (ROOT / rel).is_file() and not rel.startswith("results/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest / rel)
    return dest


@pytest.mark.e2e
def test_an_unfinished_run_restored_on_a_clean_checkout_resumes_where_it_stopped(tmp_path):
    """Run a small workflow in one checkout, make one cell unfinished (its seeds done, the
    cell's outputs gone, as after a kill), save; restore into a fresh copy of the checkout
    (every file newer than the saved results, as after a clone on a new machine): Snakemake
    wants exactly the jobs it wanted before, and the cell keeps its seeds. `snapshot run`
    restores, resumes and saves in one go. Restored after the dataset changed, the
    regenerated table differs and everything runs again."""
    from test_workflow import SNAKEMAKE, ran_rules

    def smk(workdir: Path, *args: str) -> str:
        res = subprocess.run([*SNAKEMAKE, *args, "--cores", "2", "--configfile", str(path)], cwd=workdir, capture_output=True, text=True, timeout=1500)
        assert res.returncode == 0, res.stderr[-4000:]
        return res.stdout + res.stderr

    name = "snapshot-test"
    cfg, data = tiny_mp500_config(tmp_path, name)
    cfg["train"].update(epochs=15, patience=15)
    cfg["pretrain"] = []
    cfg["finetune"].update(sizes=[25, 50], seeds=[0, 1], modes={"scratch": {}, "rf": {"estimator": "rf"}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    first = _checkout_copy(tmp_path / "first")
    out = first / "results" / name
    cell = out / "finetune" / "gap_nonmetal" / "n50" / "scratch"
    archive = tmp_path / "snap.tar.xz"

    cells = [f"results/{name}/finetune/gap_nonmetal/n{n}/{m}/metrics.json" for n in (25, 50) for m in ("scratch", "rf")]
    smk(first, *cells)  # the cells, not yet the stats and figures
    (cell / "metrics.json").unlink()
    (cell / "predictions.parquet").unlink()
    before = sorted(ran_rules(smk(first, "-n")))
    assert before == ["all", "figure", "finetune", "stats"], before

    manifest = snapshot.save(f"results/{name}", archive, workdir=first, config_path=path)
    shown = snapshot._summary(manifest, 4, 0)
    assert "finished: 3 of 4 fine-tuning cells (+ 2 seeds of unfinished ones), 0 of 0 pretrained sources" in shown, shown
    why = {f["path"]: f["left_out"] for f in manifest["files"]}
    assert any(p.startswith("graphs/") for p in why) and all(w == "regenerated" for p, w in why.items() if p.startswith(("graphs/", "data/", "splits/")))
    assert why["finetune/gap_nonmetal/n50/scratch/runs/s0/metrics.json"] is None  # the unfinished cell's seeds travel
    assert why["finetune/gap_nonmetal/n25/scratch/runs/s0/metrics.json"] == snapshot.FINISHED_SEEDS
    assert any(p.startswith("splits/") for p in why)
    assert why["finetune/gap_nonmetal/n50/scratch/runs/s0/model.pt"] is not None

    second = _checkout_copy(tmp_path / "second")  # a new machine: its scripts are newer than every saved result
    rep = snapshot.restore(archive, workdir=second, configfile=path, cores=2)
    assert not rep.regenerated_changed and not rep.regenerated_missing, rep
    assert any(p.startswith("graphs/") for p in rep.regenerated_same) and "data/structures.parquet" in rep.regenerated_same
    dry = smk(second, "-n")
    assert sorted(ran_rules(dry)) == before, dry[-3000:]

    third = _checkout_copy(tmp_path / "third")  # `snapshot run` restores into the empty results folder, resumes, saves at the end
    cmd = [sys.executable, "-m", "tlcgcnn.snapshot", "run", "--configfile", str(path), "--archive", str(archive), "--every", "600"]
    res = subprocess.run(cmd, cwd=third, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stderr[-4000:]
    rules = ran_rules(res.stdout + res.stderr)  # the regeneration's, then the run's
    assert "restored" in res.stdout and rules.count("finetune") == 1 and rules.count("stats") == 1, rules
    assert "(final)" in res.stderr
    cell_log = (third / "results" / name / "logs" / "finetune" / "gap_nonmetal" / "n50" / "scratch.log").read_text()
    assert "seed 0: finished before" in cell_log and "seed 1: finished before" in cell_log, cell_log[-2000:]
    assert "finished: 4 of 4 fine-tuning cells" in snapshot._summary(snapshot.read_manifest(archive), 4, 0)
    assert "Nothing to be done" in smk(third, "-n")

    pd.read_csv(data).iloc[1:].to_csv(data, index=False, compression="gzip")  # the dataset changed since
    rep = snapshot.restore(archive, workdir=_checkout_copy(tmp_path / "fourth"), configfile=path, cores=2)
    assert "data/structures.parquet" in rep.regenerated_changed
    again = ran_rules(smk(tmp_path / "fourth", "-n"))
    assert again.count("finetune") == 2 and again.count("finetune_baseline") == 2 and "stats" in again, again


def test_fingerprint_sees_through_float_rounding_but_not_a_real_change(tmp_path: Path):
    import numpy as np

    from tlcgcnn.fingerprint import close, fingerprint

    rng = np.random.default_rng(0)
    dist = rng.uniform(1.0, 8.0, (500, 12))
    idx = rng.integers(0, 500, (500, 12))

    def npz(name: str, d: np.ndarray, i: np.ndarray) -> dict:
        np.savez_compressed(tmp_path / name, nbr_dist=d.astype(np.float32), nbr_idx=i)
        return fingerprint(tmp_path / name)  # type: ignore[return-value]

    ref = npz("a.npz", dist, idx)
    rounded = dist.astype(np.float32)
    rounded.flat[::7] = np.nextafter(rounded.flat[::7], np.float32(9))  # the last bit of every 7th value
    assert close(ref, npz("b.npz", rounded, idx))
    assert not close(ref, npz("c.npz", dist * 1.001, idx))  # another cut-off or cell: a real change
    swapped = idx.copy()
    swapped[0, 0] += 1
    assert not close(ref, npz("d.npz", dist, swapped))  # an integer differs: never rounding
    assert not close(ref, npz("e.npz", dist[:-1], idx[:-1]))  # a crystal fewer

    table = pd.DataFrame({"material_id": ["mp-1", "mp-2"], "lattice": [[1.0, 0.0, 3.0], [2.5, 1.0, 0.5]], "k_vrh": [10.0, float("nan")]})
    table.to_parquet(tmp_path / "t.parquet")
    ref_t = fingerprint(tmp_path / "t.parquet")
    table.at[0, "lattice"] = [np.nextafter(1.0, 2.0), 0.0, 3.0]
    table.to_parquet(tmp_path / "t2.parquet")
    assert close(ref_t, fingerprint(tmp_path / "t2.parquet"))
    table.at[1, "material_id"] = "mp-3"
    table.to_parquet(tmp_path / "t3.parquet")
    assert not close(ref_t, fingerprint(tmp_path / "t3.parquet"))
    (tmp_path / "m.json").write_text(json.dumps({"atoms": 10, "bytes_on_disk": 99, "table_sha256": "ab", "radius": 8.0}))
    (tmp_path / "m2.json").write_text(json.dumps({"atoms": 10, "bytes_on_disk": 98, "table_sha256": "cd", "radius": 8.0}))
    (tmp_path / "m3.json").write_text(json.dumps({"atoms": 10, "bytes_on_disk": 99, "table_sha256": "ab", "radius": 6.0}))
    assert close(fingerprint(tmp_path / "m.json"), fingerprint(tmp_path / "m2.json"))
    assert not close(fingerprint(tmp_path / "m.json"), fingerprint(tmp_path / "m3.json"))
    assert fingerprint(tmp_path / "x.csv") is None


def test_restore_restamps_a_regenerated_file_that_differs_only_by_rounding(tmp_path: Path):
    import numpy as np

    r = tmp_path / "results" / "demo"
    shard = r / "graphs" / "k" / "shard-00000.npz"
    shard.parent.mkdir(parents=True)
    dist = np.linspace(1.0, 8.0, 1200, dtype=np.float32).reshape(100, 12)
    np.savez_compressed(shard, nbr_dist=dist)
    _write(r / "graphs" / "k" / ".snakemake_timestamp", "")
    _write(r / "finetune" / "t" / "n50" / "scratch" / "metrics.json", "[]")
    archive = tmp_path / "snap.tar.xz"
    manifest = snapshot.save("results/demo", archive, workdir=tmp_path)
    assert next(f for f in manifest["files"] if f["path"].endswith(".npz"))["fingerprint"]["npz"]["nbr_dist"]["shape"] == [100, 12]
    new = tmp_path / "clone"
    (new / "results" / "demo" / "graphs" / "k").mkdir(parents=True)
    other = dist.copy()
    other.flat[::3] = np.nextafter(other.flat[::3], np.float32(9))  # another machine's rounding
    np.savez_compressed(new / "results" / "demo" / "graphs" / "k" / "shard-00000.npz", nbr_dist=other)
    _write(new / "results" / "demo" / "graphs" / "k" / ".snakemake_timestamp", "")
    rep = snapshot.restore(archive, workdir=new, regenerate=False, force=True)
    assert rep.regenerated_rounding == ["graphs/k/shard-00000.npz"] and not rep.regenerated_changed
    shard_t = (new / "results" / "demo" / "graphs" / "k" / "shard-00000.npz").stat().st_mtime_ns
    assert shard_t < (new / "results" / "demo" / "finetune" / "t" / "n50" / "scratch" / "metrics.json").stat().st_mtime_ns


def test_snapshot_run_stops_before_redoing_restored_work(tmp_path: Path, monkeypatch, capsys):
    """`run` restores; if rebuilt files differ, it does not start (the restored jobs would run
    again and the next save would overwrite the archive) and says how to go on."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    name = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())["name"]
    _write(tmp_path / "resources" / "snapshots" / f"{name}.tar.xz", "an archive")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(snapshot, "restore", lambda *a, **k: snapshot.RestoreReport(restored=3, regenerated_changed=["data/structures.parquet"]))
    monkeypatch.setattr(snapshot, "checkpointed_run", lambda *a, **k: pytest.fail("ran Snakemake over a changed rebuild"))
    assert snapshot.main(["run", "--configfile", "config/mp500.yaml"]) == 3
    err = capsys.readouterr().err
    assert "stopped before running: 1 rebuilt files differ" in err and "--trust-regenerated" in err


def test_snapshot_run_refuses_its_own_option_after_the_snakemake_separator(capsys):
    """`run ... -- --trust-regenerated` would hand the flag to Snakemake and restore untrusted."""
    with pytest.raises(SystemExit) as exc:
        snapshot.main(["run", "--configfile", "config/mp500.yaml", "--", "--keep-going", "--trust-regenerated"])
    assert exc.value.code == 2
    assert "--trust-regenerated is an option of `snapshot run`, not of Snakemake: put it before `--`" in capsys.readouterr().err
