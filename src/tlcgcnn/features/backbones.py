"""Universal-potential backbones as frozen feature extractors (CHGNet, SevenNet).

A ``pretrain`` entry ``{name: chgnet, backbone: chgnet-0.3.0}`` is a source that the workflow
does not train: a universal interatomic potential shipped, weights included, in a Python package
(:data:`BACKBONES`). Frozen-features modes (``{pretrained: chgnet, estimator: ridge, features:
frozen}``, :mod:`tlcgcnn.train.frozen`) fit their estimator on its crystal vectors, as they do on
a CGCNN source's.

:func:`embed` gives one vector per crystal: the mean over the cell's atoms of CHGNet's atom
features after its last interaction block and read-out layer norm, 64 wide; in eval mode, no
gradients, energy only (no forces or stresses are computed). CHGNet's own ``crystal_fea``
(``predict_graph(..., return_crystal_feas=True)``) is the *sum* of those atom features for the
0.3.0 model (its read-out pools by summing, ``mlp_first``), which grows with the number of atoms
in the cell: a supercell of the same material would get another vector. It is divided by the
number of atoms, so the vector describes the material, not the cell chosen for it
(:data:`POOLING`, part of the cache key). Each structure is hashed from its canonical arrays
(:func:`structure_hash`); a cache file keyed by (structure hash, backbone, package version)
keeps every vector computed, so a re-run embeds only structures it has not seen (a new table,
a grown data set); vectors of another package version are never reused. :func:`embed_table` is
the rule's (``embed_backbone``, rules/backbones.smk): the run's table in, ``material_id, f0..f63``
and a JSON of what was done out, each written atomically.

``sevennet-0`` (SevenNet-0, 11 July 2024, from ``sevenn``; an equivariant network of 5
interaction blocks trained on MPtrj) gives the mean over the cell's atoms of its 128 scalar
(``0e``) atom features after the last interaction block, the input of its energy read-out; the
read-out and the force / stress output are removed before the forward pass, so no gradients
are taken.

Nothing is downloaded: :meth:`chgnet.model.CHGNet.load` and ``sevenn.util.load_checkpoint``
read the weights inside the packages.
Torch, pymatgen and the backbone's package are imported inside the functions that use them (the
features subpackage imports without torch).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    """A universal potential that serves as a frozen feature extractor.

    ``name``: what a pretrain entry's ``backbone:`` says; ``package`` / ``requirement``: the
    importable module and the pinned distribution that ships it (with its weights);
    ``weights``: the model version the package loads; ``width``: length of the crystal vector;
    ``licence``: the package's licence (weights included); ``training_data``: what it was
    trained on (where a test material may come from); ``loader``: ``module:function`` that
    loads its model (``function(backbone, device)``; imported only when a model is needed, so
    that one backbone's rule env need not hold another's package)."""

    name: str
    package: str
    requirement: str
    weights: str
    width: int
    licence: str
    training_data: str
    loader: str
    label: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


BACKBONES: dict[str, Backbone] = {
    "chgnet-0.3.0": Backbone(
        name="chgnet-0.3.0",
        package="chgnet",
        requirement="chgnet==0.4.2",
        weights="0.3.0",
        width=64,
        licence="BSD-3-Clause-LBNL (modified BSD, chgnet package incl. weights)",
        training_data=(
            "MPtrj: relaxation trajectories of Materials Project GGA/GGA+U calculations "
            "(energies, forces, stresses, magnetic moments)"
        ),
        loader="tlcgcnn.features.backbones:load_chgnet",
        label="CHGNet 0.3.0",
    ),
    "sevennet-0": Backbone(
        name="sevennet-0",
        package="sevenn",
        requirement="sevenn==0.13.0",
        weights="7net-0",
        width=128,
        licence="MIT (sevenn 0.13.0 package incl. the SevenNet-0 weights; releases before 0.10 were GPL-3.0)",
        training_data=(
            "MPtrj: relaxation trajectories of Materials Project GGA/GGA+U calculations (energies, forces, stresses)"
        ),
        loader="tlcgcnn.features.sevennet:load",
        label="SevenNet-0",
    ),
}

# one crystal vector's columns in the embeddings file
FEATURE_PREFIX = "f"
CACHE_KEYS = ("structure_sha256", "backbone", "package_version", "pooling")
# how a crystal vector is made from the atom features (a cache row made another way is not reused)
POOLING = "mean over atoms"


def get(name: str) -> Backbone:
    """The backbone called ``name``; a KeyError naming the known ones otherwise."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r} (known: {sorted(BACKBONES)})")
    return BACKBONES[name]


