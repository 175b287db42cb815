"""Download from the Materials Project with ``mp-api``.

How the download is chunked, and what resumes
---------------------------------------------
mp-api's ``search`` pages internally and returns everything at once, which cannot be resumed.
So the download runs in two steps, both through ``MPRester.materials.summary.search``:

1. the list of matching ``material_id`` s is fetched (``fields=["material_id"]``, paged by
   mp-api) and saved as a chunk (``id_list``). This list is small (about 10 bytes per
   material) and is fetched again from scratch if the run dies while fetching it;
2. the ids are split into chunks of ``chunk_size``; each chunk is fetched with
   ``material_ids=[...]`` and the requested fields and saved as soon as it arrives.

A killed run resumes from the saved id list and skips every saved chunk, so finished chunks are
never requested again; only the chunk in flight is lost. The id list is reused on resume (chunk
boundaries stay the same); materials that disappear from the database between listing and
fetching are reported as ``missing`` in the manifest.

Retries are ours, not mp-api's: the client gets a session without urllib3 retries, with a
default timeout and response hooks, so 429 + Retry-After, 5xx, timeouts and truncated JSON are
retried (and counted) by :func:`tlcgcnn.data.download.http.call_with_retry`. A 429 or 5xx is
raised by the hook before mp-api sees it: mp-api re-sends at once any failed query whose message
contains "414" or "422" (as a port or a material id in the URL may), which would ignore
``Retry-After``.

The API key comes from ``MP_API_KEY`` or from ``api_key_file``; it is never logged or written
(log records and error messages are scrubbed of it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tlcgcnn.data.download import http
from tlcgcnn.data.download.chunks import ChunkStore
from tlcgcnn.data.download.manifest import Manifest
from tlcgcnn.data.download.raw import BadRecord, Converted, convert, structure_from_dict, to_float

log = logging.getLogger(__name__)

SOURCE = "materials_project"
DEFAULT_ENDPOINT = "https://api.materialsproject.org/"
DEFAULT_FIELDS = (
    "material_id",
    "structure",
    "formation_energy_per_atom",
    "energy_above_hull",
    "band_gap",
    "is_metal",
    "efermi",
    "bulk_modulus",
    "shear_modulus",
    "e_total",
    "e_electronic",
    "n",
    "deprecated",
    "theoretical",
)
REQUIRED_FIELDS = ("material_id", "structure")
#: SummaryDoc field -> (canonical column, how to read the value)
FIELD_COLUMNS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "formation_energy_per_atom": ("formation_energy_per_atom", to_float),
    "energy_above_hull": ("energy_above_hull", to_float),
    "band_gap": ("band_gap", to_float),
    "efermi": ("efermi", to_float),
    "is_metal": ("is_metal", lambda v: None if v is None else bool(v)),
    "bulk_modulus": ("k_vrh", lambda v: to_float(v.get("vrh")) if isinstance(v, dict) else to_float(None)),
    "shear_modulus": ("g_vrh", lambda v: to_float(v.get("vrh")) if isinstance(v, dict) else to_float(None)),
    "e_total": ("dielectric_total", to_float),
    "e_electronic": ("dielectric_electronic", to_float),
    "n": ("refractive_index", to_float),
    "homogeneous_poisson": ("poisson", to_float),
}
FILTER_KEYS = (
    "elements",
    "exclude_elements",
    "nsites_min",
    "nsites_max",
    "num_elements_max",
    "energy_above_hull_max",
    "deprecated",
    "theoretical",
)
SETTINGS = (
    *FILTER_KEYS,
    "endpoint",
    "api_key_file",
    "fields",
    "chunk_size",
    "id_page_size",
    "max_records",
    "keep_chunks",
)
#: mp-api fetches from S3 instead of the REST API when no filter and no ``num_chunks`` is given;
#: a (large) explicit number of pages keeps every request on the REST endpoint.
ALL_PAGES = 10**9
KEY_LENGTH = 32


def resolve_api_key(cfg: dict[str, Any]) -> tuple[str, str]:
    """(key, where it came from). ``api_key_file`` wins over ``MP_API_KEY``; never logs the key."""
    path = cfg.get("api_key_file")
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise http.DownloadError(f"Materials Project API key file {file} does not exist")
        key, origin = file.read_text(encoding="utf-8").strip(), f"file {file}"
    else:
        key, origin = os.environ.get("MP_API_KEY", "").strip(), "environment variable MP_API_KEY"
    if not key:
        raise http.DownloadError(
            "no Materials Project API key: set it with `export MP_API_KEY=<your 32-character key>` "
            "(get one at https://materialsproject.org/api) or put it in a file and set "
            f"dataset.materials_project.api_key_file (looked in the {origin})"
        )
    if len(key) != KEY_LENGTH:
        raise http.DownloadError(
            f"the Materials Project API key from the {origin} has {len(key)} characters; "
            f"valid keys have {KEY_LENGTH} (see https://materialsproject.org/api)"
        )
    return key, origin


def search_filters(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``summary.search`` from the config filters (JSON-friendly)."""
    kw: dict[str, Any] = {}
    if cfg.get("elements"):
        kw["elements"] = list(cfg["elements"])
    if cfg.get("exclude_elements"):
        kw["exclude_elements"] = list(cfg["exclude_elements"])
    lo, hi = cfg.get("nsites_min"), cfg.get("nsites_max")
    if lo is not None or hi is not None:
        kw["num_sites"] = [int(lo if lo is not None else 1), int(hi if hi is not None else 10**6)]
    if cfg.get("num_elements_max") is not None:
        kw["num_elements"] = [1, int(cfg["num_elements_max"])]
    if cfg.get("energy_above_hull_max") is not None:
        kw["energy_above_hull"] = [0.0, float(cfg["energy_above_hull_max"])]
    for flag in ("deprecated", "theoretical"):
        if cfg.get(flag) is not None:
            kw[flag] = bool(cfg[flag])
    return kw


