"""Helpers shared by the workflow scripts: logging into the rule's log file."""

from __future__ import annotations

import logging
import sys
import warnings


def log_to(path: str | None, level: int = logging.INFO) -> logging.Logger:
    """Send logging, warnings, tqdm progress and uncaught errors to ``path``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", module="pymatgen")

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        logging.getLogger("tlcgcnn").critical("failed: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = excepthook
    return logging.getLogger("tlcgcnn")
