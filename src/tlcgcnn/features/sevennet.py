"""SevenNet as a frozen feature extractor (backbone ``sevennet-0``, :mod:`tlcgcnn.features.backbones`).

SevenNet-0 (``sevenn`` 0.13.0, the 11 July 2024 weights inside the package; trained on MPtrj)
is an E(3)-equivariant network of 5 interaction blocks. Its energy read-out starts at the
module ``reduce_input_to_hidden``, whose input is each atom's vector of 128 scalar (``0e``)
features after the last block. :class:`SevenNetFeatures` removes that read-out, the atomic
energy scaling, the sum and the force / stress output, so a forward pass returns those
features without taking gradients; a crystal's vector is their mean over its atoms (a
supercell gets the vector of its cell). Structures are converted with SevenNet's own
neighbour list (its 5 Å cutoff) and embedded in batches (``torch_geometric``); a crystal's
features do not depend on the batch it is in.

The package is imported only here (rule ``embed_backbone_sevenn``, ``envs/sevenn.yaml``), so
the CHGNet rule's environment does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SevenNetFeatures:
    """SevenNet cut after its last interaction block: ``model`` maps a batch of atom graphs
    to per-atom features (its read-out and force output removed); ``cutoff`` in Å."""

    model: Any
    cutoff: float
    device: str

    # the first module of SevenNet's energy read-out: its input is the per-atom feature vector
    READOUT_START = "reduce_input_to_hidden"

    @classmethod
    def from_weights(cls, weights: str, device: str) -> SevenNetFeatures:
        """The model ``weights`` names (a pretrained model inside the package), cut, on ``device``."""
        import sevenn.util as sevenn_util

        checkpoint = sevenn_util.load_checkpoint(weights)
        model = checkpoint.build_model()
        names = list(model._modules)
        if cls.READOUT_START not in names:
            raise ValueError(f"SevenNet {weights}: no module {cls.READOUT_START!r} to cut the read-out at")
        for name in names[names.index(cls.READOUT_START) :]:
            model.delete_module_by_key(name)
        model.key_grad = None  # no forces: the edge vectors need no gradient
        model.set_is_batch_data(True)
        model.eval()
        return cls(model.to(device), float(checkpoint.config["cutoff"]), device)

    def graphs(self, structures: list[Any]) -> list[Any]:
        """SevenNet's atom graphs of pymatgen structures (its own neighbour list, ``cutoff``)."""
        from pymatgen.io.ase import AseAtomsAdaptor
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        return [
            AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(AseAtomsAdaptor.get_atoms(s), self.cutoff))
            for s in structures
        ]

    def atom_features(self, structures: list[Any]) -> tuple[list[np.ndarray], int]:
        """Per structure its [atoms, 128] features (float64), and how many structures have an
        atom with no neighbour within the cutoff (it keeps its own embedding)."""
        import torch
        from torch_geometric.data import Batch

        graphs = self.graphs(structures)
        isolated = 0
        for g in graphs:
            n_atoms = int(g["num_atoms"]) if "num_atoms" in g else int(g["x"].shape[0])
            isolated += int(len(torch.unique(g["edge_index"][0])) < n_atoms)
        batch = Batch.from_data_list(graphs).to(self.device)
        with torch.no_grad():
            out = self.model(batch)
        x = out["x"].detach().double().cpu()
        index = out["batch"].cpu()
        return [x[index == i].numpy() for i in range(len(graphs))], isolated

    def crystal_vectors(self, structures: list[Any]) -> tuple[np.ndarray, int]:
        """float64 [n, 128]: each structure's atom features averaged over its atoms
        (:data:`tlcgcnn.features.backbones.POOLING`), and the count of structures with an isolated atom."""
        per_atom, isolated = self.atom_features(structures)
        return np.stack([a.mean(axis=0) for a in per_atom]), isolated


def load(backbone: Any, device: str) -> SevenNetFeatures:
    """The loader of a ``sevenn`` backbone (:attr:`tlcgcnn.features.backbones.Backbone.loader`)."""
    if backbone.package != "sevenn":
        raise ValueError(f"backbone {backbone.name} is not a SevenNet model")
    return SevenNetFeatures.from_weights(backbone.weights, device)
