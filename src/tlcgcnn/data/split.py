"""Metal / non-metal subsets and reproducible train / validation / test splits.

* :func:`subsets` assigns every material to ``metal`` or ``nonmetal`` using the ``is_metal``
  flag, or ``band_gap <= threshold`` (config), and ``all``.
* :func:`target_split` fixes, for one target property within one subset, a test set and a
  shuffled pool (seeded); it is written to a JSON file so every run sees the same test set.
  The test set is a seeded fraction of the labelled materials, or, with ``split.test_ids``
  (:func:`read_test_ids`), exactly the listed materials that are labelled (the model zoo's
  committed held-out lists).
* :func:`train_val` draws the training set of a given size and seed from the pool: the first
  ``size`` materials of a seeded permutation (so training sets are nested across sizes for a
  seed) and a validation set from the rest.
* A target of the metal or non-metal subset that a mode trains with ``train_pool: all``
  (:data:`TRAIN_POOLS`) also gets ``pool_all``: every labelled material of any subset that is
  not in its test set, shuffled with the seed; such a mode draws its training and validation
  crystals from it (:func:`pool_ids`) and is tested on the subset's own test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SUBSETS = ("all", "metal", "nonmetal")
# where a fine-tuning mode draws its training and validation crystals from (finetune.modes.<m>.train_pool):
# the target's subset (the split's ``pool``), or every subset (``pool_all``)
TRAIN_POOLS = ("subset", "all")


def metal_column(rule: str) -> str:
    """The table column the metal / non-metal subsets are decided by under ``split.metal_rule``."""
    if rule not in ("is_metal", "band_gap"):
        raise ValueError(f"unknown metal_rule {rule!r}; choose is_metal or band_gap")
    return rule


def metal_flags(df: pd.DataFrame, rule: str = "is_metal", threshold: float = 0.0) -> pd.Series:
    """Boolean metal flag per row (NA where it cannot be decided)."""
    if rule == "is_metal":
        if "is_metal" not in df.columns:
            hint = (
                "; or use metal_rule: band_gap"
                if "band_gap" in df.columns
                else " (a metal flag, or a band_gap column with metal_rule: band_gap)"
            )
            raise ValueError(f"split.metal_rule is 'is_metal' but the table has no is_metal column{hint}")
        return df["is_metal"].astype("boolean")
    if rule == "band_gap":
        if "band_gap" not in df.columns:
            raise ValueError("split.metal_rule is 'band_gap' but the table has no band_gap column")
        gap = df["band_gap"]
        return (gap <= threshold).astype("boolean").mask(gap.isna())
    raise ValueError(f"unknown metal_rule {rule!r}; choose is_metal or band_gap")


def subsets(
    df: pd.DataFrame, rule: str = "is_metal", threshold: float = 0.0, needed: bool = True
) -> dict[str, list[str]]:
    """Ids of ``all``, ``metal`` and ``nonmetal``. When no target or source asks for a metal or
    non-metal subset (``needed`` False) a table without the rule's column is fine: the two
    subsets are then empty."""
    ids = df["material_id"].astype(str)
    if not needed and metal_column(rule) not in df.columns:
        return {"all": ids.tolist(), "metal": [], "nonmetal": []}
    flags = metal_flags(df, rule, threshold)
    return {
        "all": ids.tolist(),
        "metal": ids[flags.fillna(False).to_numpy(dtype=bool)].tolist(),
        "nonmetal": ids[(~flags).fillna(False).to_numpy(dtype=bool)].tolist(),
    }


def read_test_ids(path: str | Path) -> list[str]:
    """Material ids of a ``split.test_ids`` file: one id per line; blank lines and lines
    starting with ``#`` are ignored. A repeated id is an error naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"split.test_ids: {p} does not exist")
    ids: list[str] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text in seen:
            raise ValueError(f"{p}: line {n}: id {text!r} repeats line {seen[text]}")
        seen[text] = n
        ids.append(text)
    if not ids:
        raise ValueError(f"{p}: no ids (one material id per line)")
    return ids


