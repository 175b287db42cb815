"""Download stage against local fake servers (no internet): faults, resume, secrets, checksums."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fake_servers as fs  # noqa: E402

from tlcgcnn.data.download import DownloadError, run  # noqa: E402
from tlcgcnn.data.download import http as dl_http  # noqa: E402
from tlcgcnn.data.download import oqmd as dl_oqmd  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not fs.MP2018.exists(), reason=f"real MP data {fs.MP2018} is absent (shared data folder)"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

API_KEY = "Zq7SECRETkeyForTests0123456789ab"  # 32 characters, like a real MP key
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 0.5, "max_retries": 7}


@pytest.fixture(scope="module")
def mp_rows() -> list[dict[str, Any]]:
    return fs.load_mp2018(24)


@pytest.fixture
def file_log(tmp_path: Path):
    """A DEBUG log file on the root logger (what the Snakemake adapter does)."""
    path = tmp_path / "download.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield path
    root.removeHandler(handler)
    handler.close()
    root.setLevel(old)


def chunk_requests(server: fs.FakeServer) -> list[fs.Request]:
    return [r for r in server.requests if "material_ids" in r.params]


def assert_no_secret(root: Path, secret: str, exclude: tuple[Path, ...] = ()) -> None:
    """The secret is in no file under root, nor in any cell or column name of a Parquet table."""
    needle = secret.encode()
    files = [p for p in root.rglob("*") if p.is_file() and p not in exclude]
    assert files
    for path in files:
        blob = path.read_bytes()
        assert needle not in blob, path
        if path.suffix == ".gz":
            assert needle not in gzip.decompress(blob), path
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            assert secret not in " ".join(map(str, df.columns))
            assert not df.astype(str).apply(lambda col: col.str.contains(secret, regex=False)).any().any(), path


# ----------------------------------------------------------------------------- Materials Project
def test_mp_faults_paging_malformed_and_secret(tmp_path, mp_rows, file_log, monkeypatch):
    docs = [fs.summary_doc(r) for r in mp_rows[:16]]
    bad_id = docs[5]["material_id"]
    docs[5]["structure"]["lattice"] = None  # malformed structure among good ones
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    with fs.MPServer(docs, API_KEY) as srv:
        srv.faults.extend(
            [("status", 429, 1), ("status", 500, None), ("status", 503, None), ("sleep", 1.0), ("truncate",), ("cut",)]
        )
        ds = {
            "source": "materials_project",
            "http": FAST,
            "materials_project": {"endpoint": srv.url, "chunk_size": 5, "nsites_max": 24},
        }
        manifest = run(ds, tmp_path / "raw.parquet", tmp_path / "raw.manifest.json", tmp_path / "work")
        requests_seen = list(srv.requests)

    chunk_reqs = [r for r in requests_seen if "material_ids" in r.params]
    faulted = [r for r in chunk_reqs if r.fault]
    assert [f.fault[0] for f in faulted] == ["status", "status", "status", "sleep", "truncate", "cut"]
    # Retry-After: 1 honoured: the retry came at least 1 s after the 429
    i429 = chunk_reqs.index(faulted[0])
    assert chunk_reqs[i429 + 1].time - chunk_reqs[i429].time >= 1.0
    retries = manifest["retries"]["by_kind"]
    assert retries["http_429"] == 1 and retries["http_500"] == 1 and retries["http_503"] == 1
    assert retries["timeout"] == 1 and retries["bad_json"] == 1 and manifest["retries"]["total"] == 6
    # paging over several chunks: 16 ids in chunks of 5
    assert manifest["chunks"] == {"total": 4, "fetched": 4, "reused": 0}
    ok_reqs = [r for r in chunk_reqs if not r.fault]
    assert len(ok_reqs) == 4

    df = pd.read_parquet(tmp_path / "raw.parquet")
    served = {d["material_id"] for d in docs}
    assert df["material_id"].is_unique
    assert set(df["material_id"]) == served - {bad_id}
    assert manifest["records"] == {
        "requested": 16,
        "received": 16,
        "kept": 15,
        "dropped": 1,
        "dropped_by_reason": {"cannot build structure": 1},
    }
    assert manifest["dropped"][0]["material_id"] == bad_id
    assert manifest["database_version"] == fs.MPServer.DB_VERSION
    assert manifest["outputs"]["table"]["sha256"] == hashlib.sha256((tmp_path / "raw.parquet").read_bytes()).hexdigest()
    # flattened properties equal the served real values; structures round-trip
    from pymatgen.core import Structure

    by_id = {d["material_id"]: d for d in docs}
    for row in df.itertuples():
        doc = by_id[row.material_id]
        want_k = doc["bulk_modulus"]["vrh"] if doc["bulk_modulus"] else math.nan
        assert (math.isnan(want_k) and math.isnan(row.k_vrh)) or row.k_vrh == want_k
        assert row.band_gap == pytest.approx(doc["band_gap"])
        assert Structure.from_dict(json.loads(row.structure)) == Structure.from_dict(doc["structure"])
    assert str(df["is_metal"].dtype) == "boolean" and df["k_vrh"].dtype == "float64"
    # the key went over the wire as a header but appears in no output, manifest or log
    assert all(r.headers.get("x-api-key") == API_KEY for r in chunk_reqs)
    assert "429" in file_log.read_text()
    assert_no_secret(tmp_path, API_KEY)


def test_mp_429_waits_even_when_the_url_contains_414(tmp_path, mp_rows, monkeypatch):
    """mp-api re-sends at once any failed query whose message has "414" or "422" in it (a port,
    or an id like mp-4140); the 429 must still reach our retry and its Retry-After be honoured."""
    docs = [fs.summary_doc(r) for r in mp_rows[:3]]
    for i, doc in enumerate(docs):
        doc["material_id"] = f"mp-414{i}"
        doc["structure"] = dict(doc["structure"])
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    with fs.MPServer(docs, API_KEY) as srv:
        srv.faults.append(("status", 429, 1))
        ds = {
            "source": "materials_project",
            "http": FAST,
            "materials_project": {"endpoint": srv.url, "chunk_size": 5, "nsites_max": 24},
        }
        manifest = run(ds, tmp_path / "raw.parquet", tmp_path / "raw.manifest.json", tmp_path / "work")
        chunk_reqs = [r for r in srv.requests if "material_ids" in r.params]
    assert [r.fault for r in chunk_reqs] == [("status", 429, 1), None]
    assert chunk_reqs[1].params["material_ids"] == "mp-4140,mp-4141,mp-4142"
    assert chunk_reqs[1].time - chunk_reqs[0].time >= 1.0
    assert manifest["retries"]["by_kind"] == {"http_429": 1}
    assert sorted(pd.read_parquet(tmp_path / "raw.parquet")["material_id"]) == ["mp-4140", "mp-4141", "mp-4142"]


def test_mp_killed_run_resumes_without_refetching(tmp_path, mp_rows, monkeypatch):
    docs = [fs.summary_doc(r) for r in mp_rows[:12]]
    key_file = tmp_path / "mp.key"
    key_file.write_text(API_KEY + "\n")
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with fs.MPServer(docs, API_KEY) as srv:
        ds = {
            "source": "materials_project",
            "http": FAST,
            "materials_project": {
                "endpoint": srv.url,
                "chunk_size": 3,
                "api_key_file": str(key_file),
                "fields": ["material_id", "structure", "band_gap", "bulk_modulus"],
            },
        }

        def kill_after_two(done: int, total: int) -> None:
            if done == 2:
                raise KeyboardInterrupt("simulated kill")

        with pytest.raises(KeyboardInterrupt):
            run(ds, tmp_path / "raw.parquet", tmp_path / "m.json", tmp_path / "work", on_chunk=kill_after_two)
        assert not (tmp_path / "raw.parquet").exists()
        first = chunk_requests(srv)
        assert len(first) == 2
        manifest = run(ds, tmp_path / "raw.parquet", tmp_path / "m.json", tmp_path / "work")
        second = chunk_requests(srv)[2:]

    list_requests = [r for r in srv.requests if r.path.startswith("/materials") and "material_ids" not in r.params]
    assert len(list_requests) == 1  # id list saved, not fetched again
    first_ids = {i for r in first for i in r.params["material_ids"].split(",")}
    second_ids = [i for r in second for i in r.params["material_ids"].split(",")]
    assert len(second) == 2 and not first_ids & set(second_ids)  # finished chunks not requested again
    assert manifest["chunks"] == {"total": 4, "fetched": 2, "reused": 2}
    df = pd.read_parquet(tmp_path / "raw.parquet")
    assert sorted(df["material_id"]) == sorted(d["material_id"] for d in docs) and df["material_id"].is_unique
    assert manifest["extra"]["api_key_from"].startswith("file ")
    assert os.listdir(tmp_path / "work") == []  # chunk folder removed after success
    assert_no_secret(tmp_path, API_KEY, exclude=(key_file,))


def test_mp_filters_reach_server(tmp_path, mp_rows, monkeypatch):
    docs = [fs.summary_doc(r) for r in mp_rows[:24]]
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    with fs.MPServer(docs, API_KEY) as srv:
        ds = {
            "source": "materials_project",
            "http": FAST,
            "materials_project": {
                "endpoint": srv.url,
                "elements": ["O"],
                "nsites_max": 10,
                "deprecated": False,
                "fields": ["material_id", "structure", "formation_energy_per_atom"],
            },
        }
        run(ds, tmp_path / "raw.parquet", tmp_path / "m.json", tmp_path / "work")
    listing = next(r for r in srv.requests if r.params.get("_fields") == "material_id")
    assert listing.params["elements"] == "O" and listing.params["nsites_max"] == "10"
    assert listing.params["deprecated"].lower() == "false"
    want = {d["material_id"] for d in docs if "O" in d["elements"] and d["nsites"] <= 10}
    assert want and set(pd.read_parquet(tmp_path / "raw.parquet")["material_id"]) == want


def test_mp_missing_key_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    ds = {"source": "materials_project", "materials_project": {"endpoint": "http://127.0.0.1:9/"}}
    with pytest.raises(DownloadError, match="export MP_API_KEY"):
        run(ds, tmp_path / "t.parquet", tmp_path / "m.json", tmp_path / "work")
    with pytest.raises(DownloadError, match="does not exist"):
        run(
            {**ds, "materials_project": {"api_key_file": str(tmp_path / "nokey")}},
            tmp_path / "t.parquet",
            tmp_path / "m.json",
            tmp_path / "work",
        )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_host_names_host(tmp_path, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    fast = {**FAST, "max_retries": 1}
    for ds in (
        {"source": "materials_project", "http": fast, "materials_project": {"endpoint": f"http://127.0.0.1:{port}"}},
        {"source": "oqmd", "http": fast, "oqmd": {"endpoint": f"http://127.0.0.1:{port}"}},
        {
            "source": "matbench",
            "http": fast,
            "matbench": {"task": "dielectric", "base_url": f"http://127.0.0.1:{port}/p"},
        },
    ):
        with pytest.raises(DownloadError) as err:
            run(ds, tmp_path / "t.parquet", tmp_path / "m.json", tmp_path / "work")
        assert f"cannot reach host 127.0.0.1:{port}" in str(err.value)
        assert "local-file source" in str(err.value)
        assert API_KEY not in str(err.value)


# ----------------------------------------------------------------------------- OQMD
def test_oqmd_faults_resume_and_exactly_once(tmp_path, mp_rows, monkeypatch):
    records = [fs.oqmd_record(r, 5000 + i) for i, r in enumerate(mp_rows[:20])]
    bad = records[7]
    bad["sites"] = bad["sites"][:-1] + ["not a site"]
    with fs.OQMDServer(records) as srv:
        monkeypatch.setenv("oqmd_url", srv.url)  # qmpy-rester's endpoint variable
        srv.faults.extend([("status", 429, 0.2), ("status", 503, None), ("sleep", 1.0), ("truncate",)])
        ds = {"source": "oqmd", "http": FAST, "oqmd": {"page_size": 6, "natoms_max": 24}}

        def kill(done: int, total: int) -> None:
            if done == 2:
                raise KeyboardInterrupt("simulated kill")

        with pytest.raises(KeyboardInterrupt):
            run(ds, tmp_path / "oqmd.parquet", tmp_path / "m.json", tmp_path / "work", on_chunk=kill)
        offsets_first = [r.params["offset"] for r in srv.requests if not r.fault]
        manifest = run(ds, tmp_path / "oqmd.parquet", tmp_path / "m.json", tmp_path / "work")
        offsets_all = [r.params["offset"] for r in srv.requests if not r.fault]

    assert offsets_first == ["0", "6"]
    assert offsets_all == ["0", "6", "12", "18"]  # pages 0 and 6 were not requested again
    assert all(r.params["filter"] == "natoms<25" for r in srv.requests)
    assert manifest["retries"]["total"] == 0  # the faults hit the killed run; counting: next test
    df = pd.read_parquet(tmp_path / "oqmd.parquet")
    served = {f"oqmd-{r['entry_id']}" for r in records}
    assert df["material_id"].is_unique and set(df["material_id"]) == served - {f"oqmd-{bad['entry_id']}"}
    assert manifest["dropped"] == [
        {"material_id": f"oqmd-{bad['entry_id']}", "reason": "cannot parse site 'not a site' (expected 'El @ x y z')"}
    ]
    assert manifest["records"]["received"] == 20 and manifest["records"]["kept"] == 19
    assert manifest["chunks"]["reused"] == 2 and manifest["chunks"]["fetched"] == 2
    row = df.set_index("material_id").loc[f"oqmd-{records[0]['entry_id']}"]
    assert row["formation_energy_per_atom"] == pytest.approx(records[0]["delta_e"])
    from pymatgen.core import Structure

    rebuilt = Structure.from_dict(json.loads(row["structure"]))
    assert rebuilt.matches(mp_rows[0]["structure"])


def test_oqmd_retries_counted(tmp_path, mp_rows, monkeypatch):
    records = [fs.oqmd_record(r, 7000 + i) for i, r in enumerate(mp_rows[:5])]
    with fs.OQMDServer(records) as srv:
        srv.faults.extend([("status", 429, 0.3), ("status", 500, None), ("sleep", 1.0), ("truncate",)])
        ds = {"source": "oqmd", "http": FAST, "oqmd": {"endpoint": srv.url, "page_size": 10}}
        manifest = run(ds, tmp_path / "o.parquet", tmp_path / "m.json", tmp_path / "work")
    times = [r.time for r in srv.requests]
    assert times[1] - times[0] >= 0.3  # Retry-After honoured
    assert manifest["retries"]["by_kind"] == {"http_429": 1, "http_500": 1, "timeout": 1, "bad_json": 1}
    assert manifest["records"]["kept"] == 5


def test_oqmd_spacegroup_and_prototype_filters_reach_server(tmp_path, mp_rows):
    from qmpy_rester import QMPYRester

    records = [fs.oqmd_record(r, 9000 + i) for i, r in enumerate(mp_rows[:20])]
    spacegroup = records[0]["spacegroup"]
    with fs.OQMDServer(records) as srv:
        # qmpy-rester 0.2.0 itself drops spacegroup (missing comma in its filter list):
        QMPYRester(srv.url).get_oqmd_phases(verbose=False, spacegroup=spacegroup, limit=5)
        assert "filter" not in srv.requests[-1].params
        element = sorted({s.split(" @")[0] for s in records[0]["sites"]})[0]
        ds = {
            "source": "oqmd",
            "http": FAST,
            "oqmd": {"endpoint": srv.url, "spacegroup": spacegroup, "element_set": element},
        }
        manifest = run(ds, tmp_path / "o.parquet", tmp_path / "m.json", tmp_path / "work")
        sent = srv.requests[-1].params["filter"]
        assert f"spacegroup={spacegroup}" in sent and f"element_set={ds['oqmd']['element_set']}" in sent
        want = {
            f"oqmd-{r['entry_id']}"
            for r in records
            if r["spacegroup"] == spacegroup and ds["oqmd"]["element_set"] in {s.split(" @")[0] for s in r["sites"]}
        }
        assert set(pd.read_parquet(tmp_path / "o.parquet")["material_id"]) == want
        assert manifest["query"]["filter"] == sent
        with pytest.raises(DownloadError, match="no usable records"):
            run(
                {**ds, "oqmd": {"endpoint": srv.url, "prototype": "CsCl"}},
                tmp_path / "p.parquet",
                tmp_path / "p.json",
                tmp_path / "work",
            )
        assert srv.requests[-1].params["filter"] == "prototype=CsCl"


# ----------------------------------------------------------------------------- matbench
def kvrh_file(mp_rows: list[dict[str, Any]]) -> tuple[bytes, dict[int, float]]:
    rows = [(r["structure"], math.log10(r["k_vrh"])) for r in mp_rows if not math.isnan(r["k_vrh"])]
    return fs.matbench_file(rows, "log10(K_VRH)"), {i: 10**v for i, (_, v) in enumerate(rows)}


def test_matbench_checksum_rejects_corrupt_then_redownloads(tmp_path, mp_rows, file_log):
    blob, k_by_index = kvrh_file(mp_rows)
    assert len(k_by_index) >= 3
    sha = hashlib.sha256(blob).hexdigest()
    with fs.FileServer({"matbench_log_kvrh.json.gz": blob}) as srv:
        srv.faults.extend([("corrupt",)])
        ds = {
            "source": "matbench",
            "http": FAST,
            "matbench": {"task": "log_kvrh", "base_url": srv.url + "/projects/", "checksums": {"log_kvrh": sha}},
        }
        manifest = run(ds, tmp_path / "mb.parquet", tmp_path / "m.json", tmp_path / "work")
    assert [r.fault for r in srv.requests] == [("corrupt",), None]
    assert "range" not in srv.requests[1].headers  # a rejected file is fetched from the start
    assert manifest["retries"]["by_kind"] == {"checksum": 1}
    assert "checksum mismatch for matbench_log_kvrh.json.gz" in file_log.read_text()
    df = pd.read_parquet(tmp_path / "mb.parquet")
    assert len(df) == len(k_by_index) and df["material_id"].is_unique
    for i, k in k_by_index.items():
        assert df.set_index("material_id").loc[f"matbench_log_kvrh-{i}", "k_vrh"] == pytest.approx(k)
    assert manifest["extra"]["sha256"] == sha and manifest["extra"]["sha256_from"] == "config"


def test_matbench_cut_transfer_resumes_with_range(tmp_path, mp_rows):
    blob = fs.matbench_file([(r["structure"], r["band_gap"]) for r in mp_rows], "gap pbe")
    sha = hashlib.sha256(blob).hexdigest()
    with fs.FileServer({"matbench_mp_gap.json.gz": blob}) as srv:
        srv.faults.extend([("cut",)])
        ds = {
            "source": "matbench",
            "http": FAST,
            "matbench": {"task": "mp_gap", "base_url": srv.url + "/projects", "checksums": {"mp_gap": sha}},
        }
        manifest = run(ds, tmp_path / "mb.parquet", tmp_path / "m.json", tmp_path / "work")
        first, second = srv.requests
    assert first.fault == ("cut",) and "range" not in first.headers
    start = int(second.headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start < len(blob)  # continued where the cut transfer stopped
    assert manifest["retries"]["by_kind"] == {"truncated": 1}
    df = pd.read_parquet(tmp_path / "mb.parquet")
    assert list(df["band_gap"]) == pytest.approx([r["band_gap"] for r in mp_rows])
    assert manifest["records"]["kept"] == len(mp_rows)


def test_matbench_persistently_corrupt_is_an_error(tmp_path, mp_rows):
    blob, _ = kvrh_file(mp_rows)
    with fs.FileServer({"matbench_log_kvrh.json.gz": blob}) as srv:
        srv.faults.extend([("corrupt",)] * 3)
        ds = {
            "source": "matbench",
            "http": {**FAST, "max_retries": 2},
            "matbench": {"task": "log_kvrh", "base_url": srv.url + "/projects"},
        }  # shipped (real) checksum
        with pytest.raises(DownloadError, match=r"checksum mismatch for matbench_log_kvrh.json.gz .*expected 44b113dd"):
            run(ds, tmp_path / "mb.parquet", tmp_path / "m.json", tmp_path / "work")
    assert not list((tmp_path / "work").rglob("*.part"))


def test_matbench_unknown_task(tmp_path):
    with pytest.raises(ValueError, match="must be one of"):
        run({"source": "matbench", "matbench": {"task": "nope"}}, tmp_path / "t", tmp_path / "m", tmp_path / "w")


# ----------------------------------------------------------------------------- a table from a URL
@pytest.fixture(scope="module")
def mp_csv() -> tuple[pd.DataFrame, bytes]:
    """30 real rows of mp2018_random500 (every column of the full MP-2018 table) as a gzipped CSV."""
    df = pd.read_csv(fs.MP2018, low_memory=False, dtype={"material_id": str}).head(30)
    return df, gzip.compress(df.to_csv(index=False).encode(), mtime=0)


def url_dataset(srv: fs.FileServer, blob: bytes, **extra: Any) -> dict[str, Any]:
    sha = hashlib.sha256(blob).hexdigest()
    return {"source": "url", "http": FAST, "url": srv.url + "/projects/mp2018.csv.gz", "sha256": sha, **extra}


def test_url_table_is_verified_resumed_and_kept_as_is(tmp_path, mp_csv):
    df, blob = mp_csv
    with fs.FileServer({"mp2018.csv.gz": blob}) as srv:
        srv.faults.extend([("cut",)])
        ds = url_dataset(srv, blob)
        manifest = run(ds, tmp_path / "url.parquet", tmp_path / "url.manifest.json", tmp_path / "work")
        first, second = srv.requests
    assert first.fault == ("cut",) and "range" not in first.headers
    assert 0 < int(second.headers["range"].removeprefix("bytes=").rstrip("-")) < len(blob)  # resumed
    got = pd.read_parquet(tmp_path / "url.parquet")
    assert list(got.columns) == list(df.columns) and got["material_id"].tolist() == df["material_id"].tolist()
    assert got["cif"].tolist() == df["cif"].tolist() and got["is_metal"].tolist() == df["is_metal"].tolist()
    served = pd.read_csv(io.BytesIO(blob), compression="gzip", low_memory=False, dtype={"material_id": str})
    pd.testing.assert_frame_equal(got, served)  # the served table, every value as read from the file
    assert manifest["source"] == "url" and manifest["endpoint"] == ds["url"]
    assert manifest["records"]["kept"] == manifest["records"]["received"] == len(df)
    assert manifest["extra"]["file_sha256"] == ds["sha256"] and manifest["extra"]["format"] == "csv.gz"
    assert manifest["retries"]["by_kind"] == {"truncated": 1}
    assert manifest["outputs"]["table"]["sha256"] == hashlib.sha256((tmp_path / "url.parquet").read_bytes()).hexdigest()
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # removed after success


def test_url_table_ingests_like_the_local_file(tmp_path, mp_csv):
    """The downloaded table and the same rows as a local file give the same structures table."""
    from tlcgcnn.data.ingest import IngestOptions, ingest

    df, blob = mp_csv
    (tmp_path / "local.csv.gz").write_bytes(blob)
    with fs.FileServer({"mp2018.csv.gz": blob}) as srv:
        run(url_dataset(srv, blob), tmp_path / "url.parquet", tmp_path / "m.json", tmp_path / "work")
    out = {}
    for name, src in (("url", tmp_path / "url.parquet"), ("local", tmp_path / "local.csv.gz")):
        ingest(src, tmp_path / f"{name}.s.parquet", tmp_path / f"{name}.d.csv", tmp_path / f"{name}.j", IngestOptions())
        out[name] = pd.read_parquet(tmp_path / f"{name}.s.parquet").drop(columns=["source"], errors="ignore")
    assert len(out["url"]) == len(df)
    pd.testing.assert_frame_equal(out["url"], out["local"])


def test_url_wrong_sha256_is_an_error_and_leaves_no_output(tmp_path, mp_csv):
    df, blob = mp_csv
    actual = hashlib.sha256(blob).hexdigest()
    wrong = "5b72e7542227ef6a4660877b7f4a4d8a6677766c0dade72bbb2f5fc3006f794f"
    with fs.FileServer({"mp2018.csv.gz": blob}) as srv:
        ds = url_dataset(srv, blob, sha256=wrong)
        with pytest.raises(DownloadError, match=f"expected {wrong}, got {actual}") as err:
            run(ds, tmp_path / "url.parquet", tmp_path / "url.manifest.json", tmp_path / "work")
        n_requests = len(srv.requests)
    assert "the same file arrived twice" in str(err.value)
    assert n_requests == 2  # not max_retries + 1 downloads of a file that will never match
    assert not (tmp_path / "url.parquet").exists() and not (tmp_path / "url.manifest.json").exists()
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file() and p.name != "query.json"]


def test_url_corrupt_transfer_is_fetched_again(tmp_path, mp_csv):
    df, blob = mp_csv
    with fs.FileServer({"mp2018.csv.gz": blob}) as srv:
        srv.faults.extend([("corrupt",)])
        manifest = run(url_dataset(srv, blob), tmp_path / "url.parquet", tmp_path / "m.json", tmp_path / "work")
        assert [r.fault for r in srv.requests] == [("corrupt",), None]
    assert manifest["retries"]["by_kind"] == {"checksum": 1}
    assert len(pd.read_parquet(tmp_path / "url.parquet")) == len(df)


def test_url_verified_file_is_reused_by_a_rerun(tmp_path, mp_csv):
    """A run that fails after the verified download (here: a wrong format) leaves the file in
    the work folder; the corrected re-run reads it without downloading it again."""
    df, blob = mp_csv
    with fs.FileServer({"mp2018.csv.gz": blob}) as srv:
        ds = url_dataset(srv, blob, format="parquet")
        with pytest.raises(ValueError, match="not a readable parquet table.*set dataset.format"):
            run(ds, tmp_path / "url.parquet", tmp_path / "m.json", tmp_path / "work")
        assert len(srv.requests) == 1 and not (tmp_path / "url.parquet").exists()
        del ds["format"]  # csv.gz, from the URL's file name
        manifest = run(ds, tmp_path / "url.parquet", tmp_path / "m.json", tmp_path / "work")
        assert len(srv.requests) == 1  # nothing fetched again
    assert manifest["chunks"] == {"total": 1, "fetched": 0, "reused": 1}
    assert pd.read_parquet(tmp_path / "url.parquet")["material_id"].tolist() == df["material_id"].tolist()


def test_url_settings_are_checked(tmp_path):
    from tlcgcnn import config as C
    from tlcgcnn.data.download import url as dl_url

    sha = "0" * 64
    for ds, message in (
        ({"source": "url", "sha256": sha}, "dataset.url must be an http"),
        ({"source": "url", "url": "ftp://host/t.csv", "sha256": sha}, "dataset.url must be an http"),
        ({"source": "url", "url": "http://host/t.csv"}, "dataset.sha256 must be the 64 hex digits"),
        ({"source": "url", "url": "http://host/files/123", "sha256": sha}, "set dataset.format"),
        ({"source": "url", "url": "http://host/t.csv", "sha256": sha, "format": "xlsx"}, "dataset.format must be"),
    ):
        with pytest.raises(ValueError, match=message):
            run(ds, tmp_path / "t", tmp_path / "m", tmp_path / "w")
    assert dl_url.file_format("https://h/d/mp2018_36737.csv.gz?download=1", None) == "csv.gz"
    assert dl_url.file_format("https://h/files/123", "parquet") == "parquet"
    raw = {"name": "u", "finetune": {"targets": [{"name": "ef", "property": "formation_energy_per_atom"}]}}
    raw["finetune"].update({"sizes": [10], "seeds": [0], "modes": {"scratch": {}}})
    good = {"source": "url", "url": "https://example.org/mp2018_36737.csv.gz", "sha256": sha}
    assert C.load({**raw, "dataset": good}).dataset_settings()["sha256"] == sha
    for bad, message in (
        ({k: v for k, v in good.items() if k != "sha256"}, "'sha256' is a required property"),
        ({**good, "sha256": "abc"}, "does not match"),
        ({**good, "format": "xlsx"}, "is not one of"),
    ):
        with pytest.raises(C.ConfigError, match=message):
            C.load({**raw, "dataset": bad})


# ----------------------------------------------------------------------------- helpers
def test_retry_after_parsing_and_policy():
    assert dl_http.parse_retry_after("2") == 2.0
    assert dl_http.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert dl_http.parse_retry_after("soon") is None
    with pytest.raises(ValueError, match="unknown http settings"):
        dl_http.RetryPolicy.from_config({"retries": 3})
    assert dl_oqmd.filter_expression({"spacegroup": "Fm-3m", "prototype": "NaCl", "stability_max": 0.0}) == (
        "spacegroup=Fm-3m AND prototype=NaCl AND stability<1e-06"
    )


def test_example_config_matches_schema():
    import jsonschema
    import yaml

    root = Path(__file__).resolve().parents[2]
    schema = yaml.safe_load((root / "config/schema/download.schema.yaml").read_text())
    example = yaml.safe_load((root / "config/download.example.yaml").read_text())["dataset"]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(example)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**example, "oqmd": {"spacegroups": "Fm-3m"}})
