"""Download a matbench task file and turn it into the raw table.

A matbench file ``matbench_<task>.json.gz`` is a gzip-compressed pandas "split"-oriented JSON
(``{"index": [...], "columns": ["structure", <target>], "data": [[<structure dict>, value]]}``).
It is fetched from ``base_url`` (default: matminer's host) into ``<file>.part``; an interrupted
transfer is resumed with an HTTP ``Range`` request when the server supports it (otherwise it
restarts). The finished file is verified against a sha256 checksum before it is renamed into
place; a mismatch deletes the file and downloads it again (counted as a retry), and a file that
keeps failing the check (or arrives twice with the same wrong sha256) is a clear error
(:func:`tlcgcnn.data.download.http.fetch_verified`). A verified file in the work folder is reused.

The checksums shipped here are those in matminer 0.10.1's ``datasets/dataset_metadata.json``;
``checksums`` in the config overrides them (e.g. for a mirror or a test server).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlcgcnn.data.download import http
from tlcgcnn.data.download.chunks import ChunkStore
from tlcgcnn.data.download.manifest import Manifest
from tlcgcnn.data.download.raw import BadRecord, Converted, convert, structure_from_dict

log = logging.getLogger(__name__)

SOURCE = "matbench"
DEFAULT_BASE_URL = "https://ml.materialsproject.org/projects/"
SETTINGS = ("task", "base_url", "checksums", "keep_chunks")


@dataclass(frozen=True)
class Task:
    """One matbench task: its target column and how it maps onto a canonical property."""

    target: str
    column: str
    sha256: str
    transform: Callable[[Any, Any], Any]
    note: str = ""

    def file(self, name: str) -> str:
        return f"matbench_{name}.json.gz"


def _same(value: Any, structure: Any) -> float:
    return float(value)


def _pow10(value: Any, structure: Any) -> float:
    return float(10.0 ** float(value))


def _per_atom(value: Any, structure: Any) -> float:
    return float(value) / len(structure)


def _flag(value: Any, structure: Any) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise BadRecord(f"is_metal target {value!r} is not 0/1/true/false")


TASKS: dict[str, Task] = {
    "mp_e_form": Task(
        "e_form", "formation_energy_per_atom", "dedcb1d4ba2e3e50dbdd45ba5bc647a00e9c2bcf8f8bf556dc8e92caa39eb21f", _same
    ),
    "mp_gap": Task("gap pbe", "band_gap", "58b65746bd88329986ed66031a2ac1369c7c522f7bc9f9081528e07097c2c057", _same),
    "mp_is_metal": Task(
        "is_metal", "is_metal", "9a028ed5750a4c76ca36e9f3c8d48fe0bf3fb21b76ec2289e58ae7048d527919", _flag
    ),
    "log_kvrh": Task(
        "log10(K_VRH)",
        "k_vrh",
        "44b113ddb7e23aa18731a62c74afa7e5aa654199e0db5f951c8248a00955c9cd",
        _pow10,
        "k_vrh = 10**target",
    ),
    "log_gvrh": Task(
        "log10(G_VRH)",
        "g_vrh",
        "098af941f4c663270f1fe21abf20ffad6fb85ecbfcba5786ceac03983ac29da7",
        _pow10,
        "g_vrh = 10**target",
    ),
    "dielectric": Task(
        "n", "refractive_index", "83befa09bc2ec2f4b6143afc413157827a90e5e2e42c1eb507ccfa01bf26a1d6", _same
    ),
    "perovskites": Task(
        "e_form",
        "formation_energy_per_atom",
        "4641e2417f8ec8b50096d2230864468dfa08278dc9d257c327f65d0305278483",
        _per_atom,
        "matbench gives the heat of formation of the whole 5-atom cell (RPBE, O reference from water "
        "vapour); divided by the number of sites. Not on the same reference as MP formation energies.",
    ),
}


def check_settings(cfg: dict[str, Any]) -> str:
    """Validate the matbench config section; returns the task name."""
    unknown = sorted(set(cfg) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown dataset.matbench settings {unknown}; known: {sorted(SETTINGS)}")
    task = cfg.get("task")
    if task not in TASKS:
        raise ValueError(f"dataset.matbench.task must be one of {sorted(TASKS)} (got {task!r})")
    return str(task)


def expected_sha256(task: str, cfg: dict[str, Any]) -> tuple[str, str]:
    """(checksum, where it came from): config ``checksums[task]`` or the shipped table."""
    override = (cfg.get("checksums") or {}).get(task)
    if override:
        return str(override).lower(), "config"
    return TASKS[task].sha256, "shipped (matminer 0.10.1 dataset_metadata.json)"


def read_split_json(path: Path, task: str) -> tuple[list[Any], list[list[Any]], int, int]:
    """(index, data rows, structure column, target column) of a matbench file."""
    try:
        with gzip.open(path, "rb") as fh:
            doc = json.loads(fh.read())
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a gzip-compressed JSON file ({exc})") from exc
    if not isinstance(doc, dict) or not {"columns", "data"} <= set(doc):
        raise ValueError(f"{path}: expected pandas 'split' JSON with 'columns' and 'data'")
    columns = list(doc["columns"])
    target = TASKS[task].target
    for needed in ("structure", target):
        if needed not in columns:
            raise ValueError(f"{path}: column {needed!r} missing (columns: {columns})")
    data = list(doc["data"])
    index = list(doc.get("index") or range(len(data)))
    if len(index) != len(data):
        raise ValueError(f"{path}: {len(index)} index entries but {len(data)} rows")
    return index, data, columns.index("structure"), columns.index(target)


def download(
    cfg: dict[str, Any],
    policy: http.RetryPolicy,
    workdir: Path,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[Converted, Manifest, ChunkStore]:
    """Fetch (or reuse) and verify one matbench file; returns rows, manifest and chunk store."""
    name = check_settings(cfg)
    task = TASKS[name]
    base = str(cfg.get("base_url") or DEFAULT_BASE_URL)
    url = base.rstrip("/") + "/" + task.file(name)
    sha256, sha_origin = expected_sha256(name, cfg)
    manifest = Manifest(source=SOURCE, endpoint=url, query={"task": name, "target": task.target, "column": task.column})
    stats = http.RetryStats()
    store = ChunkStore(workdir, SOURCE, {"url": url, "sha256": sha256})
    dest = store.root / task.file(name)
    session, _ = http.make_session(policy)
    fetched = http.fetch_verified(session, url, dest, sha256, policy, stats)
    manifest.chunks_total, manifest.chunks_fetched, manifest.chunks_reused = 1, int(fetched), int(not fetched)
    if on_chunk is not None:
        on_chunk(1, 1)
    index, data, s_col, t_col = read_split_json(dest, name)

    def build(row: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        structure = structure_from_dict(row["structure"])
        value = row["target"]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise BadRecord(f"target {task.target!r} is missing")
        try:
            converted_value = task.transform(value, structure)
        except (TypeError, ValueError) as exc:
            raise BadRecord(f"target {task.target!r}={value!r} is not a number") from exc
        return structure, {task.column: converted_value, f"matbench_{task.target}": value}

    records = (
        {"id": f"matbench_{name}-{i}", "structure": r[s_col], "target": r[t_col]}
        for i, r in zip(index, data, strict=True)
    )
    converted = convert(records, lambda r: r["id"], build, Converted(columns=[task.column]))
    manifest.requested = manifest.received = len(data)
    manifest.retries = stats.as_dict()
    manifest.extra.update({"file": dest.name, "sha256": sha256, "sha256_from": sha_origin, "conversion": task.note})
    return converted, manifest, store
