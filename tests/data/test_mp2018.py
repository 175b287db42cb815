"""``source: mp2018``: the full MP-2018 table rebuilt from its public sources, against loopback
servers in GitHub's layouts (codeload archive, raw file).

The fast tests serve a 30-material slice of the real files (tests/data/fixtures/mp2018, made by
its build.py from kdmsit/MEGNet and janosh/dielectrics at the pinned commits; its pins.json holds
the slice's sha256 and the canonical-CSV sha256 of the same 30 rows of the study's
mp2018_36737.csv.gz). The e2e test serves the whole repositories from local snapshots with the
shipped pins and compares the result with mp2018_36737.csv.gz, row by row and byte by byte.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fake_servers as fs  # noqa: E402

from tlcgcnn.data.download import DownloadError, run  # noqa: E402
from tlcgcnn.data.download import mp2018 as m  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mp2018"
ROOT = Path(__file__).resolve().parents[2]
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5, "max_retries": 4}
ARCHIVE = f"/{m.MEGNET.owner}/{m.MEGNET.name}/tar.gz/{m.MEGNET.commit}"
PETOUSIS = f"/{m.DIELECTRICS.owner}/{m.DIELECTRICS.name}/{m.DIELECTRICS.commit}/{m.PETOUSIS}"


def tarball(files: dict[str, bytes], level: int = 9) -> bytes:
    """A gzip tar of ``files`` under codeload's top folder ``MEGNet-<commit>/`` (``level`` 0: stored,
    a file large enough that a cut leaves whole 4 kB blocks in the ``.part`` file)."""
    buf = io.BytesIO()
    gzip_file = gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=level)
    with gzip_file as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        top = tarfile.TarInfo(f"{m.MEGNET.name}-{m.MEGNET.commit}")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, blob in sorted(files.items()):
            info = tarfile.TarInfo(f"{top.name}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def slice_files() -> dict[str, bytes]:
    """The fixture's MEGNet files by repository path, with two files of other folders that the
    rebuild must not take for CIFs of the table."""
    root = FIXTURE / "MEGNet"
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    cif = files["data/0.cif"]
    return {**files, "data_100/0.cif": cif.replace(b"Cs", b"Rb"), "263.cif": cif}


@pytest.fixture
def pins(monkeypatch: pytest.MonkeyPatch) -> m.Pins:
    """The slice's pins in place of the shipped ones."""
    pins = m.Pins(**json.loads((FIXTURE / "pins.json").read_text()))
    monkeypatch.setattr(m, "PINS", pins)
    return pins


def served(
    archive_files: dict[str, bytes] | None = None, petousis: bytes | None = None, level: int = 9
) -> dict[str, bytes]:
    files = {ARCHIVE: tarball(archive_files or slice_files(), level)}
    pet = (FIXTURE / "dielectrics" / m.PETOUSIS).read_bytes() if petousis is None else petousis
    if pet:
        files[PETOUSIS] = pet
    return files


def dataset(srv: fs.FakeServer, **extra: Any) -> dict[str, Any]:
    return {"source": "mp2018", "http": FAST, "mp2018": {"base_url": srv.url, "raw_url": srv.url + "/", **extra}}


def outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "mp2018.parquet", tmp_path / "mp2018.manifest.json", tmp_path / "work"


def archive_requests(srv: fs.FakeServer) -> list[fs.Request]:
    return [r for r in srv.requests if r.path == ARCHIVE]