def requested_fields(cfg: dict[str, Any]) -> list[str]:
    fields = list(cfg.get("fields") or DEFAULT_FIELDS)
    return list(dict.fromkeys([*REQUIRED_FIELDS, *fields]))


def check_settings(cfg: dict[str, Any]) -> None:
    unknown = sorted(set(cfg) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown dataset.materials_project settings {unknown}; known: {sorted(SETTINGS)}")
    for key in ("chunk_size", "id_page_size"):
        if cfg.get(key) is not None and int(cfg[key]) < 1:
            raise ValueError(f"dataset.materials_project.{key} must be >= 1 (got {cfg[key]})")


def doc_values(doc: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Columns of one SummaryDoc dict: nested objects flattened onto canonical names."""
    values: dict[str, Any] = {}
    for name in fields:
        if name in REQUIRED_FIELDS:
            continue
        raw = doc.get(name)
        if name in FIELD_COLUMNS:
            column, read = FIELD_COLUMNS[name]
            values[column] = read(raw)
        elif raw is None or isinstance(raw, (str, int, float, bool)):
            values[name] = raw
        else:
            values[name] = str(raw)
    return values


def build_record(fields: list[str]) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]:
    def build(doc: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if doc.get("structure") is None:
            raise BadRecord("record has no structure")
        return structure_from_dict(doc["structure"]), doc_values(doc, fields)

    return build


class _Redactor(logging.Filter):
    """Replaces a secret in every log record passing through a handler."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        return True


@contextlib.contextmanager
def secret_scrubbed(secret: str) -> Iterator[None]:
    """Scrub ``secret`` from log output and from any exception leaving the block."""
    redactor = _Redactor(secret)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redactor)
    try:
        yield
    except Exception as exc:
        text = str(exc)
        if secret in text:
            raise (
                type(exc)(text.replace(secret, "***"))
                if isinstance(exc, http.DownloadError)
                else http.DownloadError(text.replace(secret, "***"))
            ) from None
        raise
    finally:
        for handler in handlers:
            handler.removeFilter(redactor)


def _classifier(recorder: http.ResponseRecorder) -> Callable[[BaseException], http.TransientError | None]:
    """Classify mp-api failures using the last HTTP response the session saw."""
    from mp_api.client.core.client import MPRestError

    def classify(exc: BaseException) -> http.TransientError | None:
        base = http.classify(exc)
        if base is not None:
            return base
        if isinstance(exc, MPRestError):
            response = recorder.last
            if response is None:
                cause = exc.__cause__ or exc.__context__
                inner = http.classify(cause) if cause is not None else None
                return inner or http.UnreachableError(str(exc))
            if response.status_code == 200:  # the body of a 200 could not be read
                return http.TransientError(str(exc), kind="bad_response")
            err = http.error_for_status(response.status_code, response.url, response.headers, str(exc))
            return err if isinstance(err, http.TransientError) else None
        return None

    return classify


class _Client:
    """mp-api's summary rester wired to our session, retry policy and statistics."""

    def __init__(self, key: str, endpoint: str, policy: http.RetryPolicy, stats: http.RetryStats) -> None:
        self.endpoint, self.policy, self.stats = endpoint, policy, stats
        self.session, self.recorder = http.make_session(policy, headers={"x-api-key": key})
        self.session.hooks["response"].append(http.raise_retryable_status)
        self.classify = _classifier(self.recorder)
        self.database_version = self._call(self._heartbeat, "heartbeat (database version)")
        from mp_api.client import MPRester

        def connect() -> Any:
            return MPRester(
                api_key=key, endpoint=endpoint, session=self.session, use_document_model=False, mute_progress_bars=True
            )

        self.rester = self._call(connect, "connecting with mp-api")
        self.summary = self.rester.materials.summary

    def _heartbeat(self) -> str | None:
        response = http.get_bytes(self.session, self.endpoint.rstrip("/") + "/heartbeat")
        return response.json().get("db_version")

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        def attempt() -> Any:
            self.recorder.reset()
            return fn()

        return http.call_with_retry(
            attempt, what=what, url=self.endpoint, policy=self.policy, stats=self.stats, classify_error=self.classify
        )

    def list_ids(self, filters: dict[str, Any], page_size: int) -> list[str]:
        """All matching material ids (mp-api pages with _skip/_limit), sorted and unique."""
        docs = self._call(
            lambda: self.summary.search(
                **_as_search_kwargs(filters), fields=["material_id"], chunk_size=page_size, num_chunks=ALL_PAGES
            ),
            "listing material ids",
        )
        return sorted({str(doc["material_id"]) for doc in docs}, key=_id_sort_key)

    def fetch(self, ids: list[str], fields: list[str], what: str) -> list[dict[str, Any]]:
        """The documents of ``ids`` with ``fields`` (one request unless mp-api must split it)."""
        return self._call(
            lambda: self.summary.search(material_ids=ids, fields=fields, chunk_size=len(ids), num_chunks=1), what
        )


def _as_search_kwargs(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if k in ("num_sites", "num_elements", "energy_above_hull") else v for k, v in filters.items()}


def _id_sort_key(mid: str) -> tuple[str, int, str]:
    prefix, _, number = mid.rpartition("-")
    return (prefix, int(number), mid) if number.isdigit() else (mid, -1, mid)


def download(
    cfg: dict[str, Any],
    policy: http.RetryPolicy,
    workdir: Path,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[Converted, Manifest, ChunkStore]:
    """Fetch (or resume) a Materials Project download; returns rows, manifest, chunk store.

    ``on_chunk(done, total)`` is called after every chunk is saved (progress; tests use it to
    interrupt a run).
    """
    check_settings(cfg)
    key, origin = resolve_api_key(cfg)
    endpoint = str(cfg.get("endpoint") or os.environ.get("MP_API_ENDPOINT") or DEFAULT_ENDPOINT)
    endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
    fields = requested_fields(cfg)
    filters = search_filters(cfg)
    chunk_size = int(cfg.get("chunk_size") or 1000)
    query = {"filters": filters, "fields": fields, "chunk_size": chunk_size, "max_records": cfg.get("max_records")}
    manifest = Manifest(source=SOURCE, endpoint=endpoint, query=query)
    manifest.extra["api_key_from"] = origin
    stats = http.RetryStats()
    store = ChunkStore(workdir, SOURCE, {"endpoint": endpoint, **query})
    with secret_scrubbed(key):
        client = _Client(key, endpoint, policy, stats)
        manifest.database_version = client.database_version
        ids = _id_list(client, store, filters, int(cfg.get("id_page_size") or 10_000), cfg.get("max_records"))
        converted = _fetch_chunks(client, store, ids, fields, chunk_size, manifest, on_chunk)
    manifest.requested = len(ids)
    manifest.retries = stats.as_dict()
    return converted, manifest, store


def _id_list(client: _Client, store: ChunkStore, filters: dict[str, Any], page_size: int, limit: Any) -> list[str]:
    if store.has("id_list"):
        ids = list(store.read("id_list"))
        log.info("resuming: %d material ids from the saved id list", len(ids))
        return ids
    ids = client.list_ids(filters, page_size)
    if limit is not None:
        ids = ids[: int(limit)]
    store.write("id_list", ids)
    log.info("%d materials match the query", len(ids))
    return ids


def _fetch_chunks(
    client: _Client,
    store: ChunkStore,
    ids: list[str],
    fields: list[str],
    chunk_size: int,
    manifest: Manifest,
    on_chunk: Callable[[int, int], None] | None,
) -> Converted:
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    manifest.chunks_total = len(chunks)
    converted = Converted(columns=[FIELD_COLUMNS[f][0] if f in FIELD_COLUMNS else f for f in fields[2:]])
    build = build_record(fields)
    missing: list[str] = []
    for index, chunk_ids in enumerate(chunks):
        name = f"chunk-{index:06d}"
        if store.has(name):
            docs = store.read(name)
            manifest.chunks_reused += 1
        else:
            docs = client.fetch(chunk_ids, fields, f"chunk {index + 1}/{len(chunks)} ({len(chunk_ids)} ids)")
            store.write(name, docs)
            manifest.chunks_fetched += 1
            log.info("chunk %d/%d: %d documents", index + 1, len(chunks), len(docs))
        manifest.received += len(docs)
        returned = {str(d.get("material_id")) for d in docs}
        missing.extend(m for m in chunk_ids if m not in returned)
        wanted = set(chunk_ids)
        for doc in docs:
            if str(doc.get("material_id")) not in wanted:
                manifest.dropped.append(
                    {"material_id": str(doc.get("material_id")), "reason": f"not requested in {name}"}
                )
        convert(
            (d for d in docs if str(d.get("material_id")) in wanted), lambda d: str(d["material_id"]), build, converted
        )
        if on_chunk is not None:
            on_chunk(index + 1, len(chunks))
    manifest.extra["missing"] = {"count": len(missing), "material_ids": missing[:1000]}
    return converted
