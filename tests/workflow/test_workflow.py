"""The pipeline run by Snakemake on real data, plus the workflow's static checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import MP500, ROOT, require_shared

from tlcgcnn.analysis.stats import read_table

BIN = Path(sys.executable).parent
SNAKEMAKE = [str(BIN / "snakemake")] if (BIN / "snakemake").exists() else [sys.executable, "-m", "snakemake"]


def smk(*args: str, check: bool = True, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


def e2e_config(tmp_path: Path, name: str) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    cfg["name"] = name
    data = tmp_path / "data" / MP500.name  # a copy: the test changes its mtime and content
    data.parent.mkdir()
    shutil.copyfile(require_shared(MP500), data)
    cfg["dataset"]["path"] = str(data)
    cfg["train"].update(epochs=25, patience=8)
    cfg["finetune"].update(sizes=[25, 50], seeds=[0, 1, 2])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def ran_rules(output: str) -> list[str]:
    return re.findall(r"^(?:local)?rule (\w+):", output, flags=re.M)


@pytest.mark.e2e
def test_pipeline_end_to_end_on_real_data(tmp_path):
    name = f"e2e-test-{os.getpid()}"
    cfg = e2e_config(tmp_path, name)
    out = ROOT / "results" / name
    try:
        smk("--cores", "2", "--configfile", str(cfg))
        fig = out / "figures" / "learning_curve.png"
        assert fig.stat().st_size > 10_000 and (out / "figures" / "learning_curve.pdf").stat().st_size > 1_000
        # only the figures the config can fill (no "models" figure without the attention model)
        assert sorted(p.name for p in (out / "figures").iterdir()) == ["learning_curve.pdf", "learning_curve.png"]
        tests = read_table(out / "stats" / "ttests.csv")
        assert set(tests["size"]) == {25, 50} and (tests["n_pairs"] == 3).all() and tests["p_value"].notna().all()
        metrics = read_table(out / "stats" / "metrics.csv")
        assert len(metrics) == 2 * 3 * 2 and (metrics["mae"] > 0).all() and metrics["git_commit"].notna().all()
        summary = pd.read_json(out / "data" / "ingest_summary.json", typ="series")
        assert summary["rows_in"] == 500
        for tsv in ("ingest", "featurize", "stats"):
            assert (out / "benchmarks" / f"{tsv}.tsv").exists()
        # asking for the figure again after deleting it reruns only the figure rule
        fig.unlink()
        # (the target goes first: --configfile takes several values and would swallow it)
        res = smk(str(fig.relative_to(ROOT)), "--cores", "2", "--configfile", str(cfg))
        assert ran_rules(res.stdout + res.stderr) == ["figure"]
        assert fig.exists()
        # the dataset is compared by content: a copy mounted again (new mtime) leaves the run
        # finished; a changed file reruns ingest and everything after it
        data = Path(yaml.safe_load(cfg.read_text())["dataset"]["path"])
        os.utime(data, (data.stat().st_atime + 3600, data.stat().st_mtime + 3600))
        res = smk("-n", "--cores", "2", "--configfile", str(cfg))
        assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]
        pd.read_csv(data).iloc[1:].to_csv(data, index=False, compression="gzip")
        res = smk("-n", "--cores", "2", "--configfile", str(cfg))
        assert "ingest" in ran_rules(res.stdout) and "Params have changed" in res.stdout, res.stdout[-3000:]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_dry_run_resolves_and_wrong_key_fails(tmp_path):
    """On the default config (its data is committed: no ../shared needed)."""
    res = smk("-n", "--cores", "2", "--configfile", str(ROOT / "config" / "config.yaml"), "--config", "name=dry")
    assert "finetune" in res.stdout
    bad = smk("-n", "--configfile", str(ROOT / "config" / "config.yaml"), "--config", "epochz=3", check=False)
    assert bad.returncode != 0 and "'epochz' was unexpected" in bad.stdout + bad.stderr
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["train"]["epochs"] = "many"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    bad = smk("-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert bad.returncode != 0 and "'many' is not of type 'integer'" in bad.stdout + bad.stderr


def test_lint_and_format_are_clean():
    res = smk("--lint", "--configfile", str(ROOT / "config" / "mp500.yaml"), check=False)
    assert res.returncode == 0 and "Congratulations" in res.stdout + res.stderr, res.stdout + res.stderr
    snakefmt = BIN / "snakefmt"
    cmd = [str(snakefmt)] if snakefmt.exists() else [sys.executable, "-m", "snakefmt"]
    fmt = subprocess.run([*cmd, "--check", "Snakefile", "rules"], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = BIN / "ruff"
    if not ruff.exists():
        pytest.fail("ruff is not installed in the test environment (requirements.txt pins it)")
    paths = ["src", "tests", "workflow", "benchmarks", "setup.py"]
    for args in (["check", *paths], ["format", "--check", *paths]):
        res = subprocess.run([str(ruff), *args], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, f"ruff {' '.join(args)}:\n{res.stdout}{res.stderr}"


def test_conda_envs_are_pinned_and_used():
    envs = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "envs").glob("*.yaml")}
    assert envs
    for name, env in envs.items():
        assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"], name
        for dep in env["dependencies"]:
            specs = dep["pip"] if isinstance(dep, dict) else [dep]
            for spec in specs:
                assert re.search(r"[=<>]=?\d", spec), f"{name}: {spec} is not pinned"
    rules_text = "\n".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"^rule \w+:", rules_text, flags=re.M))
    used = re.findall(r'conda:\s*\n\s*"\.\./envs/([\w.-]+)"', rules_text)
    assert len(used) == n_rules, f"{n_rules} rules but {len(used)} name a conda env"
    assert set(used) <= set(envs)


@pytest.mark.e2e
def test_killed_finetune_cell_resumes_without_retraining_finished_seeds(tmp_path):
    """Kill a fine-tuning cell's job after its first seed finished; Snakemake deletes the
    failed job's declared outputs but not the per-seed runs, so the rerun keeps seed 0
    (same checkpoint file, same record) and trains only the others."""
    import json
    import signal
    import time

    import psutil

    name = f"resume-test-{os.getpid()}"
    cfg = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    cfg["name"] = name
    cfg["dataset"]["path"] = str(require_shared(MP500))
    cfg["model"] = {"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16}
    cfg["train"].update(epochs=30, patience=30)
    cfg["pretrain"] = []
    cfg["finetune"].update(sizes=[25], seeds=[0, 1, 2], modes={"scratch": {}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = ROOT / "results" / name
    cell = out / "finetune" / "gap_nonmetal" / "n25" / "scratch"
    target = str((cell / "metrics.json").relative_to(ROOT))
    try:
        smk(
            f"{out.relative_to(ROOT)}/graphs",
            "--cores",
            "1",
            "--configfile",
            str(path),
            "--allowed-rules",
            "ingest",
            "featurize",
            check=False,
        )
        proc = subprocess.Popen(
            [*SNAKEMAKE, target, "--cores", "1", "--configfile", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seed0 = cell / "runs" / "s0" / "metrics.json"
        deadline = time.monotonic() + 600
        while not seed0.exists():
            assert proc.poll() is None, f"snakemake ended before seed 0 finished:\n{proc.stdout.read()[-4000:]}"
            assert time.monotonic() < deadline, "seed 0 did not finish in 10 min"
            time.sleep(0.2)
        jobs = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if any("finetune.py" in a for a in p.cmdline())
        ]
        assert jobs, "the cell's job process was not found"
        for p in jobs:
            p.send_signal(signal.SIGKILL)
        log = proc.communicate(timeout=120)[0]
        assert proc.returncode != 0, log[-3000:]
        assert not (cell / "metrics.json").exists() and not (cell / "runs" / "s2" / "metrics.json").exists()
        first = json.loads(seed0.read_text())
        model_mtime = (cell / "runs" / "s0" / "model.pt").stat().st_mtime_ns

        res = smk(target, "--cores", "1", "--configfile", str(path))
        assert ran_rules(res.stdout + res.stderr) == ["finetune"]
        cell_log = (out / "logs" / "finetune" / "gap_nonmetal" / "n25" / "scratch.log").read_text()
        assert "seed 0: finished before" in cell_log and "seed 1: finished before" not in cell_log, cell_log[-3000:]
        assert (cell / "runs" / "s0" / "model.pt").stat().st_mtime_ns == model_mtime
        records = json.loads((cell / "metrics.json").read_text())
        assert [r["seed"] for r in records] == [0, 1, 2] and records[0] == first
    finally:
        shutil.rmtree(out, ignore_errors=True)