def feature_columns(width: int) -> list[str]:
    return [f"{FEATURE_PREFIX}{i}" for i in range(width)]


def package_version(backbone: str | Backbone) -> str:
    """The installed version of the backbone's package (its distribution metadata)."""
    from importlib.metadata import version

    bb = get(backbone) if isinstance(backbone, str) else backbone
    return version(bb.package)


def structure_hash(lattice: Any, atomic_numbers: Any, frac_coords: Any) -> str:
    """sha256 of a crystal's canonical arrays (row-major lattice in Å, Z of each site,
    fractional coordinates; :mod:`tlcgcnn.data.table`): the same structure under another id
    has the same hash, any change of a coordinate another."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(lattice, dtype="<f8").reshape(9).tobytes())
    z = np.ascontiguousarray(atomic_numbers, dtype="<i8").reshape(-1)
    h.update(len(z).to_bytes(8, "little"))
    h.update(z.tobytes())
    h.update(np.ascontiguousarray(frac_coords, dtype="<f8").reshape(-1).tobytes())
    return h.hexdigest()


def _as_table(structures: pd.DataFrame | str | Path | Mapping[str, Any]) -> pd.DataFrame:
    """The canonical structure columns of a table (a frame, or a ``structures.parquet``) or of
    pymatgen structures keyed by material id."""
    from tlcgcnn.data import table

    if isinstance(structures, str | Path):
        return table.read(structures, columns=["material_id", "lattice", "atomic_numbers", "frac_coords"])
    if isinstance(structures, pd.DataFrame):
        missing = [c for c in ("material_id", "lattice", "atomic_numbers", "frac_coords") if c not in structures]
        if missing:
            raise ValueError(f"not a canonical structure table: missing columns {missing}")
        return structures
    rows = [{"material_id": str(mid), **table.structure_arrays(s)} for mid, s in structures.items()]
    return pd.DataFrame(rows, columns=["material_id", "formula", "nsites", "lattice", "atomic_numbers", "frac_coords"])


def _device(name: str) -> str:
    """``auto``: CUDA where torch sees a GPU, else the CPU; a named device as given (CUDA
    asked for but absent: the CPU, with a warning)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available; embedding on the CPU", name)
        return "cpu"
    return name


def _hardware(device: str) -> str | None:
    """The chip behind ``device`` (the GPU's name, else the CPU's model), as the training
    runs record it."""
    import torch

    from tlcgcnn.report.provenance import cpu_model

    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return cpu_model() if device == "cpu" else None


def read_cache(path: str | Path | None, backbone: Backbone, version: str) -> pd.DataFrame:
    """The cached vectors of this backbone and package version, indexed by structure hash."""
    cols = feature_columns(backbone.width)
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=cols, index=pd.Index([], name="structure_sha256"), dtype=np.float64)
    cached = pd.read_parquet(path)
    pooling = cached["pooling"] if "pooling" in cached else pd.Series("", index=cached.index)
    mine = cached[(cached["backbone"] == backbone.name) & (cached["package_version"] == version) & (pooling == POOLING)]
    return mine.drop_duplicates("structure_sha256").set_index("structure_sha256")[cols]


def _write_cache(path: str | Path, new: pd.DataFrame, backbone: Backbone, version: str) -> None:
    """Add ``new`` (vectors indexed by structure hash) to the cache file, atomically; rows of
    other backbones and versions stay."""
    rows = new.reset_index().assign(backbone=backbone.name, package_version=version, pooling=POOLING)
    rows = rows[[*CACHE_KEYS, *feature_columns(backbone.width)]]
    if Path(path).exists():
        rows = pd.concat([pd.read_parquet(path), rows], ignore_index=True).drop_duplicates(
            list(CACHE_KEYS), keep="last"
        )
    io.write_parquet(rows, path)


Loader = Callable[["Backbone", str], Any]


def _load_model(backbone: Backbone, device: str, loader: Loader | None = None) -> Any:
    """The backbone's model from the weights inside its package, on ``device``, in eval mode:
    by ``loader`` where given (a rule passes its own), else by the one :attr:`Backbone.loader` names."""
    if loader is None:
        import importlib

        module, _, function = backbone.loader.partition(":")
        loader = getattr(importlib.import_module(module), function)
    return loader(backbone, device)