# ----------------------------------------------------------------------------- assembly
def test_slice_is_rebuilt_with_the_published_columns_and_values(tmp_path, pins):
    with fs.PathServer(served()) as srv:
        manifest = run(dataset(srv), *outputs(tmp_path))
        assert sorted(r.path for r in srv.requests) == sorted([ARCHIVE, PETOUSIS])
    got = pd.read_parquet(tmp_path / "mp2018.parquet")
    assert list(got.columns) == list(m.COLUMNS) and len(got) == pins.rows == 30
    assert m.table_sha256(got) == pins.table_sha256  # the 30 rows of mp2018_36737.csv.gz, exactly
    hashes = [ln.split(",") for ln in (FIXTURE / "MEGNet" / m.IDS).read_text().splitlines()]
    assert got["material_id"].tolist() == [mid for _, mid in hashes]  # rows in material_id_hash order
    for (index, _), cif in zip(hashes, got["cif"], strict=True):  # CIF text as in the repository
        assert cif.encode() == (FIXTURE / "MEGNet" / f"data/{index}.cif").read_bytes()
    assert got["is_metal"].dtype == bool and (got["is_metal"] == (got["band_gap"] <= 0)).all()
    assert 0 < got["is_metal"].sum() < len(got)
    row = got.set_index("material_id")
    assert pd.isna(row.loc["mp-10810", "efermi"])  # written None in id_prop.csv
    assert row.loc["mp-10810", "band_gap"] == 0.2911999999999999  # parsed exactly, not rounded
    assert tuple(row.loc["mp-10000", ["k_vrh", "g_vrh", "poisson"]]) == (131.0, 74.0, 0.26)
    assert tuple(row.loc["mp-1000", ["band_gap_gllbsc", "band_gap_scan"]]) == (3.37, 1.854)
    assert row.loc["mp-10000", "band_gap_hse"] == 0.0
    # Petousis lists these three twice: the first row counts
    assert {mid: row.loc[mid, "diel_total_exp"] for mid in ("mp-2964", "mp-5238", "mp-5342")} == {
        "mp-2964": 5.88,
        "mp-5238": 9.5333,
        "mp-5342": 11.3333,
    }
    assert "mp-18717" not in row.index  # has moduli in data_elasticity/ but is not in data/
    assert row["k_vrh"].notna().sum() == 18 and row["diel_total_exp"].notna().sum() == 12
    assert manifest["source"] == "mp2018" and manifest["endpoint"] == srv.url
    assert manifest["query"]["commits"] == {
        "kdmsit/MEGNet": m.MEGNET.commit,
        "janosh/dielectrics": m.DIELECTRICS.commit,
    }
    assert manifest["records"] == {
        "requested": 30,
        "received": 30,
        "kept": 30,
        "dropped": 0,
        "dropped_by_reason": {},
    }
    assert manifest["extra"]["table_sha256"] == pins.table_sha256
    assert manifest["extra"]["cifs"] == {"count": 30, "listing_sha256": pins.cif_listing_sha256}
    assert manifest["chunks"] == {"total": 2, "fetched": 2, "reused": 0}
    assert not any((tmp_path / "work").iterdir())  # the work folder is removed after success


def test_rebuilt_table_ingests_like_the_published_rows(tmp_path, pins):
    """Ingest reads the download (``cif`` column) like a local copy of the same rows."""
    from tlcgcnn.data.ingest import IngestOptions, ingest

    with fs.PathServer(served()) as srv:
        run(dataset(srv), *outputs(tmp_path))
    table = pd.read_parquet(tmp_path / "mp2018.parquet")
    (tmp_path / "local.csv").write_bytes(m.canonical_csv(table))
    out = {}
    for name, src in (("download", tmp_path / "mp2018.parquet"), ("local", tmp_path / "local.csv")):
        ingest(src, tmp_path / f"{name}.s.parquet", tmp_path / f"{name}.d.csv", tmp_path / f"{name}.j", IngestOptions())
        out[name] = pd.read_parquet(tmp_path / f"{name}.s.parquet").drop(columns=["source"], errors="ignore")
    assert len(out["download"]) == 30
    pd.testing.assert_frame_equal(out["download"], out["local"])


