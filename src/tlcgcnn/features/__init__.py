"""Features: crystal graphs and composition descriptors.

Owns the neighbour search and the cached graph shards (:mod:`.featurize`), the 92 atom
features of CGCNN (:mod:`.atom_features`, table ``atom_features.csv``) and the composition
descriptors of the scikit-learn baselines (:mod:`.descriptors`).

Torch-free. May import :mod:`tlcgcnn.data` and :mod:`tlcgcnn.utils`.
"""
