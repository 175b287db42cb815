"""Download formation energies and structures from OQMD with ``qmpy-rester``.

Requests go through ``QMPYRester.get_oqmd_phases`` (``/oqmdapi/formationenergy``), paged with
``limit``/``offset``; every page is saved as a chunk as soon as it arrives, so a killed run
resumes at the first missing page and never requests finished pages again. Resuming relies on
the server returning records in a stable order (OQMD orders by its database id); a record seen
twice is kept once and reported as a duplicate.

Working around qmpy-rester 0.2.0:

* ``verbose=False`` is always passed (its default asks for confirmation on stdin);
* its filter keyword list misses a comma (``'spacegroup' 'prototype'``), so the ``spacegroup``
  and ``prototype`` keywords are silently dropped. We never use its filter keywords: the whole
  filter expression is built here and passed as ``filter=`` (which it forwards verbatim);
* it has no timeout and returns ``None`` for any status other than 200/400. We mount an
  adapter with a default timeout on its session and record every response with a hook, so
  status codes and ``Retry-After`` reach our retry logic;
* its default endpoint is read from the ``oqmd_url`` environment variable at import time; we
  resolve ``endpoint`` → ``$oqmd_url`` → ``http://oqmd.org`` when the download starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlcgcnn.data.download import http
from tlcgcnn.data.download.chunks import ChunkStore
from tlcgcnn.data.download.manifest import Manifest
from tlcgcnn.data.download.raw import BadRecord, Converted, check_structure, convert, to_float

log = logging.getLogger(__name__)

SOURCE = "oqmd"
DEFAULT_ENDPOINT = "http://oqmd.org"
DEFAULT_FIELDS = (
    "name",
    "entry_id",
    "formationenergy_id",
    "icsd_id",
    "composition",
    "spacegroup",
    "prototype",
    "natoms",
    "ntypes",
    "volume",
    "unit_cell",
    "sites",
    "delta_e",
    "stability",
    "band_gap",
)
REQUIRED_FIELDS = ("entry_id", "unit_cell", "sites")
EXTRA_FIELDS = ("name", "formationenergy_id", "icsd_id", "composition", "spacegroup", "prototype", "natoms", "ntypes")
SETTINGS = (
    "endpoint",
    "element_set",
    "spacegroup",
    "prototype",
    "natoms_max",
    "ntypes_max",
    "stability_max",
    "extra_filter",
    "fields",
    "page_size",
    "max_records",
    "keep_chunks",
)
SITE = re.compile(r"^\s*([A-Z][a-z]?)\s*@\s*(\S+)\s+(\S+)\s+(\S+)\s*$")
#: OQMD's filter language has strict comparisons only; inclusive maxima add this tolerance.
INCLUSIVE_EPS = 1e-6


def check_settings(cfg: dict[str, Any]) -> None:
    unknown = sorted(set(cfg) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown dataset.oqmd settings {unknown}; known: {sorted(SETTINGS)}")
    if cfg.get("page_size") is not None and int(cfg["page_size"]) < 1:
        raise ValueError(f"dataset.oqmd.page_size must be >= 1 (got {cfg['page_size']})")


def filter_expression(cfg: dict[str, Any]) -> str:
    """The OQMD ``filter=`` expression for the configured filters ('' when there are none)."""
    parts: list[str] = []
    for key in ("element_set", "spacegroup", "prototype"):
        if cfg.get(key):
            parts.append(f"{key}={cfg[key]}")
    for key, field in (("natoms_max", "natoms"), ("ntypes_max", "ntypes")):
        if cfg.get(key) is not None:
            parts.append(f"{field}<{int(cfg[key]) + 1}")
    if cfg.get("stability_max") is not None:
        parts.append(f"stability<{float(cfg['stability_max']) + INCLUSIVE_EPS:g}")
    if cfg.get("extra_filter"):
        parts.append(f"({cfg['extra_filter']})")
    return " AND ".join(parts)


def resolve_endpoint(cfg: dict[str, Any]) -> str:
    return str(cfg.get("endpoint") or os.environ.get("oqmd_url") or DEFAULT_ENDPOINT).rstrip("/")


def parse_site(text: str) -> tuple[str, list[float]]:
    """('Fe', [x, y, z]) from an OQMD site string such as ``'Fe @ 0.5 0.5 0'``."""
    match = SITE.match(str(text))
    if not match:
        raise BadRecord(f"cannot parse site {text!r} (expected 'El @ x y z')")
    try:
        return match.group(1), [float(match.group(i)) for i in (2, 3, 4)]
    except ValueError as exc:
        raise BadRecord(f"cannot parse site {text!r}: {exc}") from exc


def structure_of(record: dict[str, Any]) -> Any:
    """pymatgen Structure from ``unit_cell`` (lattice vectors as rows, Å) and ``sites``."""
    from pymatgen.core import Lattice, Structure

    cell, sites = record.get("unit_cell"), record.get("sites")
    if not cell or not sites:
        raise BadRecord("record has no unit_cell/sites")
    parsed = [parse_site(s) for s in sites]
    try:
        structure = Structure(Lattice(cell), [el for el, _ in parsed], [xyz for _, xyz in parsed])
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad input
        raise BadRecord(f"cannot build structure: {type(exc).__name__}: {exc}") from exc
    check_structure(structure)
    return structure


def record_values(record: dict[str, Any]) -> dict[str, Any]:
    """Canonical columns (+ OQMD extras) of one formationenergy record."""
    stability = to_float(record.get("stability"))
    values: dict[str, Any] = {
        "formation_energy_per_atom": to_float(record.get("delta_e")),
        # OQMD's stability is negative below the hull of the other phases; above-hull energy is >= 0.
        "energy_above_hull": max(stability, 0.0) if stability == stability else stability,
        "oqmd_stability": stability,
        "band_gap": to_float(record.get("band_gap")),
    }
    for key in EXTRA_FIELDS:
        if key in record:
            values[key] = record[key]
    return values


def build(record: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return structure_of(record), record_values(record)


class _Client:
    """qmpy-rester with a timeout, a response recorder and our retry policy."""

    def __init__(self, endpoint: str, policy: http.RetryPolicy, stats: http.RetryStats) -> None:
        from qmpy_rester import QMPYRester

        self.endpoint, self.policy, self.stats = endpoint, policy, stats
        self.rester = QMPYRester(endpoint)
        adapter = http.TimeoutAdapter(policy.timeout_s)
        self.rester.session.mount("http://", adapter)
        self.rester.session.mount("https://", adapter)
        self.recorder = http.ResponseRecorder()
        self.recorder.attach(self.rester.session)

    def page(self, params: dict[str, Any], what: str) -> dict[str, Any]:
        return http.call_with_retry(
            lambda: self._page_once(params), what=what, url=self.endpoint, policy=self.policy, stats=self.stats
        )

    def _page_once(self, params: dict[str, Any]) -> dict[str, Any]:
        self.recorder.reset()
        try:
            result = self.rester.get_oqmd_phases(verbose=False, **params)
        except json.JSONDecodeError:
            self._raise_for_status()
            raise
        self._raise_for_status()
        if not isinstance(result, dict) or not isinstance(result.get("data"), list):
            raise http.TransientError("response has no 'data' list", kind="bad_response")
        return result

    def _raise_for_status(self) -> None:
        response = self.recorder.last
        if response is not None and response.status_code != 200:
            raise http.error_for_status(response.status_code, response.url, response.headers, response.text)


def download(
    cfg: dict[str, Any],
    policy: http.RetryPolicy,
    workdir: Path,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[Converted, Manifest, ChunkStore]:
    """Fetch (or resume) an OQMD download; returns rows, manifest and chunk store."""
    check_settings(cfg)
    endpoint = resolve_endpoint(cfg)
    fields = list(dict.fromkeys([*REQUIRED_FIELDS, *(cfg.get("fields") or DEFAULT_FIELDS)]))
    page_size = int(cfg.get("page_size") or 500)
    max_records = cfg.get("max_records")
    expr = filter_expression(cfg)
    query = {"filter": expr, "fields": fields, "page_size": page_size, "max_records": max_records}
    manifest = Manifest(source=SOURCE, endpoint=endpoint + "/oqmdapi/formationenergy", query=query)
    stats = http.RetryStats()
    store = ChunkStore(workdir, SOURCE, {"endpoint": endpoint, **query})
    client = _Client(endpoint, policy, stats)
    base = {"fields": ",".join(fields), "limit": page_size, **({"filter": expr} if expr else {})}
    converted = Converted(columns=["formation_energy_per_atom", "energy_above_hull", "band_gap"])
    offset, total, index = 0, None, 0
    while total is None or offset < total:
        name = f"page-{index:06d}"
        if store.has(name):
            page = store.read(name)
            manifest.chunks_reused += 1
        else:
            page = client.page({**base, "offset": offset}, f"OQMD page {index + 1} (offset {offset})")
            page = {"data": page["data"], "meta": page.get("meta") or {}}
            store.write(name, page)
            manifest.chunks_fetched += 1
        available = int(page["meta"].get("data_available") or 0)
        total = min(available, int(max_records)) if max_records is not None else available
        records = page["data"][: max(0, total - offset)]
        manifest.received += len(records)
        manifest.extra["api_version"] = page["meta"].get("api_version")
        convert(records, lambda r: f"oqmd-{int(r['entry_id'])}", build, converted)
        index += 1
        log.info("OQMD page %d: %d records (%d of %d)", index, len(records), min(offset + page_size, total), total)
        if on_chunk is not None:
            on_chunk(index, -(-total // page_size))
        if not page["data"]:
            break
        offset += len(page["data"])  # the server may return fewer than `limit` records
    manifest.chunks_total = index
    manifest.requested = total
    manifest.retries = stats.as_dict()
    return converted, manifest, store
