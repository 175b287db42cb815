"""The real pipeline through Snakemake's SLURM executor on a single-node SLURM cluster.

tests/slurm/cluster.sh brings up munge + slurmctld + slurmd on localhost (partitions
``debug`` and ``gpu``, one fake GPU). A small configuration of the pipeline on the 500 real
Materials Project crystals then runs with ``--executor slurm --workflow-profile
profiles/slurm`` from a temporary copy of the repository. Checks: every non-local job ran as
a SLURM job (its own log records the job id), every training job (pretrain and the
fine-tuning cells, the pipeline's one fine-tuning path) ran in the gpu partition, asked for
a GPU (scontrol's TresPerJob) and was allocated one: slurmd sets CUDA_VISIBLE_DEVICES in a
job only for GPUs it allocated, and the job's log records it (the test cluster has no
slurmdbd, so neither sacct nor a gres/gpu TRES can answer); they fell back to CPU cleanly,
local rules never reached SLURM, and asking for one figure file afterwards submits exactly that one job.

Run:  sudo .venv/bin/python -m pytest -m slurm -s tests/workflow/test_slurm.py
Needs root, slurm-wlm + munge (installed with apt-get when missing) and ../shared/data.
A summary (job ids, partitions, wall times) is printed and written to slurm_summary.json
in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MP500 as DATA
from conftest import ROOT as REPO

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
NAME = "slurmtest"
GPU_RULES = {"pretrain", "finetune"}  # every rule that trains a graph model
LOCAL_RULES = {"split_subsets", "split_target", "all"}
SLURM_PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
RUN_TIMEOUT_S = 480
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
JOB_CONTEXT = re.compile(r"slurm job (\d+) partition=(\S+) node=\S+ CUDA_VISIBLE_DEVICES=(\S+)")


def _packages_installed() -> bool:
    for p in SLURM_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            return False
    return True


def _skip_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux: tests/slurm/cluster.sh starts munged, slurmctld and slurmd"
    if not DATA.exists():
        return f"real Materials Project data not found at {DATA} (../shared/data is absent on this machine)"
    if shutil.which("dpkg-query") is None:
        return "needs a Debian-like system (dpkg/apt) to provide slurm-wlm and munge"
    if not _packages_installed() and shutil.which("apt-get") is None:
        return f"slurm packages {SLURM_PACKAGES} are not installed and apt-get is unavailable"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed in this environment"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    already = subprocess.run([str(CLUSTER), "status"], capture_output=True, text=True).returncode == 0
    t0 = time.monotonic()
    if not already:
        had_packages = _packages_installed()
        up = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            subprocess.run([str(CLUSTER), "down"], capture_output=True, text=True)
            if not had_packages and not _packages_installed():
                pytest.skip(f"could not install slurm-wlm/munge with apt-get:\n{up.stderr[-2000:]}")
            pytest.fail(f"cluster.sh up failed:\n{up.stdout}\n{up.stderr[-4000:]}")
    info = {"reused_running_cluster": already, "cluster_up_s": round(time.monotonic() - t0, 1)}
    yield info
    if not already:  # stop only what this fixture started (cluster.sh stops by recorded PID)
        down = subprocess.run([str(CLUSTER), "down"], capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr


def _copy_repo(dst: Path) -> None:
    shutil.copytree(
        REPO,
        dst,
        ignore=shutil.ignore_patterns(
            "results", ".snakemake", ".venv", ".git", "__pycache__", ".pytest_cache", "*.egg-info", "logs"
        ),
    )


def _test_config() -> dict:
    """A small version of config/mp500.yaml: 1 pretrain (200 crystals), 1 target at n=25,
    seeds 0 and 1, scratch vs transfer, a few epochs of a small model."""
    cfg = yaml.safe_load((REPO / "config" / "mp500.yaml").read_text())
    cfg["name"] = NAME
    cfg["dataset"]["path"] = str(DATA)
    cfg["model"] = {"atom_fea_len": 32, "n_conv": 2, "h_fea_len": 64}
    cfg["train"].update({"epochs": 5, "threads": 1})
    cfg["pretrain"] = [
        {
            "name": "ef_all",
            "property": "formation_energy_per_atom",
            "subset": "all",
            "size": 200,
            "seed": 0,
            "train": {"epochs": 3},
        }
    ]
    cfg["finetune"].update({"sizes": [25], "seeds": [0, 1]})
    cfg["finetune"]["modes"] = {"scratch": {}, "transfer": {"pretrained": "ef_all"}}
    # the test node has 2 CPUs: ingest/featurize must not ask for more
    cfg["resources"] = {"cluster_data_threads": 2}
    return cfg


def _snakemake(workdir: Path, log: Path, *targets: str) -> float:
    """Run snakemake through SLURM with the real profile; return its wall time in s.
    Test-only settings are flags the profile does not set, so they do not replace its
    resources: poll with squeue (no slurmdbd here) every 2 s instead of 40 s+."""
    env = {
        **os.environ,
        "TLCGCNN_SLURM_PARTITION": "debug",
        "TLCGCNN_SLURM_GPU_PARTITION": "gpu",
        "TLCGCNN_SLURM_ACCOUNT": "",  # no accounting on the test cluster
    }
    cmd = [
        sys.executable,  # jobs re-run this interpreter's `-m snakemake` on the node
        "-m",
        "snakemake",
        *targets,  # before the options: --default-resources etc. would swallow them
        "--executor",
        "slurm",
        "--workflow-profile",
        "profiles/slurm",
        "--configfile",
        "config/slurm_test.yaml",
        "--jobs",
        "4",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--latency-wait",
        "10",
        "--slurm-keep-successful-logs",
    ]
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # snakemake scancels its jobs on SIGINT
            proc.wait(timeout=60)
            pytest.fail(f"snakemake ran past {RUN_TIMEOUT_S}s; log {log}:\n{log.read_text()[-4000:]}")
    assert rc == 0, f"snakemake failed (rc {rc}); log {log}:\n{log.read_text()[-6000:]}"
    return time.monotonic() - t0


def _scontrol(jobid: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True)
    assert out.returncode == 0, f"scontrol does not know job {jobid} (MinJobAge too short?): {out.stderr}"
    fields = {}
    for tok in out.stdout.split():
        key, _, value = tok.partition("=")
        fields.setdefault(key, value)
    return fields


def _rule_of(job: dict[str, str]) -> str:
    m = re.match(r"rule_(.+?)(_wildcards_.*)?$", job["Comment"])
    assert m, f"job {job['JobId']} has no rule in its comment: {job['Comment']!r}"
    return m.group(1)


def _submitted(log: Path) -> list[str]:
    return [m.group(2) for m in SUBMITTED.finditer(log.read_text())]


def test_pipeline_through_slurm(slurm_cluster, tmp_path, capsys):
    t_start = time.monotonic()
    wd = tmp_path / "repo"
    _copy_repo(wd)
    (wd / "config" / "slurm_test.yaml").write_text(yaml.safe_dump(_test_config(), sort_keys=False))
    results = wd / "results" / NAME

    # --- the whole DAG through SLURM
    run_log = tmp_path / "snakemake_run.log"
    t_run = _snakemake(wd, run_log)
    text = run_log.read_text()
    jobids = _submitted(run_log)
    jobs = {j: _scontrol(j) for j in jobids}
    by_rule: dict[str, list[str]] = {}
    for j, info in jobs.items():
        by_rule.setdefault(_rule_of(info), []).append(j)
    expected = {
        "ingest": 1,
        "featurize": 1,
        "pretrain": 1,
        "evaluate_pretrain": 1,
        "finetune": 2,  # cells (n=25, scratch / transfer), seeds 0 and 1 inside each
        "stats": 1,
        "figure": 1,
    }
    assert {r: len(v) for r, v in by_rule.items()} == expected, by_rule
    for j, info in jobs.items():
        rule = _rule_of(info)
        assert info["JobState"] == "COMPLETED", (j, rule, info["JobState"])
        tres = info.get("TresPerJob", "") + info.get("TresPerNode", "")
        if rule in GPU_RULES:
            assert info["Partition"] == "gpu", (j, rule, info["Partition"])
            assert "gpu" in tres, f"job {j} ({rule}) asked for no GPU: {tres!r}"
        else:
            assert info["Partition"] == "debug", (j, rule, info["Partition"])
            assert "gpu" not in tres, f"CPU job {j} ({rule}) asked for a GPU: {tres!r}"

    # --- local rules ran in the main process and never reached SLURM
    for rule in LOCAL_RULES:
        assert f"localrule {rule}:" in text, f"{rule} did not run as a local rule"
        assert rule not in by_rule
    split_logs = sorted((results / "logs" / "split").glob("*.log"))
    assert len(split_logs) == 3, split_logs  # subsets + pretrain split + target split
    for log in split_logs:
        assert "local job (no SLURM_JOB_ID)" in log.read_text(), log

    # --- every SLURM job's own log records its job id, partition and GPU binding
    seen: dict[str, tuple[str, str, Path]] = {}
    for log in sorted((results / "logs").rglob("*.log")):
        if log.parent.name == "split":
            continue
        m = JOB_CONTEXT.search(log.read_text())
        assert m, f"{log} records no SLURM job id:\n{log.read_text()[:1000]}"
        seen[m.group(1)] = (m.group(2), m.group(3), log)
    assert set(seen) == set(jobids), (sorted(seen), sorted(jobids))
    for j, (partition, gpus, log) in seen.items():
        rule = _rule_of(jobs[j])
        assert partition == jobs[j]["Partition"], (j, log)
        body = log.read_text()
        if rule in GPU_RULES:
            assert gpus not in ("unset", ""), f"no GPU bound to {rule} job {j}: {log}"
            # this machine has no CUDA: the job must say so and train on CPU
            assert "device: cpu" in body or "device: cuda" in body, log
            if "device: cpu" in body:
                assert f"CUDA_VISIBLE_DEVICES={gpus} (GPUs allocated to this job)" in body, log
                assert "falling back to CPU" in body, log
        else:
            assert gpus == "unset", f"CPU job {j} ({rule}) got CUDA_VISIBLE_DEVICES={gpus}: {log}"
        if rule.startswith("evaluate"):
            assert re.search(r"tlcgcnn.analysis.evaluate: device: (cpu|cuda)", body), log
    for cell in ("scratch", "transfer"):
        records = json.loads((results / "finetune" / "gap_nonmetal" / "n25" / cell / "metrics.json").read_text())
        assert [r["seed"] for r in records] == [0, 1] and all(r["mode"] == cell for r in records)
    assert (results / "figures" / "learning_curve.png").stat().st_size > 0
    assert (results / "stats" / "ttests.csv").exists()

    # --- regenerate one figure file on the cluster: only its own job is submitted
    png = results / "figures" / "learning_curve.png"
    png.unlink()
    fig_log = tmp_path / "snakemake_figure.log"
    t_fig = _snakemake(wd, fig_log, f"results/{NAME}/figures/learning_curve.png")
    fig_ids = _submitted(fig_log)
    assert len(fig_ids) == 1, f"expected one submission, got {fig_ids}:\n{fig_log.read_text()[-3000:]}"
    fig_job = _scontrol(fig_ids[0])
    assert _rule_of(fig_job) == "figure", fig_job["Comment"]
    assert fig_job["Partition"] == "debug" and fig_job["JobState"] == "COMPLETED", fig_job
    assert png.stat().st_size > 0
    assert "localrule" not in fig_log.read_text()

    summary = {
        **slurm_cluster,
        "workflow_run_s": round(t_run, 1),
        "figure_rerun_s": round(t_fig, 1),
        "test_total_s": round(time.monotonic() - t_start, 1),
        "jobs": [
            {
                "jobid": j,
                "rule": _rule_of(i),
                "partition": i["Partition"],
                "comment": i["Comment"],
                "gpus": seen[j][1],
                "state": i["JobState"],
            }
            for j, i in sorted(jobs.items(), key=lambda kv: int(kv[0]))
        ],
        "figure_rerun_job": {"jobid": fig_ids[0], "partition": fig_job["Partition"]},
        "local_rules": sorted(LOCAL_RULES),
    }
    out = tmp_path / "slurm_summary.json"
    out.write_text(json.dumps(summary, indent=2))
    lines = [f"SLURM test summary ({out}):"]
    lines += [f"  {k}: {v}" for k, v in summary.items() if k != "jobs"]
    lines += [
        f"  job {j['jobid']:>4} {j['partition']:<6} CUDA_VISIBLE_DEVICES={j['gpus']:<6} {j['state']} {j['comment']}"
        for j in summary["jobs"]
    ]
    with capsys.disabled():  # shown without -s too: CI logs keep the job ids and partitions
        print("\n" + "\n".join(lines))
