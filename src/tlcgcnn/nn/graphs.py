"""Load graph shards into contiguous tensors and slice batches from them.

All crystals of a data set live in a handful of flat tensors (atoms of crystal ``i`` are
``offsets[i]:offsets[i+1]``). A batch of crystals is gathered with a few vectorised index
operations, never by collating samples one by one in Python, and the whole set can sit on
the GPU so that batching costs no host-device traffic.

Fixed-shape batches (:meth:`GraphSet.batch` with ``pad_atoms`` / ``pad_crystals``): a batch can
be padded to a size from a small ladder (:func:`bucket`), so that compiled code
(``torch.compile``, CUDA graphs) sees a handful of shapes instead of a new one per batch. The
padding atoms are isolated (their neighbours are themselves, behind a False ``edge_mask``),
belong to a crystal row past the real ones, and are left out of batch-norm statistics through
``atom_mask``: the real crystals' outputs and gradients are those of the unpadded batch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tlcgcnn.utils import fileio as io


@dataclass
class Batch:
    z: torch.Tensor  # [a] long, atomic numbers
    nbr_idx: torch.Tensor  # [a, M] long, indices into the batch's atoms
    nbr_dist: torch.Tensor  # [a, M] float
    crystal: torch.Tensor  # [a] long, crystal of each atom (0..n-1)
    counts: torch.Tensor  # [n] atoms per crystal
    n: int
    edge_mask: torch.Tensor | None = None  # [a, M] bool, False on padded self-loops (None: none in the batch)
    atom_mask: torch.Tensor | None = None  # [a] bool, False on padding atoms (None: no padding atoms)
    n_real: int | None = None  # crystals before padding (None: n)

    @property
    def n_crystals(self) -> int:
        """Real crystals in the batch: the first ``n_crystals`` output rows are theirs."""
        return self.n if self.n_real is None else self.n_real


@dataclass
class GraphSet:
    ids: np.ndarray  # [n] str
    z: torch.Tensor  # [A] long
    nbr_idx: torch.Tensor  # [A, M] long, index within the crystal
    nbr_dist: torch.Tensor  # [A, M] float32
    offsets: torch.Tensor  # [n + 1] long
    featurize: dict[str, Any] | None = None  # the cache's format_version, params and key (manifest)

    @property
    def pad_distance(self) -> float | None:
        """Distances above this are padded self-loops, not neighbours (featurize max_radius)."""
        if not self.featurize or not self.featurize.get("params"):
            return None
        return float(self.featurize["params"]["max_radius"])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def to(self, device: torch.device | str) -> GraphSet:
        return GraphSet(
            self.ids,
            self.z.to(device),
            self.nbr_idx.to(device),
            self.nbr_dist.to(device),
            self.offsets.to(device),
            self.featurize,
        )

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``ids``; raises naming the first id that has no graph."""
        lookup = pd.Index(self.ids)
        pos = lookup.get_indexer(list(ids))
        if (pos < 0).any():
            missing = [i for i, p in zip(ids, pos, strict=True) if p < 0]
            raise KeyError(f"{len(missing)} ids have no graph (first: {missing[0]!r})")
        return pos

    def batch(self, index: torch.Tensor, pad_atoms: int | None = None, pad_crystals: int | None = None) -> Batch:
        """Gather crystals ``index`` (positions) into one batch; with ``pad_atoms`` (and
        ``pad_crystals``, at least one more than the crystals) padded to that many atoms and
        crystal rows (:func:`pad`)."""
        b = self._gather(index)
        if pad_atoms is None:
            return b
        return pad(b, pad_atoms, pad_crystals if pad_crystals is not None else b.n + 1, self.pad_distance)

    def _gather(self, index: torch.Tensor) -> Batch:
        index = index.to(self.offsets.device)
        counts = self.counts[index]
        starts = self.offsets[:-1][index]
        n = int(index.numel())
        crystal = torch.repeat_interleave(torch.arange(n, device=index.device), counts)
        new_starts = torch.cumsum(counts, 0) - counts
        atom = torch.arange(crystal.numel(), device=index.device) - new_starts[crystal] + starts[crystal]
        nbr = self.nbr_idx[atom] + new_starts[crystal].unsqueeze(1)
        dist = self.nbr_dist[atom]
        mask = None
        pad = self.pad_distance
        if pad is not None:
            padded = dist > pad
            if bool(padded.any()):
                mask = ~padded
        return Batch(self.z[atom], nbr, dist, crystal, counts, n, mask)

    def batches(
        self, positions: torch.Tensor, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        if shuffle:
            positions = positions[torch.randperm(positions.numel(), generator=generator).to(positions.device)]
        for start in range(0, positions.numel(), batch_size):
            yield self.batch(positions[start : start + batch_size])


def bucket(n_atoms: int, growth: float = 1.25, quantum: int = 64) -> int:
    """The padded size of a batch of ``n_atoms`` atoms: the first rung of the ladder 64, 128,
    192, 256, 320, 384, 512, 640, 768, 960, 1216, ... (each rung ``growth`` times the last,
    rounded to a multiple of ``quantum``, at least one ``quantum`` more) that holds one padding
    atom more than ``n_atoms`` (the padding crystal row needs one). Above 256 atoms a batch
    wastes under 25 % of its atoms on padding; batches of 500–5,000 atoms use 11 shapes."""
    need = n_atoms + 1
    size = quantum
    while size < need:
        size = max(size + quantum, int(round(size * growth / quantum)) * quantum)
    return size


def pad(b: Batch, n_atoms: int, n_crystals: int, pad_distance: float | None = None) -> Batch:
    """``b`` padded to ``n_atoms`` atoms and ``n_crystals`` crystal rows.

    Padding atoms have Z = 0 (the atom table's zero row), neighbour lists pointing at
    themselves at a distance past the Gaussian range and a False ``edge_mask`` (so they send
    and receive no message), ``atom_mask`` False (batch norm leaves them out of its
    statistics) and belong to crystal row ``b.n`` (a row the loss never reads); the rows after
    it have no atoms. The first ``b.n`` output rows are the real crystals'."""
    a, m = b.nbr_idx.shape
    extra = n_atoms - a
    if extra < 1 or n_crystals < b.n + 1:
        raise ValueError(f"cannot pad {a} atoms / {b.n} crystals to {n_atoms} / {n_crystals}")
    dev = b.z.device
    far = (pad_distance if pad_distance is not None else float(b.nbr_dist.max())) + 100.0
    pad_idx = torch.arange(a, n_atoms, device=dev)
    edge_mask = b.edge_mask if b.edge_mask is not None else torch.ones(a, m, dtype=torch.bool, device=dev)
    counts = torch.zeros(n_crystals, dtype=b.counts.dtype, device=dev)
    counts[: b.n] = b.counts
    counts[b.n] = extra
    return Batch(
        z=torch.cat([b.z, torch.zeros(extra, dtype=b.z.dtype, device=dev)]),
        nbr_idx=torch.cat([b.nbr_idx, pad_idx.unsqueeze(1).expand(extra, m).to(b.nbr_idx.dtype)]),
        nbr_dist=torch.cat([b.nbr_dist, torch.full((extra, m), far, dtype=b.nbr_dist.dtype, device=dev)]),
        crystal=torch.cat([b.crystal, torch.full((extra,), b.n, dtype=b.crystal.dtype, device=dev)]),
        counts=counts,
        n=n_crystals,
        edge_mask=torch.cat([edge_mask, torch.zeros(extra, m, dtype=torch.bool, device=dev)]),
        atom_mask=torch.cat(
            [torch.ones(a, dtype=torch.bool, device=dev), torch.zeros(extra, dtype=torch.bool, device=dev)]
        ),
        n_real=b.n,
    )


def load(graph_dir: str | Path, ids: Sequence[str] | None = None) -> GraphSet:
    """Load all shards of a featurized data set (optionally only ``ids``, in that order).

    The shards are read once per process and graph cache (a grouped cell trains and evaluates
    every seed of a cell in one process); each call with ``ids`` returns a fresh subset, and
    the full set returned for ``ids=None`` is shared, so treat it as read-only."""
    root = Path(graph_dir).resolve()
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{root}: no manifest.json; the graph cache is incomplete or missing")
    full = _load_full(root, manifest_path.stat().st_mtime_ns)
    if ids is None:
        return full
    return subset(full, full.positions(ids))


@functools.lru_cache(maxsize=1)
def _load_full(root: Path, manifest_mtime_ns: int) -> GraphSet:
    """Every shard of the cache at ``root`` (the manifest's mtime keys a rebuilt cache)."""
    manifest = io.read_json(root / "manifest.json")
    index = pd.read_parquet(root / "index.parquet")
    parts = []
    for name in manifest["shards"]:
        with np.load(root / name) as data:
            parts.append({k: data[k] for k in ("z", "nbr_idx", "nbr_dist", "offsets")})
    counts = np.concatenate([np.diff(p["offsets"]) for p in parts]) if parts else np.zeros(0, np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return GraphSet(
        featurize={k: manifest.get(k) for k in ("format_version", "params", "key")},
        ids=index["material_id"].astype(str).to_numpy(),
        z=torch.from_numpy(np.concatenate([p["z"] for p in parts]).astype(np.int64)),
        nbr_idx=torch.from_numpy(np.concatenate([p["nbr_idx"] for p in parts]).astype(np.int64)),
        nbr_dist=torch.from_numpy(np.concatenate([p["nbr_dist"] for p in parts])),
        offsets=torch.from_numpy(offsets),
    )


def subset(graphs: GraphSet, positions: np.ndarray | torch.Tensor) -> GraphSet:
    """A contiguous copy holding only the crystals at ``positions`` (in that order)."""
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.long)
    b = graphs.batch(pos)
    offsets = torch.zeros(len(pos) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(b.counts.cpu(), 0)
    local = b.nbr_idx - (offsets[:-1].to(b.nbr_idx.device)[b.crystal]).unsqueeze(1)
    return GraphSet(
        graphs.ids[np.asarray(pos)], b.z, local, b.nbr_dist, offsets.to(graphs.offsets.device), graphs.featurize
    )
