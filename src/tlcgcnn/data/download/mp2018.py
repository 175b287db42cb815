"""Rebuild the full MP-2018 table (``mp2018_36737.csv.gz``) from its public sources.

``dataset: {source: mp2018}`` downloads, at pinned commits, the files the table was assembled
from (docs/usage.md, "The full MP-2018 table") and joins them into the same 36,737 rows and 17
columns:

* kdmsit/MEGNet at :data:`MEGNET` ``.commit``, as one archive from GitHub's codeload
  (``<base_url>/kdmsit/MEGNet/tar.gz/<commit>``, about 60 MB; the 36,737 CIFs make single-file
  downloads impractical): ``data/material_id_hash.csv`` (rows ``index,material_id``; the table's
  rows in this order), ``data/id_prop.csv`` (rows ``index,formation_energy_per_atom,band_gap,
  efermi,volume,magmom``; ``None`` is a missing value), ``data/<index>.cif`` (the ``cif`` column,
  text as is), ``data_elasticity/material_id_hash.csv`` with ``data_elasticity/id_prop.csv``
  (``k_vrh, g_vrh, poisson``, joined on ``material_id``) and ``multifidelity/data_no_structs.json.gz``
  (keys ``hse``, ``gllb-sc``, ``scan``: material_id -> gap; ``band_gap_hse``, ``band_gap_gllbsc``,
  ``band_gap_scan``);
* janosh/dielectrics at :data:`DIELECTRICS` ``.commit``, one file from
  ``<raw_url>/janosh/dielectrics/<commit>/data/others/petousis/exp-petousis.csv``
  (``diel_total_mp``, ``diel_elec_mp``, ``diel_total_exp`` joined on ``material_id``; of a repeated
  id, the first row);

and ``is_metal = band_gap <= 0``.

Checks. A codeload archive is made on demand, so its own bytes cannot be pinned; what is pinned
(:data:`PINS`, computed from the repositories at those commits) is the content that is used: the
sha256 of each table file read from the archive, the number of CIFs and one sha256 over all of
them (of the ``sha256sum``-style listing ``<sha256>  data/<index>.cif``, one line per row, in row
order), and the sha256 of the single raw file, checked before it is kept. An archive that fails
a check is deleted and fetched again (a retry; the same failing archive twice stops with an
error naming the file, the expected and the received sha256). Finally the assembled table is
checked as a whole: the sha256 of its canonical CSV (:func:`canonical_csv`) is pinned, and it is
the sha256 of the decompressed ``mp2018_36737.csv.gz`` of the study, so a table that passes
holds exactly the study's data (``zcat mp2018_36737.csv.gz | sha256sum`` prints the same).
Unless every check passes, nothing is written.

Resumption: the archive and the raw file are fetched into the work folder as ``.part`` files (a
cut transfer is resumed with an HTTP ``Range`` request where the server allows it) and kept
once verified, so a re-run after a failure reuses them. ``base_url`` and ``raw_url`` point at a
mirror (or a test server) holding the same layout.

Licence: Materials Project data, CC-BY 4.0; the citations are in
``resources/mp2018/README.md``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import math
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tlcgcnn.data.download import http
from tlcgcnn.data.download.chunks import ChunkStore
from tlcgcnn.data.download.manifest import Manifest

log = logging.getLogger(__name__)

SOURCE = "mp2018"
SETTINGS = ("base_url", "raw_url", "keep_chunks")
DEFAULT_BASE_URL = "https://codeload.github.com"
DEFAULT_RAW_URL = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Repo:
    """A public GitHub repository at one commit."""

    owner: str
    name: str
    commit: str

    def archive_url(self, base_url: str) -> str:
        """The commit's gzip tarball in codeload's layout: ``<base>/<owner>/<name>/tar.gz/<commit>``."""
        return f"{base_url.rstrip('/')}/{self.owner}/{self.name}/tar.gz/{self.commit}"

    def raw_file_url(self, raw_url: str, path: str) -> str:
        """One file in raw.githubusercontent's layout: ``<raw>/<owner>/<name>/<commit>/<path>``."""
        return f"{raw_url.rstrip('/')}/{self.owner}/{self.name}/{self.commit}/{path}"


