"""Preload tcmalloc into a benchmark worker process when it is installed (benchmarks only).

The pipeline itself no longer preloads it: a fresh install has no tcmalloc, and the
training speed work (index_select gather, fused AdamW, bf16 autocast, a bounded oneDNN
primitive cache) is measured on glibc malloc. ``benchmarks/run.py`` uses this module to
measure the tcmalloc row where the library is installed. It must be preloaded before
Python starts, hence ``LD_PRELOAD`` of the worker's environment.

``TLCGCNN_TCMALLOC``: ``auto`` (default) preloads the Debian/Ubuntu/RHEL library if one is
found (``apt-get install libtcmalloc-minimal4``); ``0`` / ``off`` never; any other value is
the path of the library to preload.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ENV_VAR = "TLCGCNN_TCMALLOC"
CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def tcmalloc_path(setting: str | None = None) -> str | None:
    """The library to preload for ``setting`` (default: ``$TLCGCNN_TCMALLOC`` or ``auto``)."""
    value = (setting if setting is not None else os.environ.get(ENV_VAR, "auto")).strip()
    if value.lower() in ("0", "off", "no", "false", "none"):
        return None
    if value.lower() in ("", "auto", "1", "on", "yes", "true"):
        return next((c for c in CANDIDATES if Path(c).exists()), None)
    if not Path(value).exists():
        raise FileNotFoundError(f"{ENV_VAR}={value!r}: no such library")
    return value


def preload(environ: MutableMapping[str, str], setting: str | None = None) -> str | None:
    """Add tcmalloc to ``environ['LD_PRELOAD']`` (idempotent); returns the library or ``None``."""
    lib = tcmalloc_path(setting)
    if lib is None:
        return None
    current = [p for p in environ.get("LD_PRELOAD", "").split() if p]
    if lib not in current:
        environ["LD_PRELOAD"] = " ".join([*current, lib])
    return lib


def active() -> bool:
    """Whether tcmalloc is loaded in this process."""
    try:
        return "tcmalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return False
