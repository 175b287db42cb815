"""Local HTTP servers that answer like Materials Project, OQMD, the matbench file host and GitHub's
file hosts (codeload archives, raw files).

They run on 127.0.0.1 (port 0) in a background thread, serve records built from real
structures (mp2018_random500), log every request, and can inject faults: a queue of faults is
consumed by the requests a predicate selects (e.g. only the data-chunk requests).

Faults: ``("status", code, retry_after)``, ``("sleep", seconds)`` (answer late; the client has
timed out), ``("truncate",)`` (half a JSON body with a matching Content-Length), ``("cut",)``
(full Content-Length announced, half the body sent, connection closed) and ``("corrupt",)``
(bytes changed, same length).
"""

from __future__ import annotations

import collections
import gzip
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MP2018 = DATA_DIR / "mp2018_random500.csv.gz"


@dataclass
class Request:
    time: float
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    fault: tuple[Any, ...] | None = None


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(data: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


class FakeServer:
    """Base class: subclasses implement ``route(path, params, headers) -> Reply``."""

    def __init__(self, faulty: Callable[[str, dict[str, str]], bool] = lambda path, params: True) -> None:
        self.requests: list[Request] = []
        self.faults: collections.deque[tuple[Any, ...]] = collections.deque()
        self.faulty = faulty
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            fault = self.faults.popleft() if self.faults and self.faulty(parts.path, params) else None
            self.requests.append(Request(time.monotonic(), parts.path, params, headers, fault))
        try:
            self._answer(handler, parts.path, params, headers, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        path: str,
        params: dict[str, str],
        headers: dict[str, str],
        fault: tuple[Any, ...] | None,
    ) -> None:
        kind = fault[0] if fault else None
        if kind == "status":
            extra = {"Retry-After": str(fault[2])} if fault[2] is not None else {}
            reply = Reply(fault[1], json.dumps({"detail": f"injected {fault[1]}"}).encode(), extra)
            return self._send(handler, reply)
        if kind == "sleep":
            time.sleep(fault[1])
        reply = self.route(path, params, headers)
        if kind == "truncate":
            reply = Reply(reply.status, reply.body[: len(reply.body) // 2], reply.headers)
        if kind == "corrupt":
            body = bytearray(reply.body)
            for i in range(0, len(body), max(1, len(body) // 16)):
                body[i] ^= 0xFF
            reply = Reply(reply.status, bytes(body), reply.headers)
        if kind == "cut":
            return self._send(handler, reply, cut=True)
        self._send(handler, reply)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply, cut: bool = False) -> None:
        handler.send_response(reply.status)
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        if cut:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(reply.body[: len(reply.body) // 2] if cut else reply.body)
        handler.wfile.flush()
        if cut:
            handler.close_connection = True

    def count(self, predicate: Callable[[Request], bool]) -> int:
        return sum(1 for r in self.requests if predicate(r))


# --------------------------------------------------------------------------- real data
def load_mp2018(n: int, max_sites: int = 24) -> list[dict[str, Any]]:
    """The first ``n`` materials of mp2018_random500 with at most ``max_sites`` sites."""
    import pandas as pd
    from pymatgen.core import Structure

    df = pd.read_csv(MP2018)
    rows: list[dict[str, Any]] = []
    for row in df.to_dict("records"):
        structure = Structure.from_str(row["cif"], fmt="cif")
        if len(structure) > max_sites:
            continue
        rows.append({**row, "structure": structure})
        if len(rows) == n:
            break
    return rows


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _mid_key(mid: str) -> tuple[str, int]:
    prefix, _, number = mid.rpartition("-")
    return prefix, int(number) if number.isdigit() else -1


def summary_doc(row: dict[str, Any]) -> dict[str, Any]:
    """An emmet-core SummaryDoc-shaped dict (JSON) from one mp2018 row."""
    s = row["structure"]
    k, g = _num(row.get("k_vrh")), _num(row.get("g_vrh"))
    e_el = _num(row.get("diel_elec_mp"))
    return {
        "material_id": row["material_id"],
        "structure": s.as_dict(),
        "formula_pretty": s.composition.reduced_formula,
        "nsites": len(s),
        "elements": sorted({el.symbol for el in s.composition.elements}),
        "nelements": len(s.composition.elements),
        "volume": s.volume,
        "formation_energy_per_atom": _num(row["formation_energy_per_atom"]),
        "energy_above_hull": None,  # not in mp2018_random500
        "band_gap": _num(row["band_gap"]),
        "is_metal": bool(row["is_metal"]) if _num(row.get("is_metal")) is not None else None,
        "efermi": _num(row.get("efermi")),
        "bulk_modulus": None if k is None else {"voigt": None, "reuss": None, "vrh": k},
        "shear_modulus": None if g is None else {"voigt": None, "reuss": None, "vrh": g},
        "e_total": _num(row.get("diel_total_mp")),
        "e_electronic": e_el,
        "n": None if e_el is None else math.sqrt(e_el),
        "deprecated": False,
        "theoretical": False,
    }


# --------------------------------------------------------------------------- Materials Project
class MPServer(FakeServer):
    """``/heartbeat`` and ``/materials/summary/`` like api.materialsproject.org."""

    DB_VERSION = "2025_09_25"

    def __init__(self, docs: list[dict[str, Any]], api_key: str, **kw: Any) -> None:
        kw.setdefault("faulty", lambda path, params: "material_ids" in params)
        super().__init__(**kw)
        self.docs = sorted(docs, key=lambda d: _mid_key(d["material_id"]))
        self.api_key = api_key

    def route(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Reply:
        if path.rstrip("/") == "/heartbeat":
            import emmet.core

            version = getattr(emmet.core, "__version__", "0.87.3")
            return json_reply({"version": version, "db_version": self.DB_VERSION, "access_controlled_batch_ids": []})
        if path.rstrip("/") != "/materials/summary":
            return json_reply({"detail": "Not Found"}, 404)
        if headers.get("x-api-key") != self.api_key:
            return json_reply({"detail": "Invalid API key"}, 401)
        docs = [d for d in self.docs if self._matches(d, params)]
        total = len(docs)
        if "_page" in params:
            per = int(params.get("_per_page") or params.get("_limit") or 100)
            start = (int(params["_page"]) - 1) * per
        else:
            per, start = int(params.get("_limit") or 100), int(params.get("_skip") or 0)
        page = docs[start : start + per]
        if params.get("_fields"):
            keep = params["_fields"].split(",")
            page = [{k: d.get(k) for k in keep} for d in page]
        return json_reply({"data": page, "meta": {"total_doc": total, "max_limit": 1000}})

    @staticmethod
    def _matches(doc: dict[str, Any], p: dict[str, str]) -> bool:
        if "material_ids" in p and doc["material_id"] not in p["material_ids"].split(","):
            return False
        if "elements" in p and not set(p["elements"].split(",")) <= set(doc["elements"]):
            return False
        if "exclude_elements" in p and set(p["exclude_elements"].split(",")) & set(doc["elements"]):
            return False
        for key, field_name in (
            ("nsites", "nsites"),
            ("nelements", "nelements"),
            ("energy_above_hull", "energy_above_hull"),
        ):
            value = doc.get(field_name)
            lo, hi = p.get(f"{key}_min"), p.get(f"{key}_max")
            if (lo is not None or hi is not None) and value is None:
                return False
            if lo is not None and value < float(lo) or hi is not None and value > float(hi):
                return False
        for flag in ("deprecated", "theoretical"):
            if flag in p and str(doc[flag]).lower() != p[flag].lower():
                return False
        return True


# --------------------------------------------------------------------------- OQMD
def oqmd_record(row: dict[str, Any], entry_id: int) -> dict[str, Any]:
    """A ``/oqmdapi/formationenergy`` record (qmpy FormationEnergySerializer fields)."""
    s = row["structure"]
    return {
        "name": s.composition.reduced_formula,
        "entry_id": entry_id,
        "calculation_id": entry_id * 10,
        "icsd_id": None,
        "formationenergy_id": entry_id * 100,
        "duplicate_entry_id": entry_id,
        "composition": s.composition.formula,
        "composition_generic": None,
        "prototype": None,  # not known for mp2018 structures
        "spacegroup": s.get_space_group_info()[0],
        "volume": s.volume,
        "ntypes": len(s.composition.elements),
        "natoms": len(s),
        "unit_cell": s.lattice.matrix.tolist(),
        "sites": [
            f"{site.specie.symbol} @ {site.frac_coords[0]:.6f} {site.frac_coords[1]:.6f} {site.frac_coords[2]:.6f}"
            for site in s
        ],
        "band_gap": _num(row["band_gap"]),
        "delta_e": _num(row["formation_energy_per_atom"]),
        "stability": None,  # not in mp2018_random500
        "fit": "standard",
        "calculation_label": "static",
    }


FILTER_TERM = re.compile(r"^\s*(\w+)\s*(=|<|>)\s*(.+?)\s*$")


class OQMDServer(FakeServer):
    """``/oqmdapi/formationenergy`` with limit/offset paging and the OQMD filter language subset."""

    def __init__(self, records: list[dict[str, Any]], **kw: Any) -> None:
        kw.setdefault("faulty", lambda path, params: path.startswith("/oqmdapi/"))
        super().__init__(**kw)
        self.records = records

    def route(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Reply:
        if path.rstrip("/") != "/oqmdapi/formationenergy":
            return json_reply({"detail": "Not found."}, 404)
        try:
            terms = [t for t in (params.get("filter") or "").split(" AND ") if t.strip()]
            selected = [r for r in self.records if all(self._term(r, t) for t in terms)]
        except ValueError as exc:
            return json_reply({"error": str(exc)}, 400)
        limit, offset = int(params.get("limit") or 50), int(params.get("offset") or 0)
        page = selected[offset : offset + limit]
        if params.get("fields"):
            keep = params["fields"].split(",")
            page = [{k: r.get(k) for k in keep} for r in page]
        more = offset + len(page) < len(selected)
        base = f"{self.url}/oqmdapi/formationenergy"
        return json_reply(
            {
                "links": {
                    "next": f"{base}?limit={limit}&offset={offset + limit}" if more else None,
                    "previous": None,
                    "base_url": {"href": base, "meta": {"_oqmd_version": "1.0"}},
                },
                "resource": {},
                "data": page,
                "meta": {
                    "query": {"representation": f"/formationenergy?{params}"},
                    "api_version": "1.0",
                    "time_stamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "data_returned": len(page),
                    "data_available": len(selected),
                    "comments": "",
                    "query_tree": "",
                    "more_data_available": more,
                },
                "response_message": "OK",
            }
        )

    @staticmethod
    def _term(record: dict[str, Any], term: str) -> bool:
        term = term.strip()
        if term.startswith("(") and term.endswith(")"):
            term = term[1:-1]
        match = FILTER_TERM.match(term)
        if not match:
            raise ValueError(f"cannot parse filter term {term!r}")
        key, op, value = match.groups()
        if key == "element_set":
            elements = set(re.findall(r"[A-Z][a-z]?", record["composition"]))
            return all(set(g.strip("()").split("-")) & elements for g in value.split(","))
        if key in ("spacegroup", "prototype"):
            return op == "=" and record.get(key) == value
        if key in ("natoms", "ntypes", "stability", "delta_e", "band_gap", "volume"):
            have = record.get(key)
            if have is None:
                return False
            want = float(value)
            return {"=": have == want, "<": have < want, ">": have > want}[op]
        raise ValueError(f"unknown filter attribute {key!r}")


# --------------------------------------------------------------------------- matbench files
def matbench_file(rows: list[tuple[Any, Any]], target: str) -> bytes:
    """gzip-compressed pandas 'split' JSON with columns [structure, target]."""
    doc = {
        "index": list(range(len(rows))),
        "columns": ["structure", target],
        "data": [[s.as_dict(), value] for s, value in rows],
    }
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


class FileServer(FakeServer):
    """Static files under ``/projects/`` with HTTP Range support (206 Partial Content)."""

    def __init__(self, files: dict[str, bytes], **kw: Any) -> None:
        super().__init__(**kw)
        self.files = files

    def route(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Reply:
        name = path.rsplit("/", 1)[-1]
        if not path.startswith("/projects/") or name not in self.files:
            return Reply(404, b"not found")
        return ranged(self.files[name], headers)


def ranged(body: bytes, headers: dict[str, str], ranges: bool = True, content_type: str = "application/gzip") -> Reply:
    """``body``, or its tail for a ``Range: bytes=<start>-`` request (206 Partial Content)."""
    match = re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))
    if ranges and match and int(match.group(1)) < len(body):
        start = int(match.group(1))
        return Reply(206, body[start:], {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
    return Reply(200, body, {"Content-Type": content_type})


class PathServer(FakeServer):
    """Files by their whole URL path (GitHub's layouts: ``/<owner>/<repo>/tar.gz/<commit>`` as
    codeload, ``/<owner>/<repo>/<commit>/<path>`` as raw.githubusercontent). ``ranges=False``
    answers a Range request with the whole file (200), as a server without Range support."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self.files = files
        self.ranges = ranges

    def route(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Reply:
        if path not in self.files:
            return Reply(404, b"not found")
        return ranged(self.files[path], headers, self.ranges)
