"""Provenance: which config, data snapshot, code version and machine produced a result.

Owns the code version (:func:`code_version`: package version, git commit and whether the
tracked files differ from it; :func:`code_state`, the same for a published folder's
repository), the record every training run carries (:func:`record`), the machine
(:func:`cpu_model`, :func:`machine`), where a run's jobs computed (:func:`devices`) and a
published folder's ``provenance.json`` (:func:`provenance`). Torch-free at import
(:func:`record` imports torch); pandas only in type hints.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlcgcnn import __version__
from tlcgcnn.utils import fileio as io

if TYPE_CHECKING:
    import pandas as pd


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The CPU's model name ("AMD EPYC 9R14", "Intel(R) Xeon(R) Processor"; /proc/cpuinfo,
    else :func:`platform.processor`): one machine's CPU, to tell runs on different hosts of
    the same cloud apart. None where neither says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    return platform.processor() or None


def _run(cmd: list[str], cwd: str | os.PathLike[str] | None = None) -> str | None:
    """A command's stripped stdout; None where it cannot run, fails or takes over 20 s."""
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def code_version(root: str | os.PathLike[str] | None = None, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The package version, the git commit of ``root`` (default: this package's checkout) and
    whether its tracked files differ from that commit (the paths in ``exclude``, relative to
    ``root``, do not count). Both git fields are None outside a git checkout; ``git_dirty``
    also where ``git status`` fails."""
    root = Path(__file__).resolve().parents[3] if root is None else Path(root)
    commit = _run(["git", "rev-parse", "HEAD"], cwd=root)
    dirty = None
    if commit is not None:
        spec = [f":(exclude){e}" for e in exclude]
        out = _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *spec], cwd=root)
        dirty = None if out is None else bool(out)
    return {"package": __version__, "git_commit": commit, "git_dirty": dirty}


@functools.lru_cache(maxsize=1)
def _this_checkout() -> dict[str, Any]:
    """:func:`code_version` of this package's checkout, once per process (every training run records it)."""
    return code_version()


def code_state(repo: str | os.PathLike[str], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`code_version` of a published folder's repository, with the paths its dirty check
    leaves out (``dirty_ignores``: e.g. the published folder being rewritten)."""
    return {**code_version(repo, exclude), "dirty_ignores": list(exclude)}


def record(config: dict[str, Any] | None = None, data_sha256: str | None = None) -> dict[str, Any]:
    """What a training run records: the config's and data's hashes, this checkout's code
    version, Python, torch and the host."""
    import torch

    return {
        "config_sha256": io.sha256_json(config) if config is not None else None,
        "data_sha256": data_sha256,
        "code": dict(_this_checkout()),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "host": platform.node(),
    }


def _where(rec: Mapping[str, Any]) -> str | None:
    """A run's device in words: "cuda (NVIDIA H200)", "cpu (Intel(R) Xeon(R) Processor)";
    runs recorded before the chip was (``hardware``) give the device type alone."""
    dev = rec.get("device")
    if not isinstance(dev, str) or not dev:
        return None
    hw = rec.get("hardware")
    return f"{dev} ({hw})" if isinstance(hw, str) and hw else dev


def device_kind(where: str) -> str:
    """The device type of :func:`_where`'s words ("cuda (NVIDIA H200)" → "cuda")."""
    return where.split(" (", 1)[0].split(":", 1)[0]


def devices(metrics: pd.DataFrame, pretrain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the runs computed: fine-tuning runs counted per device (and chip, where
    recorded) and precision; the cells (target/n<size>/mode) with seeds on another device
    type than most runs (cpu / cuda), with how many of their seeds; and each pretraining
    source's device. A study that moved between machines
    (a borrowed GPU, a new host) says so here rather than in logs."""
    runs: dict[str, dict[str, int]] = {}
    per_cell: dict[str, dict[str, int]] = {}
    cols = [c for c in ("target", "size", "mode") if c in metrics.columns]
    for rec in metrics.to_dict("records") if len(cols) == 3 else []:
        where = _where(rec)
        if where is None:
            continue  # a scikit-learn baseline: no device recorded
        prec = (
            rec.get("precision") if isinstance(rec.get("precision"), str) else "precision not recorded"
        )  # frozen-feature fits
        runs.setdefault(where, {}).setdefault(prec, 0)
        runs[where][prec] += 1
        size = rec["size"]
        cell = f"{rec['target']}/n{int(size) if isinstance(size, float) and size.is_integer() else size}/{rec['mode']}"
        per_cell.setdefault(cell, {}).setdefault(where, 0)
        per_cell[cell][where] += 1
    kinds: dict[str, int] = {}
    for where, by in runs.items():
        kinds[device_kind(where)] = kinds.get(device_kind(where), 0) + sum(by.values())
    main = max(kinds, key=lambda k: kinds[k]) if kinds else None
    off = {
        cell: {"seeds": dict(sorted(by.items())), "of": sum(by.values())}
        for cell, by in sorted(
            per_cell.items(), key=lambda kv: (kv[0].split("/")[0], size_key(kv[0].split("/")[1][1:]), kv[0])
        )
        if {device_kind(w) for w in by} - {main}
    }
    sources = {str(p.get("pretrain", p.get("target"))): _where(p) for p in pretrain}
    return {"finetune_runs": runs, "main_device": main, "cells_off_main_device": off, "pretrain": sources}


def size_key(size: Any) -> float:
    """A training size's sort key: numbers in order, ``all`` last."""
    return math.inf if str(size) == "all" else float(size)


def machine() -> dict[str, Any]:
    """The machine that built the report: CPU, cores, memory, Python, torch version and GPU
    (without importing torch). The training jobs' devices are in the run records."""
    from importlib import metadata

    cpu = cpu_model()
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = None
    try:
        torch_version: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    gpu = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) if shutil.which("nvidia-smi") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1) if ram else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "gpu": gpu.splitlines() if gpu else None,
        "host": platform.node(),
    }


def _distinct(records: Iterable[Mapping[str, Any]], key: str) -> list[str]:
    """The distinct non-empty text values of ``key`` in run records, sorted."""
    return sorted({str(v) for v in (r.get(key) for r in records) if isinstance(v, str) and v})


def provenance(
    settings: Mapping[str, Any],
    metrics: pd.DataFrame,
    pretrain: Sequence[Mapping[str, Any]],
    ingest: Mapping[str, Any],
    wall: Mapping[str, Any],
    code: Mapping[str, Any],
    host: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything a reader needs to trust or repeat the published numbers."""
    records = [*metrics.to_dict("records"), *pretrain]
    recorded = {
        k: _distinct(records, k)
        for k in ("data_sha256", "config_sha256", "git_commit", "torch_version", "device", "hardware", "precision")
    }
    return {
        "name": settings["config"]["name"],
        "generated_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "configfiles": list(settings.get("configfiles") or []),
        "config_sha256": settings["config_sha256"],
        "config_matches_runs": recorded["config_sha256"] == [settings["config_sha256"]],
        "config": settings["config"],
        "report": {"dir": settings.get("report_dir"), "claims": list(settings.get("claims") or [])},
        "data": {
            "input": ingest.get("input"),
            "input_sha256": ingest.get("input_sha256"),
            "rows_in": ingest.get("rows_in"),
            "rows_kept": ingest.get("rows_kept"),
            "data_sha256_of_runs": recorded["data_sha256"],
        },
        "code": {**code, "git_commits_of_runs": recorded["git_commit"]},
        "runs": {
            "n_finetune_runs": len(metrics),
            "n_pretrain_runs": len(pretrain),
            "torch_versions": recorded["torch_version"],
            "devices": recorded["device"],
            "hardware": recorded["hardware"],
            "precisions": recorded["precision"],
            "config_sha256": recorded["config_sha256"],
            "by_device": devices(metrics, pretrain),
        },
        "machine": host,
        "wall_time": dict(wall),
    }
