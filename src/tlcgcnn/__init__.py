"""tlcgcnn: transfer learning with crystal graph convolutional neural networks.

The Python API (:mod:`tlcgcnn.api`)::

    import tlcgcnn

    tlcgcnn.list_models()                          # the published models
    model = tlcgcnn.load_model("mp2018-log_kvrh")  # a name, a checkpoint or a folder of seeds
    df = model.predict([structure, "my.cif"])      # pymatgen Structures, ASE Atoms, paths
    run = tlcgcnn.finetune(pretrained="mp2018-ef", data="my_cifs/", label="my_modulus", unit="GPa")

The names are imported on first use, so ``import tlcgcnn`` stays light (no torch) for the
workflow's parse.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["FinetuneResult", "Model", "__version__", "finetune", "list_models", "load_model"]


def __getattr__(name: str) -> Any:
    if name in ("FinetuneResult", "Model", "finetune", "list_models", "load_model"):
        from tlcgcnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'tlcgcnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