MEGNET = Repo("kdmsit", "MEGNet", "4f3c76c6b99edcb41d52ae5e8ae9dc89956d33d1")
DIELECTRICS = Repo("janosh", "dielectrics", "f94baa08eb1d18be1f7ec2226b3fcfd52bba7ce3")

IDS = "data/material_id_hash.csv"
PROPS = "data/id_prop.csv"
ELASTIC_IDS = "data_elasticity/material_id_hash.csv"
ELASTIC_PROPS = "data_elasticity/id_prop.csv"
MULTIFIDELITY = "multifidelity/data_no_structs.json.gz"
PETOUSIS = "data/others/petousis/exp-petousis.csv"
TABLE_FILES = (IDS, PROPS, ELASTIC_IDS, ELASTIC_PROPS, MULTIFIDELITY)
CIF = re.compile(r"data/(\d+)\.cif")

COLUMNS = (
    "material_id",
    "formation_energy_per_atom",
    "band_gap",
    "efermi",
    "volume",
    "magmom",
    "is_metal",
    "k_vrh",
    "g_vrh",
    "poisson",
    "band_gap_hse",
    "band_gap_gllbsc",
    "band_gap_scan",
    "diel_total_mp",
    "diel_elec_mp",
    "diel_total_exp",
    "cif",
)
PROP_COLUMNS = ("formation_energy_per_atom", "band_gap", "efermi", "volume", "magmom")
ELASTIC_COLUMNS = ("k_vrh", "g_vrh", "poisson")
GAP_KEYS = {"band_gap_hse": "hse", "band_gap_gllbsc": "gllb-sc", "band_gap_scan": "scan"}
DIEL_COLUMNS = ("diel_total_mp", "diel_elec_mp", "diel_total_exp")
MISSING = ("", "None")  # how the source files write a missing number


@dataclass(frozen=True)
class Pins:
    """What the downloaded content must be: sha256 of each table file in the MEGNet archive,
    the number of CIFs and the sha256 of their listing, the sha256 of the raw Petousis file,
    and the rows and canonical-CSV sha256 of the assembled table."""

    files: Mapping[str, str]
    cif_count: int
    cif_listing_sha256: str
    petousis_sha256: str
    rows: int
    table_sha256: str


#: computed from kdmsit/MEGNet and janosh/dielectrics at the commits above (git blobs);
#: ``table_sha256`` is sha256(gunzip(mp2018_36737.csv.gz)), the study's table
PINS = Pins(
    files={
        IDS: "f2bb5e662360a2499d1910612b26537e7b3c88a5d0ff1c5007f0cbe9d9e2b413",
        PROPS: "5784415c486e248880a2134fbad60e6619a09b28fdaf9a37793ac90546e0fdac",
        ELASTIC_IDS: "f98cb9d998b6b6c90d0343f2dcd8b1a4187f9102379c82689e52d7013ddf028c",
        ELASTIC_PROPS: "f395d6db6dfa2c4f3ddf0ad12c4b91448a3a4cdb2c39692eefdd99ea3cf2f11d",
        MULTIFIDELITY: "e064545967531995d4fd32ff9292b8327b52050e454e2a0390841a92a0749b0a",
    },
    cif_count=36737,
    cif_listing_sha256="818a8fc7943572362a1e64c385b7e38711dc2709bc154ad079e98e2ebdd546f8",
    petousis_sha256="66e956babed96aed0003af6f7ffa292aa397f51f144112c8468a96de2c91726b",
    rows=36737,
    table_sha256="77c255c9fbd557d7d170466bd4ae6598511442439ad75e17c6480b5c7fefad06",
)


class ContentError(ValueError):
    """Downloaded content that is not what the pins describe (the message says what)."""


