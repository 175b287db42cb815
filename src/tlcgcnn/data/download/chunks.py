"""A folder of finished download chunks: the unit of resumption.

Each chunk is a gzip-compressed JSON file written atomically, so a chunk file either exists
complete or not at all. A run that is killed loses at most the chunk it was fetching; the next
run skips every chunk whose file exists. The folder is keyed by a hash of the query, so chunks
fetched for one query are never reused for another.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


class ChunkStore:
    """Finished chunks of one query, stored under ``<workdir>/<source>-<query hash>/``."""

    def __init__(self, workdir: str | Path, source: str, query: dict[str, Any]) -> None:
        self.query_hash = io.sha256_json(query)[:16]
        self.root = Path(workdir) / f"{source}-{self.query_hash}"
        self.root.mkdir(parents=True, exist_ok=True)
        query_file = self.root / "query.json"
        if not query_file.exists():
            io.write_json(query_file, query)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json.gz"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def write(self, key: str, payload: Any) -> None:
        """Write one chunk atomically (temporary file, then rename)."""
        blob = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        with io.atomic_path(self.path(key)) as tmp:
            with gzip.open(tmp, "wb", compresslevel=5) as fh:
                fh.write(blob)

    def read(self, key: str) -> Any:
        """Read one chunk; a corrupt chunk file is an error naming the file."""
        path = self.path(key)
        try:
            with gzip.open(path, "rb") as fh:
                return json.loads(fh.read())
        except (OSError, EOFError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: corrupt chunk file ({exc}); delete it to fetch it again") from exc

    def keys(self) -> list[str]:
        return sorted(p.name[: -len(".json.gz")] for p in self.root.glob("*.json.gz"))

    def remove(self) -> None:
        """Delete the whole chunk folder (after the table has been written)."""
        shutil.rmtree(self.root, ignore_errors=True)
        log.info("removed chunk folder %s", self.root)