def test_canonical_csv_is_pandas_like_and_exact():
    df = pd.DataFrame({c: [float("nan"), float("nan")] for c in m.COLUMNS})
    df["material_id"] = ["mp-1", "mp-2"]
    df["formation_energy_per_atom"] = [0.1 + 0.2, -1.7923372100000003]
    df["magmom"] = [8.75e-05, 1e16]
    df["is_metal"] = [True, False]
    df["cif"] = ['data_X\n_a   "q", b\n', "data_Y\n"]
    text = m.canonical_csv(df).decode()
    lines = text.split("\n")
    assert lines[0] == ",".join(m.COLUMNS)
    assert lines[1] == 'mp-1,0.30000000000000004,,,,8.75e-05,True,,,,,,,,,,"data_X'
    assert lines[2:5] == ['_a   ""q"", b', '"', 'mp-2,-1.7923372100000003,,,,1e+16,False,,,,,,,,,,"data_Y']
    assert text == df[list(m.COLUMNS)].to_csv(index=False, lineterminator="\n")  # as pandas writes it


# ----------------------------------------------------------------------------- checksums
def test_a_changed_cif_stops_with_the_listing_sha256_and_writes_nothing(tmp_path, pins):
    files = slice_files()
    files["data/1462.cif"] = files["data/1462.cif"].replace(b"0.", b"1.", 1)
    with fs.PathServer(served(files)) as srv:
        with pytest.raises(
            DownloadError, match=f"listing expected {pins.cif_listing_sha256}, got [0-9a-f]{{64}}"
        ) as err:
            run(dataset(srv), *outputs(tmp_path))
        assert len(archive_requests(srv)) == 2  # fetched again once, then the same file: stop
    assert "the same file arrived twice" in str(err.value)
    table, manifest, work = outputs(tmp_path)
    assert not table.exists() and not manifest.exists()
    assert not [p for p in work.rglob("*") if p.is_file() and p.name != "query.json"]


@pytest.mark.parametrize("name", [m.PROPS, m.ELASTIC_PROPS, m.MULTIFIDELITY])
def test_a_changed_table_file_is_named_with_both_sha256(tmp_path, pins, name):
    files = slice_files()
    files[name] = gzip.compress(b"{}", mtime=0) if name.endswith(".gz") else files[name].replace(b"1", b"2", 1)
    with fs.PathServer(served(files)) as srv, pytest.raises(DownloadError, match=f"{name}: sha256 expected"):
        run(dataset(srv), *outputs(tmp_path))
    assert not (tmp_path / "mp2018.parquet").exists()


def test_a_missing_cif_is_named(tmp_path, pins):
    files = slice_files()
    del files["data/2.cif"]
    with fs.PathServer(served(files)) as srv, pytest.raises(DownloadError, match=r"1 CIFs .* \(first: data/2\.cif\)"):
        run(dataset(srv), *outputs(tmp_path))


def test_a_changed_petousis_file_is_rejected(tmp_path, pins):
    pet = (FIXTURE / "dielectrics" / m.PETOUSIS).read_bytes().replace(b"9.5333", b"9.5334")
    with fs.PathServer(served(petousis=pet)) as srv:
        with pytest.raises(
            DownloadError, match=f"checksum mismatch .*exp-petousis.csv .*expected {pins.petousis_sha256}"
        ):
            run(dataset(srv), *outputs(tmp_path))
    assert not (tmp_path / "mp2018.parquet").exists()


def test_an_assembled_table_that_is_not_the_studys_writes_nothing(tmp_path, pins, monkeypatch):
    """Files that pass their checks but join to other values (here: pins of another table)."""
    monkeypatch.setattr(m, "PINS", dataclasses.replace(pins, table_sha256="5" * 64))
    with fs.PathServer(served()) as srv:
        with pytest.raises(DownloadError, match=f"not the study's .*sha256 {pins.table_sha256}, expected 5{{64}}"):
            run(dataset(srv), *outputs(tmp_path))
    assert not (tmp_path / "mp2018.parquet").exists() and not (tmp_path / "mp2018.manifest.json").exists()


def test_a_corrupt_transfer_is_fetched_again(tmp_path, pins):
    with fs.PathServer(served(), faulty=lambda path, params: path == ARCHIVE) as srv:
        srv.faults.append(("corrupt",))
        manifest = run(dataset(srv), *outputs(tmp_path))
        assert [r.fault for r in archive_requests(srv)] == [("corrupt",), None]
    assert manifest["retries"]["by_kind"] == {"checksum": 1}
    assert m.table_sha256(pd.read_parquet(tmp_path / "mp2018.parquet")) == pins.table_sha256