def load_chgnet(backbone: Backbone, device: str) -> Any:
    """CHGNet with the weights its package ships (``backbone.weights``), on ``device``, in eval mode."""
    if backbone.package != "chgnet":
        raise ValueError(f"backbone {backbone.name} is not a CHGNet model")
    from chgnet.model import CHGNet

    model = CHGNet.load(model_name=backbone.weights, use_device=device, verbose=False)
    model.eval()
    return model


def _embed_structures(model: Any, structures: list[Any], ids: list[str], batch_size: int) -> tuple[np.ndarray, int]:
    """The crystal vectors of ``structures`` (float64 [n, width]: CHGNet's summed atom
    features divided by the number of atoms, SevenNet's atom features averaged: :data:`POOLING`)
    and how many of them have an atom with no neighbour within the atom-graph cutoff (embedded
    all the same: such an atom keeps its own embedding)."""
    import torch

    if hasattr(model, "crystal_vectors"):  # a backbone module's own wrapper (tlcgcnn.features.sevennet)
        return model.crystal_vectors(structures)
    converter = model.graph_converter
    converter.set_isolated_atom_response("ignore")
    graphs = [converter(s, graph_id=mid) for s, mid in zip(structures, ids, strict=True)]
    isolated = sum(int(len(g.atomic_number) > len(torch.unique(g.atom_graph[:, 0]))) for g in graphs)
    with torch.no_grad():
        out = model.predict_graph(graphs, task="e", return_crystal_feas=True, batch_size=batch_size)
    preds = [out] if isinstance(out, dict) else out
    sums = np.stack([np.asarray(p["crystal_fea"], dtype=np.float64) for p in preds])
    if getattr(model.pooling, "average", False):  # a read-out that already averages
        return sums, isolated
    atoms = np.array([len(g.atomic_number) for g in graphs], dtype=np.float64)
    return sums / atoms[:, None], isolated


def _hashes(df: pd.DataFrame) -> list[str]:
    """:func:`structure_hash` of every row of a canonical structure table."""
    return [
        structure_hash(lat, z, frac)
        for lat, z, frac in zip(df["lattice"], df["atomic_numbers"], df["frac_coords"], strict=True)
    ]


def _todo(hashes: list[str], known: Any) -> dict[str, int]:
    """Structure hash -> first row with it, for the structures ``known`` (a cache) lacks."""
    todo: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h not in known and h not in todo:
            todo[h] = i
    return todo


