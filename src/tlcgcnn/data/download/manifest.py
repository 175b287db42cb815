"""The manifest written next to every downloaded table.

It records where the data came from (source, endpoint, query — never an API key), the
database version when the server reports one, UTC start/end times, record counts (requested,
received, kept, dropped with reasons), chunk and retry counts, sha256 of the outputs and the
versions of the client libraries used.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcgcnn.utils import fileio as io

CLIENT_PACKAGES = ("mp-api", "emmet-core", "qmpy-rester", "matminer", "pymatgen", "requests", "pandas", "pyarrow")
MAX_DROPPED_LISTED = 10_000


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions(names: tuple[str, ...] = CLIENT_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the client libraries (None when a package is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class Manifest:
    """Provenance of one download; fill it in while downloading, then :meth:`write` it."""

    source: str
    endpoint: str
    query: dict[str, Any]
    started_utc: str = field(default_factory=utc_now)
    database_version: str | None = None
    requested: int | None = None
    received: int = 0
    kept: int = 0
    dropped: list[dict[str, str]] = field(default_factory=list)
    chunks_total: int = 0
    chunks_fetched: int = 0
    chunks_reused: int = 0
    retries: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, outputs: dict[str, Path]) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for item in self.dropped:
            key = item["reason"].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "source": self.source,
            "endpoint": self.endpoint,
            "query": self.query,
            "database_version": self.database_version,
            "started_utc": self.started_utc,
            "finished_utc": utc_now(),
            "records": {
                "requested": self.requested,
                "received": self.received,
                "kept": self.kept,
                "dropped": len(self.dropped),
                "dropped_by_reason": reasons,
            },
            "dropped": self.dropped[:MAX_DROPPED_LISTED],
            "chunks": {"total": self.chunks_total, "fetched": self.chunks_fetched, "reused": self.chunks_reused},
            "retries": self.retries,
            "outputs": {name: {"path": str(p), "sha256": io.sha256_file(p)} for name, p in outputs.items()},
            "client_versions": package_versions(),
            **({"extra": self.extra} if self.extra else {}),
        }

    def write(self, path: str | Path, outputs: dict[str, Path]) -> None:
        """Write the manifest atomically; ``outputs`` maps a label to a finished file."""
        io.write_json(path, self.as_dict(outputs))