def test_the_shipped_pins_reject_the_slice(tmp_path):
    """Without the slice's pins, the real ones apply, and 30 materials are not the 36,737."""
    with fs.PathServer(served()) as srv, pytest.raises(DownloadError, match="data/material_id_hash.csv: sha256"):
        run(dataset(srv), *outputs(tmp_path))


# ----------------------------------------------------------------------------- resumption
@pytest.mark.parametrize("ranges", [True, False])
def test_a_cut_transfer_is_resumed(tmp_path, pins, ranges):
    files = served(level=0)
    size = len(files[ARCHIVE])
    with fs.PathServer(files, ranges=ranges, faulty=lambda path, params: path == ARCHIVE) as srv:
        srv.faults.append(("cut",))
        manifest = run(dataset(srv), *outputs(tmp_path))
        first, second = archive_requests(srv)
    assert first.fault == ("cut",) and "range" not in first.headers
    assert 0 < int(second.headers["range"].removeprefix("bytes=").rstrip("-")) < size  # asked for the rest
    assert manifest["retries"]["by_kind"] == {"truncated": 1}  # a server without Range sends it all again
    assert m.table_sha256(pd.read_parquet(tmp_path / "mp2018.parquet")) == pins.table_sha256


def test_a_rerun_reuses_the_verified_archive(tmp_path, pins):
    """A run stopped after the archive (the raw file is not there yet) keeps the checked archive;
    the re-run fetches only what is missing."""
    files = served()
    pet = files.pop(PETOUSIS)
    with fs.PathServer(files) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            run(dataset(srv), *outputs(tmp_path))
        assert not (tmp_path / "mp2018.parquet").exists()
        srv.files[PETOUSIS] = pet
        manifest = run(dataset(srv), *outputs(tmp_path))
        assert [r.path for r in srv.requests] == [ARCHIVE, PETOUSIS, PETOUSIS]
    assert manifest["chunks"] == {"total": 2, "fetched": 1, "reused": 1}
    assert m.table_sha256(pd.read_parquet(tmp_path / "mp2018.parquet")) == pins.table_sha256


def test_a_tampered_kept_archive_is_fetched_again(tmp_path, pins):
    files = served()
    with fs.PathServer(files) as srv:
        run({**dataset(srv, keep_chunks=True)}, *outputs(tmp_path))
        (kept,) = (tmp_path / "work").rglob("*.tar.gz")
        kept.write_bytes(tarball({**slice_files(), "data/0.cif": b"data_X\n"}))
        (tmp_path / "mp2018.parquet").unlink()
        manifest = run(dataset(srv, keep_chunks=True), *outputs(tmp_path))
        assert [r.path for r in archive_requests(srv)] == [ARCHIVE, ARCHIVE]
    assert manifest["chunks"] == {"total": 2, "fetched": 1, "reused": 1}


# ----------------------------------------------------------------------------- settings
def test_settings_are_checked(tmp_path):
    from tlcgcnn import config as C

    for cfg, message in (
        ({"base_url": "ftp://mirror"}, "dataset.mp2018.base_url must be an http"),
        ({"mirror": "https://x"}, r"unknown dataset.mp2018 settings \['mirror'\]"),
    ):
        with pytest.raises(ValueError, match=message):
            run({"source": "mp2018", "mp2018": cfg}, *outputs(tmp_path))
    assert m.check_settings({}) == ("https://codeload.github.com", "https://raw.githubusercontent.com")
    assert m.MEGNET.archive_url("https://codeload.github.com") == (
        "https://codeload.github.com/kdmsit/MEGNet/tar.gz/4f3c76c6b99edcb41d52ae5e8ae9dc89956d33d1"
    )
    raw = {"name": "u", "finetune": {"targets": [{"name": "ef", "property": "formation_energy_per_atom"}]}}
    raw["finetune"].update({"sizes": [10], "seeds": [0], "modes": {"scratch": {}}})
    loaded = C.load({**raw, "dataset": {"source": "mp2018"}, "embedded": {"input": "download"}})
    assert loaded.dataset_settings()["source"] == "mp2018"
    assert loaded.embedded_input() == str(Path("results/u/raw/mp2018.parquet"))
    with pytest.raises(C.ConfigError, match="mp2018"):
        C.load({**raw, "dataset": {"source": "mp2018", "mp2018": {"base_url": "https://x", "sha256": "0"}}})