def _ready_model(
    bb: Backbone, device: str, threads: int | None, loader: Loader | None = None
) -> tuple[Any, str, str | None]:
    """The backbone's model on its device (threads set first), the device and its hardware."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    dev = _device(device)
    return _load_model(bb, dev, loader), dev, _hardware(dev)


def embed(
    structures: pd.DataFrame | str | Path | Mapping[str, Any],
    backbone: str = "chgnet-0.3.0",
    device: str = "auto",
    batch_size: int = 16,
    cache: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    chunk: int = 512,
    loader: Loader | None = None,
) -> pd.DataFrame:
    """The backbone's crystal vector of each structure: a frame ``material_id, f0..f<width-1>``
    (float64) in the input's order. ``structures``: the pipeline's table (a frame or its
    ``structures.parquet``) or pymatgen structures keyed by material id. With ``cache`` (a
    parquet file) structures already there for this backbone and package version are not
    embedded again, and the new ones are added to it every ``chunk`` structures (a killed job
    keeps what it did). ``attrs`` of the result: backbone, package version, device, hardware,
    counts (``n_embedded``: computed now, ``n_cached``: read from the cache, ``n_isolated``:
    of those computed, the crystals with an isolated atom) and seconds."""
    bb = get(backbone)
    version = package_version(bb)
    df = _as_table(structures)
    t0 = time.perf_counter()
    hashes = _hashes(df)
    cols = feature_columns(bb.width)
    known = read_cache(cache, bb, version)
    todo = _todo(hashes, known.index)
    n_isolated, dev, hardware = 0, None, None
    if todo:
        from tqdm.auto import tqdm

        from tlcgcnn.data.table import to_structure

        model, dev, hardware = _ready_model(bb, device, threads, loader)
        log.info("%s (%s %s): embedding %d structures on %s", bb.name, bb.package, version, len(todo), dev)
        pending = list(todo.items())
        new: list[pd.DataFrame] = []
        with tqdm(total=len(pending), desc=f"{bb.name} embeddings", unit="crystal", disable=not progress) as bar:
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                rows = [df.iloc[i] for _, i in part]
                vecs = np.zeros((0, bb.width))
                for b in range(0, len(rows), batch_size):
                    batch = rows[b : b + batch_size]
                    got, iso = _embed_structures(
                        model, [to_structure(r) for r in batch], [str(r["material_id"]) for r in batch], batch_size
                    )
                    vecs, n_isolated = np.concatenate([vecs, got]), n_isolated + iso
                    bar.update(len(batch))
                bad = ~np.isfinite(vecs).all(axis=1)
                if bad.any():
                    first = str(rows[int(np.flatnonzero(bad)[0])]["material_id"])
                    raise ValueError(
                        f"{bb.name}: non-finite crystal vectors for {int(bad.sum())} crystals (first: {first})"
                    )
                frame = pd.DataFrame(vecs, columns=cols, index=pd.Index([h for h, _ in part], name="structure_sha256"))
                new.append(frame)
                if cache is not None:
                    _write_cache(cache, frame, bb, version)
        known = pd.concat([known, *new])
    out = pd.DataFrame(known.loc[hashes].to_numpy(dtype=np.float64), columns=cols)
    out.insert(0, "material_id", df["material_id"].astype(str).to_numpy())
    out.attrs = {
        "backbone": bb.name,
        "pooling": POOLING,
        "package": bb.package,
        "package_version": version,
        "device": dev,
        "hardware": hardware,
        "n_structures": len(df),
        "n_unique": len(set(hashes)),
        "n_embedded": len(todo),
        "n_cached": len(set(hashes)) - len(todo),
        "n_isolated": n_isolated,
        "seconds": time.perf_counter() - t0,
    }
    return out


def embed_table(
    table_path: str | Path,
    out_embeddings: str | Path,
    out_info: str | Path,
    backbone: str,
    cache: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 16,
    threads: int | None = None,
    loader: Loader | None = None,
) -> dict[str, Any]:
    """Embed every crystal of the run's table (rules ``embed_backbone`` and ``embed_backbone_sevenn``,
    each passing its backbone's ``loader``): ``out_embeddings``
    (``material_id, f0..``) and ``out_info`` (the backbone, its package, version, licence and
    training data, the counts, device and seconds of :func:`embed`, the table's sha256), each
    written atomically. Returns the info."""
    bb = get(backbone)
    vectors = embed(
        table_path, bb.name, device=device, batch_size=batch_size, cache=cache, threads=threads, loader=loader
    )
    info = {
        **bb.as_dict(),
        **vectors.attrs,
        "width": bb.width,
        "table_sha256": io.sha256_file(table_path),
    }
    vectors.attrs = {}
    io.write_parquet(vectors, out_embeddings)
    io.write_json(out_info, info)
    log.info(
        "%s: %d crystals (%d embedded now, %d from the cache) in %.1f s",
        bb.name,
        info["n_structures"],
        info["n_embedded"],
        info["n_cached"],
        info["seconds"],
    )
    return info


def read_embeddings(path: str | Path, ids: list[str]) -> pd.DataFrame:
    """The vectors of ``ids`` from an embeddings file, indexed by material id in that order;
    an error naming the ids the file lacks."""
    emb = pd.read_parquet(path)
    emb = emb.drop_duplicates("material_id").set_index("material_id")
    missing = [i for i in ids if i not in emb.index]
    if missing:
        raise ValueError(f"{path}: no crystal vector for {len(missing)} ids (first: {missing[0]!r})")
    out = emb.loc[ids].astype(np.float64)
    out.index.name = "material_id"
    return out


# --------------------------------------------------------------------------- per-atom features
# how the per-atom features of a cache row were made (a row made another way is not reused)
ATOM_FEATURES = "read-out input (after the read-out layer norm)"


def _atom_cache_rows(path: str | Path | None, backbone: Backbone, version: str) -> dict[str, np.ndarray]:
    """The cached per-atom features of this backbone and package version, by structure hash."""
    if path is None or not Path(path).exists():
        return {}
    cached = pd.read_parquet(path)
    mine = cached[
        (cached["backbone"] == backbone.name)
        & (cached["package_version"] == version)
        & (cached["features"] == ATOM_FEATURES)
    ]
    return {
        h: np.frombuffer(blob, dtype="<f4").reshape(int(n), backbone.width)
        for h, n, blob in zip(mine["structure_sha256"], mine["n_atoms"], mine["atoms"], strict=True)
    }


def _add_atom_cache(path: str | Path, new: dict[str, np.ndarray], backbone: Backbone, version: str) -> None:
    """Add ``new`` to the per-atom cache file under an exclusive lock (cells of one run may
    write it at the same time), atomically; rows of other backbones and versions stay."""
    import fcntl

    rows = pd.DataFrame(
        {
            "structure_sha256": list(new),
            "backbone": backbone.name,
            "package_version": version,
            "features": ATOM_FEATURES,
            "n_atoms": [int(a.shape[0]) for a in new.values()],
            "atoms": [np.ascontiguousarray(a, dtype="<f4").tobytes() for a in new.values()],
        }
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if Path(path).exists():
            rows = pd.concat([pd.read_parquet(path), rows], ignore_index=True).drop_duplicates(
                ["structure_sha256", "backbone", "package_version", "features"], keep="last"
            )
        io.write_parquet(rows, path)


def _atom_features(model: Any, structures: list[Any], ids: list[str], batch_size: int) -> list[np.ndarray]:
    """Per structure, the [n_atoms, width] features CHGNet's read-out MLP reads: the output of
    its read-out layer norm, captured by a forward hook while the model predicts the energy."""
    import torch

    converter = model.graph_converter
    converter.set_isolated_atom_response("ignore")
    graphs = [converter(s, graph_id=mid) for s, mid in zip(structures, ids, strict=True)]
    captured: list[torch.Tensor] = []
    hook = model.readout_norm.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().cpu()))
    try:
        with torch.no_grad():
            model.predict_graph(graphs, task="e", batch_size=batch_size)
    finally:
        hook.remove()
    atoms = torch.cat(captured).numpy().astype(np.float32)
    counts = [len(g.atomic_number) for g in graphs]
    if atoms.shape[0] != sum(counts):
        raise RuntimeError(f"captured {atoms.shape[0]} atom rows for {sum(counts)} atoms")
    return np.split(atoms, np.cumsum(counts)[:-1])


def embed_atoms(
    structures: pd.DataFrame | str | Path | Mapping[str, Any],
    backbone: str = "chgnet-0.3.0",
    ids: list[str] | None = None,
    device: str = "auto",
    batch_size: int = 16,
    cache: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    chunk: int = 512,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The per-atom features the backbone's read-out reads (:data:`ATOM_FEATURES`), float32
    [n_atoms, width] per material id of ``ids`` (all of the table by default): what the
    read-out fine-tuning mode trains on (:mod:`tlcgcnn.train.readout`); their mean over the
    atoms is the crystal vector of :func:`embed`. With ``cache`` (a parquet file keyed by
    structure hash, backbone, package version) structures computed before are read, new ones
    added every ``chunk`` structures. Returns the features and what was done (device,
    hardware, counts, seconds)."""
    bb = get(backbone)
    version = package_version(bb)
    df = _as_table(structures)
    if ids is not None:
        df = df.drop_duplicates("material_id").set_index("material_id").loc[ids].reset_index()
    t0 = time.perf_counter()
    hashes = _hashes(df)
    known = _atom_cache_rows(cache, bb, version)
    todo = _todo(hashes, known)
    dev = hardware = None
    if todo:
        from tqdm.auto import tqdm

        from tlcgcnn.data.table import to_structure

        model, dev, hardware = _ready_model(bb, device, threads, load_chgnet)  # CHGNet's read-out input
        log.info("%s: per-atom features of %d structures on %s", bb.name, len(todo), dev)
        pending = list(todo.items())
        with tqdm(total=len(pending), desc=f"{bb.name} atom features", unit="crystal", disable=not progress) as bar:
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                rows = [df.iloc[i] for _, i in part]
                new: dict[str, np.ndarray] = {}
                for b in range(0, len(rows), batch_size):
                    batch = rows[b : b + batch_size]
                    feats = _atom_features(
                        model, [to_structure(r) for r in batch], [str(r["material_id"]) for r in batch], batch_size
                    )
                    for (h, _), f in zip(part[b : b + batch_size], feats, strict=True):
                        if not np.isfinite(f).all():
                            raise ValueError(
                                f"{bb.name}: non-finite atom features for {df.iloc[todo[h]]['material_id']}"
                            )
                        new[h] = f
                    bar.update(len(batch))
                known.update(new)
                if cache is not None:
                    _add_atom_cache(cache, new, bb, version)
    out = {str(mid): known[h] for mid, h in zip(df["material_id"], hashes, strict=True)}
    info = {
        "backbone": bb.name,
        "package_version": version,
        "features": ATOM_FEATURES,
        "device": dev,
        "hardware": hardware,
        "n_structures": len(df),
        "n_embedded": len(todo),
        "seconds": time.perf_counter() - t0,
    }
    return out, info
