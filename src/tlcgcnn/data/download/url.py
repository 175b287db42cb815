"""Download a prepared table (CSV, Parquet or JSON, optionally compressed) from a URL.

For a table someone already assembled and hosts, e.g. the full MP-2018 table
(``mp2018_36737.csv.gz``, docs/usage.md): ``dataset: {source: url, url: <https://...>, sha256:
<64 hex digits>}``, optionally ``format`` when the URL's file name does not say it (``csv``,
``csv.gz``, ``parquet``, ``json``, ...).

The file is fetched into the work folder as ``<file>.part`` (a cut transfer is resumed with an
HTTP ``Range`` request) and renamed into place only when its sha256 equals the configured one
(:func:`tlcgcnn.data.download.http.fetch_verified`): a corrupted transfer is fetched again, and
a file that is not the one the checksum describes is an error naming the expected and the
received sha256; nothing is written to the outputs. The verified file is reused by a re-run
(the work folder is keyed by URL and sha256) until the table has been written.

The table keeps its own columns (an id column, a structure column of CIF / POSCAR / XYZ text
or pymatgen JSON, label columns); it is written unchanged as Parquet, and the ingest stage
reads it like a local ``dataset.path`` (``id_column``, ``structure_column`` and ``columns``
apply), parsing and checking every structure.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from tlcgcnn.data import inputs
from tlcgcnn.data.download import http
from tlcgcnn.data.download.chunks import ChunkStore
from tlcgcnn.data.download.manifest import Manifest

log = logging.getLogger(__name__)

SOURCE = "url"
#: the ``dataset`` keys of this source (flat, next to ``source``)
SETTINGS = ("url", "sha256", "format")
#: file formats, as the suffix the reader (tlcgcnn.data.inputs.read_table) recognises
FORMATS = ("csv", "csv.gz", "csv.bz2", "csv.xz", "parquet", "json", "json.gz", "jsonl", "jsonl.gz")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def settings_of(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """This source's settings from the ``dataset`` section (its keys sit next to ``source``)."""
    return {k: dataset[k] for k in SETTINGS if dataset.get(k) is not None}


def file_format(url: str, fmt: str | None) -> str:
    """The file's format: ``fmt`` if given, else the suffix of the URL's file name."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"dataset.format must be one of {list(FORMATS)} (got {fmt!r})")
        return fmt
    name = urlsplit(url).path.rsplit("/", 1)[-1].lower()
    if name.endswith(".pq"):
        return "parquet"
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith("." + suffix):
            return suffix
    raise ValueError(
        f"dataset.url: cannot tell the file format from {name or url!r}; set dataset.format to one of {list(FORMATS)}"
    )


def check_settings(cfg: Mapping[str, Any]) -> tuple[str, str, str]:
    """(url, sha256, format) of valid settings; a clear error for a missing or malformed one."""
    url, sha256 = cfg.get("url"), cfg.get("sha256")
    if not url or urlsplit(str(url)).scheme not in ("http", "https"):
        raise ValueError(f"dataset.url must be an http(s) URL of the table (got {url!r})")
    if not sha256 or not SHA256.match(str(sha256)):
        raise ValueError(
            f"dataset.sha256 must be the 64 hex digits of the file's sha256 (got {sha256!r}); "
            "`sha256sum <file>` prints it"
        )
    return str(url), str(sha256).lower(), file_format(str(url), cfg.get("format"))


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    """The table in ``path``, read as ``fmt`` (as :func:`tlcgcnn.data.inputs.read_table` reads a
    local file: ids stay text); nested values (a pymatgen structure dict in JSON) become JSON
    text, which ingest reads and Parquet stores."""
    compression = {"gz": "gzip", "bz2": "bz2", "xz": "xz"}.get(fmt.rsplit(".", 1)[-1]) if "." in fmt else None
    ids = {c: str for c in inputs.ID_COLUMNS}
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt.startswith("csv"):
            df = pd.read_csv(path, compression=compression, low_memory=False, dtype=ids)
        else:
            df = pd.read_json(path, compression=compression, lines=fmt.startswith("jsonl"), dtype=ids)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"the verified file is not a readable {fmt} table ({type(exc).__name__}: {exc}); if the format is "
            "wrong, set dataset.format (the verified file is kept in the work folder and reused)"
        ) from None
    for col in [c for c in df.columns if pd.api.types.is_object_dtype(df[c])]:
        if df[col].map(lambda v: isinstance(v, dict | list)).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
    return df


def download(
    cfg: Mapping[str, Any],
    policy: http.RetryPolicy,
    workdir: Path,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, Manifest, ChunkStore]:
    """Fetch (or reuse) and verify the file; returns the table, the manifest and the work folder."""
    url, sha256, fmt = check_settings(cfg)
    manifest = Manifest(source=SOURCE, endpoint=url, query={"url": url, "sha256": sha256, "format": fmt})
    stats = http.RetryStats()
    store = ChunkStore(workdir, SOURCE, {"url": url, "sha256": sha256})
    dest = store.root / "table"  # one name whatever the format: a re-run with a corrected format reuses it
    session, _ = http.make_session(policy)
    fetched = http.fetch_verified(session, url, dest, sha256, policy, stats)
    manifest.chunks_total, manifest.chunks_fetched, manifest.chunks_reused = 1, int(fetched), int(not fetched)
    if on_chunk is not None:
        on_chunk(1, 1)
    table = read_table(dest, fmt)
    log.info("%s: %d rows, columns %s", url, len(table), list(table.columns))
    manifest.received = len(table)
    manifest.retries = stats.as_dict()
    manifest.extra.update(
        {"file_sha256": sha256, "file_bytes": dest.stat().st_size, "format": fmt, "columns": list(table.columns)}
    )
    return table, manifest, store
