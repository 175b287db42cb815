"""Download stage: fetch a dataset from Materials Project, OQMD, matbench, a URL or the MP-2018
sources into a RAW table.

``run`` writes ``out_table`` (Parquet: ``material_id``, ``structure`` as JSON of
``Structure.as_dict()``, canonical property columns, source-specific extras; for ``url``, the
downloaded table's own columns, and for ``mp2018`` the rebuilt full MP-2018 table's (``cif`` text),
checked by ingest like a local file) and
``out_manifest`` (JSON provenance, see :mod:`tlcgcnn.data.download.manifest`). Both are written
atomically. Partial work lives in ``workdir`` (one folder per source and query) so that an
interrupted download resumes where it stopped; the folder is removed after success unless the
source's ``keep_chunks`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from tlcgcnn.data.download import matbench, materials_project, mp2018, oqmd, url
from tlcgcnn.data.download.http import DownloadError, RetryPolicy
from tlcgcnn.data.download.raw import to_frame
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)

SOURCES: dict[str, ModuleType] = {
    materials_project.SOURCE: materials_project,
    oqmd.SOURCE: oqmd,
    matbench.SOURCE: matbench,
    url.SOURCE: url,
    mp2018.SOURCE: mp2018,
}

__all__ = ["SOURCES", "DownloadError", "run"]


def run(
    dataset: Mapping[str, Any],
    out_table: str | Path,
    out_manifest: str | Path,
    workdir: str | Path,
    source: str | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Download ``source`` (default ``dataset["source"]``) as configured in ``dataset``.

    ``dataset`` is the ``dataset`` config section: ``dataset[source]`` holds the source's
    settings (``url``: the keys ``url``, ``sha256``, ``format`` of ``dataset`` itself) and
    ``dataset["http"]`` the retry/timeout policy. Returns the manifest dict.
    """
    name = source or dataset.get("source")
    if name not in SOURCES:
        raise ValueError(f"unknown download source {name!r}; choose one of {sorted(SOURCES)}")
    cfg = url.settings_of(dataset) if name == url.SOURCE else dict(dataset.get(name) or {})
    policy = RetryPolicy.from_config(dataset.get("http"))
    log.info("downloading from %s into %s", name, out_table)
    converted, manifest, store = SOURCES[name].download(cfg, policy, Path(workdir), on_chunk)
    if isinstance(converted, pd.DataFrame):  # a prepared table (url, mp2018): rows are checked by ingest
        if converted.empty:
            raise DownloadError(f"{name}: the table at {manifest.endpoint} has no rows")
        table = converted
        manifest.kept = len(table)
    else:
        if not converted.rows:
            raise DownloadError(
                f"{name}: no usable records ({manifest.received} received, {len(converted.dropped)} dropped); "
                "check the query filters"
            )
        table = to_frame(converted.rows, converted.columns)
        manifest.kept = len(table)
        manifest.dropped.extend(converted.dropped)
    io.write_parquet(table, out_table)
    manifest.write(out_manifest, {"table": Path(out_table)})
    log.info(
        "%s: %d records received, %d kept, %d dropped, %d retries",
        name,
        manifest.received,
        manifest.kept,
        len(manifest.dropped),
        manifest.retries.get("total", 0),
    )
    for item in manifest.dropped[:20]:
        log.warning("dropped %s: %s", item["material_id"], item["reason"])
    if not cfg.get("keep_chunks"):
        store.remove()
    return io.read_json(out_manifest)
