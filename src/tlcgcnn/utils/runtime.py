"""Helpers shared by the workflow scripts: logging into the rule's log file."""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from typing import Any


def log_to(path: str | None, level: int = logging.INFO) -> logging.Logger:
    """Send logging, warnings, tqdm progress and uncaught errors to ``path``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", module="pymatgen")

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        logging.getLogger("tlcgcnn").critical("failed: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = excepthook
    logger = logging.getLogger("tlcgcnn")
    logger.info("%s", job_context())
    return logger


def script_setup(smk: Any) -> logging.Logger:
    """What every workflow script does first: log into the rule's log file and make the
    run's own properties (``properties:`` of its configuration) known to this process."""
    from tlcgcnn.data import properties

    logger = log_to(smk.log[0] if smk.log else None)
    properties.register(properties.from_config((smk.config or {}).get("properties")))
    return logger


def job_context() -> str:
    """Where this job runs: the SLURM job id, partition and GPUs it was given, if any."""
    env = os.environ.get
    gpus = env("CUDA_VISIBLE_DEVICES", "unset")
    if env("SLURM_JOB_ID"):
        return (
            f"slurm job {env('SLURM_JOB_ID')} partition={env('SLURM_JOB_PARTITION', '?')} "
            f"node={env('SLURMD_NODENAME', socket.gethostname())} CUDA_VISIBLE_DEVICES={gpus}"
        )
    return f"local job (no SLURM_JOB_ID) host={socket.gethostname()} CUDA_VISIBLE_DEVICES={gpus}"
