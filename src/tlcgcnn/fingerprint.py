"""What a data file holds, blind to floating-point rounding.

Rebuilding ``structures.parquet`` and the graph shards on another machine, with the same
data, code and pinned packages, gave other bytes: the last bits of some floats differ
(numpy and pymatgen take the machine's own SIMD paths). A sha256 cannot tell that from a
real change. A fingerprint can: every integer, boolean and string value, every shape and
every list length is hashed exactly, and each float array is summarised by its count of
NaN, its sum and its sum of absolute values. Rounding moves each value by an ulp or two,
so the sums by at most :data:`ULPS` machine epsilons of the array's dtype times its sum of
|x|; a real change (another cut-off radius, another relaxation, a dropped crystal) moves
them by far more, or changes an integer, a shape or a length. What it cannot see: a
change confined to a few float values, smaller than ``ULPS`` epsilons of the whole array
(about 1e-6 of a float32 array's total), with no integer changed.

Readable kinds: ``.npz`` (each array), ``.parquet`` (each column, list columns flattened,
their lengths hashed) and ``.json`` (the sha256 of the parsed document without the keys
that only restate other files' bytes: ``*sha256`` and ``bytes*``). Other files have no
fingerprint (``None``); for them only identical bytes count as the same.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ULPS = 8  # tolerance on a float array's sum and sum of |x|: this many epsilons of its dtype times its sum of |x|


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _floats(values: Any, dtype: str, shape: list[int]) -> dict[str, Any]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {
        "dtype": dtype, "shape": shape, "nan": int(np.isnan(a).sum()),
        "sum": float(np.nansum(a)), "abs": float(np.nansum(np.abs(a))),
    }


def _array(a: Any) -> dict[str, Any]:
    import numpy as np

    if np.issubdtype(a.dtype, np.floating):
        return _floats(a, str(a.dtype), list(a.shape))
    blob = np.ascontiguousarray(a).tobytes() if a.dtype != object else json.dumps(a.tolist(), default=str).encode()
    return {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": _sha(blob)}


def _column(col: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = []
    while pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        lengths.append(_sha(json.dumps(pc.list_value_length(col).to_pylist()).encode()))
        col = pc.list_flatten(col)
    if pa.types.is_floating(col.type):
        out = _floats(col.to_numpy(zero_copy_only=False), str(col.type), [len(col)])
    else:
        out = {"dtype": str(col.type), "shape": [len(col)], "sha256": _sha(json.dumps(col.to_pylist(), default=str).encode())}
    return {**out, "list_lengths": lengths} if lengths else out


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if not (k.endswith("sha256") or k.startswith("bytes"))}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def fingerprint(path: str | Path) -> dict[str, Any] | None:
    """The fingerprint of ``path``, or ``None`` for a kind this module does not read (or a
    file it cannot parse as its suffix says)."""
    try:
        return _fingerprint(Path(path))
    except (ValueError, OSError, KeyError, TypeError):
        return None


def _fingerprint(path: Path) -> dict[str, Any] | None:
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            return {"npz": {name: _array(z[name]) for name in sorted(z.files)}}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return {"parquet": {name: _column(table.column(name).combine_chunks()) for name in table.column_names}}
    if path.suffix == ".json":
        return {"json": _sha(json.dumps(_strip(json.loads(path.read_text())), sort_keys=True).encode())}
    return None


def _eps(dtype: str) -> float:
    import numpy as np

    arrow = {"double": "float64", "float": "float32", "halffloat": "float16"}  # Arrow's names for a parquet column
    return float(np.finfo(np.dtype(arrow.get(dtype, dtype))).eps)


def close(a: Any, b: Any, ulps: float = ULPS) -> bool:
    """Whether two fingerprints (or parts of them) agree: everything exactly, except the
    float sums, which may differ by ``ulps`` epsilons of their dtype times the array's sum
    of |x|."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return False
        if {"sum", "abs", "nan", "dtype"} <= a.keys():  # a float array's summary
            if {k: v for k, v in a.items() if k not in ("sum", "abs")} != {k: v for k, v in b.items() if k not in ("sum", "abs")}:
                return False
            tol = ulps * _eps(a["dtype"]) * max(abs(a["abs"]), abs(b["abs"]))
            return all(abs(a[k] - b[k]) <= tol for k in ("sum", "abs"))
        return all(close(a[k], b[k], ulps) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, ulps) for x, y in zip(a, b, strict=True))
    return bool(a == b)
