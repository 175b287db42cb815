"""Features: crystal graphs and composition descriptors.

Owns the neighbour search and the cached graph shards (:mod:`.featurize`), the 92 atom
features of CGCNN (:mod:`.atom_features`, table ``atom_features.csv``), the composition
descriptors of the scikit-learn baselines (:mod:`.descriptors`) and the crystal vectors of a
universal-potential backbone such as CHGNet, with their cache (:mod:`.backbones`; torch and the
backbone's package imported inside its functions).

Torch-free. May import :mod:`tlcgcnn.data` and :mod:`tlcgcnn.utils` (and, inside a function,
:func:`tlcgcnn.report.provenance.cpu_model`, the machine a backbone's vectors were computed on).
"""