# ----------------------------------------------------------------------------- the whole table
SNAPSHOTS = Path(os.environ.get("TLCGCNN_SNAPSHOTS", ROOT.parent / ".mirror"))
SHARED_TABLE = Path(os.environ.get("TLCGCNN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mp2018_36737.csv.gz"


def snapshot(repo: m.Repo) -> Path:
    """The git directory of a local snapshot of ``repo`` (``<TLCGCNN_SNAPSHOTS>/<owner>+<name>/repo``)
    holding the pinned commit; skips when there is none."""
    git_dir = SNAPSHOTS / f"{repo.owner}+{repo.name}" / "repo"
    found = git_dir.is_dir() and (
        subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{repo.commit}^{{commit}}"]).returncode == 0
    )
    if not found:
        pytest.skip(
            f"no local snapshot of {repo.owner}/{repo.name} at {repo.commit[:8]} in {git_dir} (TLCGCNN_SNAPSHOTS)"
        )
    return git_dir


@pytest.mark.e2e
@pytest.mark.shared_data
def test_the_whole_table_equals_mp2018_36737(tmp_path):
    """The shipped pins against the real repositories (git archive of the snapshot as the
    codeload archive, the Petousis blob as the raw file), and the rebuilt table against the
    study's mp2018_36737.csv.gz: every row, every column, every CIF byte."""
    if not SHARED_TABLE.exists():
        pytest.skip(f"the study's table {SHARED_TABLE} is absent (../shared/data)")
    megnet, dielectrics = snapshot(m.MEGNET), snapshot(m.DIELECTRICS)
    archive = subprocess.run(
        ["git", f"--git-dir={megnet}", "archive", "--format=tar.gz", f"--prefix={m.MEGNET.name}-{m.MEGNET.commit}/"]
        + [m.MEGNET.commit, "data", "data_elasticity", "multifidelity"],
        check=True,
        capture_output=True,
    ).stdout
    pet = subprocess.run(
        ["git", f"--git-dir={dielectrics}", "show", f"{m.DIELECTRICS.commit}:{m.PETOUSIS}"],
        check=True,
        capture_output=True,
    ).stdout
    with fs.PathServer({ARCHIVE: archive, PETOUSIS: pet}) as srv:
        manifest = run(dataset(srv), *outputs(tmp_path))
    got = pd.read_parquet(tmp_path / "mp2018.parquet")
    assert got.shape == (36737, 17) and manifest["extra"]["table_sha256"] == m.PINS.table_sha256
    published = gzip.decompress(SHARED_TABLE.read_bytes())
    assert m.canonical_csv(got) == published  # byte for byte: the decompressed study table
    ref = pd.read_csv(io.BytesIO(published), dtype={"material_id": str}, low_memory=False, float_precision="round_trip")
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert ref["cif"].tolist() == got["cif"].tolist()
    counts = got.drop(columns=["material_id", "cif", "is_metal"]).notna().sum().to_dict()
    assert {k: counts[k] for k in ("k_vrh", "band_gap_hse", "band_gap_gllbsc", "band_gap_scan", "diel_total_exp")} == {
        "k_vrh": 3184,
        "band_gap_hse": 4261,
        "band_gap_gllbsc": 1949,
        "band_gap_scan": 394,
        "diel_total_exp": 119,
    }
    assert int(got["is_metal"].sum()) == 15584
