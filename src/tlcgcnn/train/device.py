"""Where and how reproducibly training runs: seeds and device choice."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)

# oneDNN (the CPU bf16 matmul backend) caches one primitive per matrix shape, 1,024 by
# default; every crystal batch has a new atom count, so under bf16 autocast the cache grows
# by ~1 MB a step (pretraining on the full MP table passed 4 GB RSS). A small cache keeps
# the speed (measured: 22.1 s vs 23.3 s for 500 steps) and bounds the memory. Read by
# oneDNN when it creates its first primitive, so this must run before the first matmul.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def processor(device: torch.device | str) -> str | None:
    """The chip behind ``device``: the GPU's name for CUDA ("NVIDIA H200"), else the CPU's
    model name. Recorded with each run, next to the device type and precision."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    from tlcgcnn.report.provenance import cpu_model

    return cpu_model() if dev.type == "cpu" else None


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if visible not in ("", "-1", "NoDevFiles"):
            # e.g. a SLURM job that was given a GPU, with a CPU-only torch or no driver
            log.warning(
                "CUDA_VISIBLE_DEVICES=%s (GPUs allocated to this job) but torch %s sees no usable CUDA device "
                "(built for CUDA %s); falling back to CPU",
                visible,
                torch.__version__,
                torch.version.cuda or "none",
            )
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available; falling back to CPU", name)
        return torch.device("cpu")
    return dev