# --------------------------------------------------------------------------- settings
def check_settings(cfg: Mapping[str, Any]) -> tuple[str, str]:
    """(base_url, raw_url) of valid settings; a clear error for an unknown or malformed one."""
    unknown = sorted(set(cfg) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown dataset.mp2018 settings {unknown}; known: {sorted(SETTINGS)}")
    urls = []
    for key, default in (("base_url", DEFAULT_BASE_URL), ("raw_url", DEFAULT_RAW_URL)):
        value = str(cfg.get(key) or default)
        if not re.match(r"^https?://\S+$", value):
            raise ValueError(f"dataset.mp2018.{key} must be an http(s) URL (got {value!r})")
        urls.append(value)
    return urls[0], urls[1]


# --------------------------------------------------------------------------- content checks
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cif_listing(ids: Iterable[tuple[str, str]], cifs: Mapping[str, bytes]) -> bytes:
    """``<sha256>  data/<index>.cif`` lines, one per row (``(index, material_id)``) in row order:
    what ``sha256sum`` prints for the CIFs; its sha256 pins all of them at once."""
    lines = []
    for index, _ in ids:
        path = f"data/{index}.cif"
        lines.append(f"{sha256_hex(cifs[path])}  {path}\n")
    return "".join(lines).encode()


def read_archive(path: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(table files, CIFs) of a MEGNet tarball, by their path in the repository (the
    archive's top folder, ``<repo>-<commit>/``, removed). One pass; nothing else is kept."""
    tables: dict[str, bytes] = {}
    cifs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.split("/", 1)[1] if "/" in member.name else member.name
                if name in TABLE_FILES or CIF.fullmatch(name):
                    fh = tar.extractfile(member)
                    assert fh is not None  # a regular file
                    (tables if name in TABLE_FILES else cifs)[name] = fh.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ContentError(f"{path.name} is not a complete gzip tar archive ({type(exc).__name__}: {exc})") from None
    return tables, cifs


def check_archive(tables: Mapping[str, bytes], cifs: Mapping[str, bytes], pins: Pins) -> None:
    """Raise ContentError unless every table file and the set of CIFs are the pinned ones."""
    for name, expected in pins.files.items():
        if name not in tables:
            raise ContentError(f"{name} is not in the archive")
        actual = sha256_hex(tables[name])
        if actual != expected:
            raise ContentError(f"{name}: sha256 expected {expected}, got {actual}")
    ids = parse_ids(tables[IDS], IDS)
    missing = [f"data/{i}.cif" for i, _ in ids if f"data/{i}.cif" not in cifs]
    if missing:
        raise ContentError(f"{len(missing)} CIFs of {IDS} are not in the archive (first: {missing[0]})")
    if len(ids) != pins.cif_count:
        raise ContentError(f"{IDS} lists {len(ids)} materials, expected {pins.cif_count}")
    actual = sha256_hex(cif_listing(ids, cifs))
    if actual != pins.cif_listing_sha256:
        raise ContentError(
            f"the {len(ids)} CIFs data/<index>.cif: sha256 of their listing expected {pins.cif_listing_sha256}, "
            f"got {actual} (a CIF differs)"
        )


# --------------------------------------------------------------------------- parsing
def _rows(blob: bytes, name: str, width: int) -> list[list[str]]:
    rows = [r for r in csv.reader(io.StringIO(blob.decode("utf-8"))) if r]
    bad = [i for i, r in enumerate(rows, 1) if len(r) != width]
    if bad:
        raise ContentError(f"{name}: line {bad[0]} has {len(rows[bad[0] - 1])} fields, expected {width}")
    return rows


def number(text: str, where: str) -> float:
    """A float from a source file's text, exactly (``float``, not a fast CSV parser); empty or
    ``None``: NaN."""
    text = text.strip()
    if text in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ContentError(f"{where}: {text!r} is not a number") from None


def parse_ids(blob: bytes, name: str) -> list[tuple[str, str]]:
    """``(index, material_id)`` rows of a ``material_id_hash.csv``, in file order; unique both."""
    ids = [(r[0].strip(), r[1].strip()) for r in _rows(blob, name, 2)]
    for k, what in ((0, "index"), (1, "material_id")):
        values = [row[k] for row in ids]
        if len(set(values)) != len(values):
            raise ContentError(f"{name}: repeated {what}")
    return ids


def parse_props(blob: bytes, name: str, columns: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """index -> values of an ``id_prop.csv`` (rows ``index,<columns>``)."""
    out: dict[str, tuple[float, ...]] = {}
    for row in _rows(blob, name, 1 + len(columns)):
        index = row[0].strip()
        if index in out:
            raise ContentError(f"{name}: repeated index {index}")
        out[index] = tuple(number(v, f"{name} index {index}") for v in row[1:])
    return out


def parse_petousis(blob: bytes) -> dict[str, tuple[float, ...]]:
    """material_id -> (diel_total_mp, diel_elec_mp, diel_total_exp); a repeated id keeps its first row."""
    reader = csv.DictReader(io.StringIO(blob.decode("utf-8")))
    lacking = sorted({"material_id", *DIEL_COLUMNS} - set(reader.fieldnames or ()))
    if lacking:
        raise ContentError(f"{PETOUSIS}: columns {lacking} missing")
    out: dict[str, tuple[float, ...]] = {}
    for row in reader:
        mid = row["material_id"].strip()
        if mid not in out:
            out[mid] = tuple(number(row[c], f"{PETOUSIS} {mid} {c}") for c in DIEL_COLUMNS)
    return out


# --------------------------------------------------------------------------- assembly
def assemble(tables: Mapping[str, bytes], cifs: Mapping[str, bytes], petousis: bytes) -> pd.DataFrame:
    """The table: one row per material of ``data/material_id_hash.csv`` in its order, with
    :data:`COLUMNS` (ids and CIF text as str, numbers float64, ``is_metal`` bool)."""
    ids = parse_ids(tables[IDS], IDS)
    props = parse_props(tables[PROPS], PROPS, PROP_COLUMNS)
    lacking = [i for i, _ in ids if i not in props]
    if lacking:
        raise ContentError(f"{PROPS}: no row for index {lacking[0]} ({len(lacking)} in all)")
    elastic_ids = parse_ids(tables[ELASTIC_IDS], ELASTIC_IDS)
    elastic_props = parse_props(tables[ELASTIC_PROPS], ELASTIC_PROPS, ELASTIC_COLUMNS)
    elastic = {mid: elastic_props[i] for i, mid in elastic_ids if i in elastic_props}
    try:
        gaps_doc = json.loads(gzip.decompress(tables[MULTIFIDELITY]))
        gaps = {col: {str(k): float(v) for k, v in gaps_doc[key].items()} for col, key in GAP_KEYS.items()}
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ContentError(f"{MULTIFIDELITY}: not the expected gzip JSON ({type(exc).__name__}: {exc})") from None
    diel = parse_petousis(petousis)
    nan3 = (math.nan,) * 3
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for index, mid in ids:
        values = dict(zip(PROP_COLUMNS, props[index], strict=True))
        values.update(zip(ELASTIC_COLUMNS, elastic.get(mid, nan3), strict=True))
        values.update({col: gaps[col].get(mid, math.nan) for col in GAP_KEYS})
        values.update(zip(DIEL_COLUMNS, diel.get(mid, nan3), strict=True))
        values["is_metal"] = bool(values["band_gap"] <= 0)
        values["material_id"] = mid
        values["cif"] = cifs[f"data/{index}.cif"].decode("utf-8")
        for col in COLUMNS:
            columns[col].append(values[col])
    df = pd.DataFrame(columns)
    for col in COLUMNS:
        if col in ("material_id", "cif"):
            df[col] = df[col].astype(object)
        elif col == "is_metal":
            df[col] = df[col].astype(bool)
        else:
            df[col] = df[col].astype("float64")
    return df


def canonical_csv(df: pd.DataFrame) -> bytes:
    """The table as CSV, written the same way everywhere: a header of :data:`COLUMNS`, ``\\n``
    line ends, numbers as Python's shortest round-trip ``repr`` (NaN: empty), booleans ``True`` /
    ``False``, fields quoted only where needed (the CIF text). Its sha256 is the table's content
    checksum: the decompressed ``mp2018_36737.csv.gz`` is exactly this text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, float):
            return "" if math.isnan(value) else repr(value)
        return str(value)

    data = [df[c].tolist() for c in COLUMNS]
    for row in zip(*data, strict=True):
        writer.writerow([cell(v) for v in row])
    return buf.getvalue().encode("utf-8")


def table_sha256(df: pd.DataFrame) -> str:
    """sha256 of :func:`canonical_csv`."""
    return sha256_hex(canonical_csv(df))


# --------------------------------------------------------------------------- download
def fetch_archive(
    session: Any, url: str, dest: Path, pins: Pins, policy: http.RetryPolicy, stats: http.RetryStats
) -> tuple[bool, dict[str, bytes], dict[str, bytes]]:
    """Fetch (or reuse) the MEGNet archive and check its content; returns (fetched, tables, CIFs)."""
    kept: dict[str, dict[str, bytes]] = {}

    def check(path: Path) -> str | None:
        try:
            tables, cifs = read_archive(path)
            check_archive(tables, cifs, pins)
        except ContentError as exc:
            return f"{dest.name}: {exc}"
        kept.update(tables=tables, cifs=cifs)
        return None

    fetched = http.fetch_checked(session, url, dest, check, policy, stats)
    return fetched, kept["tables"], kept["cifs"]


def download(
    cfg: Mapping[str, Any],
    policy: http.RetryPolicy,
    workdir: Path,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, Manifest, ChunkStore]:
    """Fetch (or reuse) and check the sources, assemble and check the table against
    :data:`PINS`; returns the table, the manifest and the work folder."""
    pins = PINS
    base_url, raw_url = check_settings(cfg)
    archive_url = MEGNET.archive_url(base_url)
    petousis_url = DIELECTRICS.raw_file_url(raw_url, PETOUSIS)
    manifest = Manifest(
        source=SOURCE,
        endpoint=base_url,
        query={
            "archive": archive_url,
            "files": [petousis_url],
            "commits": {f"{r.owner}/{r.name}": r.commit for r in (MEGNET, DIELECTRICS)},
        },
        requested=pins.rows,
    )
    stats = http.RetryStats()
    store = ChunkStore(workdir, SOURCE, {"archive": archive_url, "petousis": petousis_url})
    session, _ = http.make_session(policy)
    archive = store.root / f"{MEGNET.name}-{MEGNET.commit}.tar.gz"
    got_archive, tables, cifs = fetch_archive(session, archive_url, archive, pins, policy, stats)
    if on_chunk is not None:
        on_chunk(1, 2)
    petousis = store.root / f"{DIELECTRICS.name}-{DIELECTRICS.commit}-exp-petousis.csv"
    got_petousis = http.fetch_verified(session, petousis_url, petousis, pins.petousis_sha256, policy, stats)
    if on_chunk is not None:
        on_chunk(2, 2)
    manifest.chunks_total = 2
    manifest.chunks_fetched = int(got_archive) + int(got_petousis)
    manifest.chunks_reused = 2 - manifest.chunks_fetched
    try:
        table = assemble(tables, cifs, petousis.read_bytes())
    except ContentError as exc:
        raise http.DownloadError(f"mp2018: cannot assemble the table: {exc}") from None
    actual = table_sha256(table)
    if len(table) != pins.rows or actual != pins.table_sha256:
        raise http.DownloadError(
            f"mp2018: the assembled table is not the study's ({len(table)} rows, expected {pins.rows}; "
            f"canonical CSV sha256 {actual}, expected {pins.table_sha256}); nothing was written"
        )
    log.info("mp2018: %d rows, columns %s, canonical CSV sha256 %s", len(table), list(table.columns), actual)
    manifest.received = len(table)
    manifest.retries = stats.as_dict()
    manifest.extra.update(
        {
            "archive_bytes": archive.stat().st_size,
            "files_sha256": {
                **{f"{MEGNET.owner}/{MEGNET.name}:{k}": v for k, v in pins.files.items()},
                f"{DIELECTRICS.owner}/{DIELECTRICS.name}:{PETOUSIS}": pins.petousis_sha256,
            },
            "cifs": {"count": pins.cif_count, "listing_sha256": pins.cif_listing_sha256},
            "table_sha256": actual,
            "table_sha256_of": "canonical CSV (mp2018.canonical_csv), = sha256 of gunzip(mp2018_36737.csv.gz)",
            "columns": list(table.columns),
            "licence": "Materials Project data, CC-BY 4.0 (citations: resources/mp2018/README.md)",
        }
    )
    return table, manifest, store