def target_split(
    df: pd.DataFrame,
    prop: str,
    subset_ids: list[str],
    test_fraction: float,
    test_max: int | None,
    seed: int,
    test_ids: list[str] | None = None,
    labelled_with: list[str] | None = None,
    all_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Fixed test set and shuffled training pool for ``prop`` within a subset.

    ``labelled_with`` keeps only the materials labelled with each of those properties too.

    With ``test_ids`` the test set is exactly those of them that are labelled within the
    subset (``test_fraction`` and ``test_max`` are not used) and the pool is every other
    labelled material; ids that the table does not hold or that lack the label are simply
    not in this target's test set.

    With ``all_ids`` (the ids of every subset: the subsets file's ``all``) the result also
    holds ``pool_all`` and ``n_labelled_all``: the labelled materials among ``all_ids`` that
    are neither in the test set nor (with ``test_ids``) a listed test id of another subset,
    shuffled with a generator seeded like the pool's. Without ``all_ids`` the result is
    exactly what it was before ``pool_all`` existed."""
    if prop not in df.columns:
        raise ValueError(f"property {prop!r} is not in the table; columns: {list(df.columns)}")
    labelled = df.loc[df[[prop, *(labelled_with or [])]].notna().all(axis=1), "material_id"].astype(str)
    ids = np.array(sorted(set(labelled) & set(subset_ids)))
    if len(ids) < 3:
        raise ValueError(f"only {len(ids)} materials have {prop!r} in this subset; need at least 3")
    rng = np.random.default_rng(seed)
    perm = ids[rng.permutation(len(ids))]
    if test_ids is not None:
        fixed = set(map(str, test_ids))
        in_test = np.array([i in fixed for i in perm], dtype=bool)
        if not in_test.any():
            raise ValueError(
                f"split.test_ids: none of its {len(fixed)} ids is among the {len(ids)} materials "
                f"labelled with {prop!r} in this subset"
            )
        if in_test.all():
            raise ValueError(
                f"split.test_ids: all {len(ids)} materials labelled with {prop!r} in this subset are test ids: "
                "nothing is left to train on"
            )
        out = {
            "property": prop,
            "seed": seed,
            "n_labelled": len(ids),
            "test": perm[in_test].tolist(),
            "pool": perm[~in_test].tolist(),
        }
    else:
        n_test = max(1, int(round(test_fraction * len(ids))))
        if test_max:
            n_test = min(n_test, int(test_max))
        out = {
            "property": prop,
            "seed": seed,
            "n_labelled": len(ids),
            "test": perm[:n_test].tolist(),
            "pool": perm[n_test:].tolist(),
        }
    if all_ids is not None:
        # held-out ids (split.test_ids) of the other subsets stay out too: no model trains on them
        leave_out = set(out["test"]) | (set(map(str, test_ids)) if test_ids is not None else set())
        every = np.array(sorted(set(labelled) & set(map(str, all_ids))))
        perm_all = every[np.random.default_rng(seed).permutation(len(every))]
        out["n_labelled_all"] = len(every)
        out["pool_all"] = [i for i in perm_all.tolist() if i not in leave_out]
    return out


@dataclass
class TrainVal:
    train: list[str]
    val: list[str]


def n_val_for(size: int, val_fraction: float, val_min: int) -> int:
    return max(int(val_min), int(math.ceil(val_fraction * size)))


def pool_ids(split: dict[str, Any], train_pool: str | None = None) -> list[str]:
    """The ids a cell draws its training and validation crystals from: the split's ``pool``
    (``train_pool`` None or ``subset``), or ``pool_all`` (``all``: every subset's labelled
    materials but the test set)."""
    if train_pool in (None, "subset"):
        return list(split["pool"])
    if train_pool != "all":
        raise ValueError(f"unknown train_pool {train_pool!r}; choose from {TRAIN_POOLS}")
    if "pool_all" not in split:
        raise ValueError(
            f"split of {split.get('name', split.get('property'))!r} has no pool_all (written only for a target with a "
            "train_pool: all mode); make the split file again"
        )
    return list(split["pool_all"])


def train_val(pool: list[str], size: int | str, seed: int, val_fraction: float, val_min: int) -> TrainVal:
    """Training set of ``size`` (an int or 'all') and validation set, drawn from the pool."""
    rng = np.random.default_rng(10_000 + seed)
    perm = [pool[i] for i in rng.permutation(len(pool))]
    if size == "all":
        n_val = max(int(val_min), int(math.ceil(val_fraction * len(pool))))
        n_train = len(pool) - n_val
    else:
        n_train = int(size)
        n_val = n_val_for(n_train, val_fraction, val_min)
    if n_train < 1 or n_train + n_val > len(pool):
        raise ValueError(
            f"training size {size} needs {n_train} + {n_val} validation materials but the pool has only {len(pool)}; "
            "lower the size or the validation fraction"
        )
    return TrainVal(train=perm[:n_train], val=perm[n_train : n_train + n_val])


def run(
    table_path: str,
    out: str,
    split_cfg: dict[str, Any],
    subsets_path: str | None = None,
    spec: dict[str, Any] | None = None,
    exclude: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Workflow entry: write the subsets file (``spec`` None) or one target's split file.

    ``exclude`` (id -> reason; the crystals featurize reported with isolated atoms, under
    ``featurize.isolated: drop``) leaves those crystals out of every subset, and so out of
    every split; they are recorded in the subsets file under ``excluded``."""
    import logging

    from tlcgcnn.utils import fileio as io

    log = logging.getLogger(__name__)
    if spec is None:
        df = pd.read_parquet(table_path, columns=None)
        excluded = {str(k): v for k, v in (exclude or {}).items()}
        if excluded:
            keep = ~df["material_id"].astype(str).isin(excluded)
            log.info("leaving out %d crystals with isolated atoms (featurize.isolated: drop)", int((~keep).sum()))
            df = df[keep]
        needed = bool(split_cfg.get("subsets_needed", True))
        result: dict[str, Any] = subsets(df, split_cfg["metal_rule"], split_cfg["band_gap_threshold"], needed=needed)
        if not needed and metal_column(split_cfg["metal_rule"]) not in df.columns:
            log.info(
                "no %s column and no target asks for a metal / non-metal subset: those subsets are left empty",
                split_cfg["metal_rule"],
            )
        log.info("subsets: %s", {k: len(v) for k, v in result.items()})
        result["excluded"] = [{"material_id": k, "reason": v} for k, v in sorted(excluded.items())]
    else:
        also = [p for p in spec.get("labelled_with") or [] if p != spec["property"]]
        df = pd.read_parquet(table_path, columns=["material_id", spec["property"], *dict.fromkeys(also)])
        if subsets_path is None:
            raise ValueError("a target split needs the subsets file")
        subset = spec.get("subset", "all")
        fixed = read_test_ids(split_cfg["test_ids"]) if split_cfg.get("test_ids") else None
        subs = io.read_json(subsets_path)
        all_ids = subs["all"] if spec.get("pool_all") else None
        result = target_split(
            df,
            spec["property"],
            subs[subset],
            split_cfg["test_fraction"],
            split_cfg.get("test_max"),
            split_cfg["seed"],
            test_ids=fixed,
            labelled_with=also,
            all_ids=all_ids,
        )
        result.update(name=spec["name"], subset=subset, test_ids_file=split_cfg.get("test_ids"))
        if also:
            result["labelled_with"] = also
        log.info(
            "%s (%s, %s): %d labelled, %d test, %d in the training pool",
            spec["name"],
            spec["property"],
            subset,
            result["n_labelled"],
            len(result["test"]),
            len(result["pool"]),
        )
        if all_ids is not None:
            log.info(
                "%s: %d labelled in every subset, %d in the all-subsets training pool (pool_all)",
                spec["name"],
                result["n_labelled_all"],
                len(result["pool_all"]),
            )
    io.write_json(out, result)
    return result
