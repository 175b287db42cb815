"""Provenance: which config, data snapshot and code version produced a result."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from tlcgcnn import __version__
from tlcgcnn.utils import fileio as io


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


@functools.lru_cache(maxsize=1)
def code_version(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The package version and the git commit of ``root`` (default: this package's checkout);
    both git fields are None outside a git checkout."""
    root = Path(__file__).resolve().parents[3] if root is None else Path(root)
    info: dict[str, Any] = {"package": __version__, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def record(config: dict[str, Any] | None = None, data_sha256: str | None = None) -> dict[str, Any]:
    import torch

    return {
        "config_sha256": io.sha256_json(config) if config is not None else None,
        "data_sha256": data_sha256,
        "code": code_version(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "host": platform.node(),
    }
