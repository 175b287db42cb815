"""The model zoo's held-out materials: the fixed test sets of every configuration it serves.

A zoo model that is later used as a pretraining source, or scored, by another configuration
must never have trained on that configuration's test materials. :func:`fixed_test_sets` computes a
configuration's fixed test sets with the pipeline's own code (ingest with the same options and
sample, the metal / non-metal subsets, :func:`tlcgcnn.data.split.target_split` with the same seed
and fractions); :func:`write` stores their union as an id list (one id a line, the file that
the zoo configuration names in ``split.test_ids``) and a JSON record of every test set, so
that a test can check the list still covers them.

    python -m tlcgcnn.data.heldout --out resources/pretrained/heldout/mp2018 config/config.yaml config/paper.yaml ...
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tlcgcnn.config import Config, load
from tlcgcnn.data import split
from tlcgcnn.data.ingest import IngestOptions, ingest_frame, read_input, sample_rows
from tlcgcnn.utils import fileio as io

log = logging.getLogger(__name__)


def fixed_test_sets(cfg: Config, threads: int = 1, root: str | Path = ".") -> dict[str, Any]:
    """Every fine-tuning target's fixed test ids of ``cfg`` (paths relative to ``root``),
    with the input file and its sha256."""
    if cfg.dataset.source != "local":
        raise ValueError(f"config {cfg.name}: held-out ids need a local dataset (dataset.path), not a download")
    if cfg.featurize.isolated == "drop":
        raise ValueError(
            f"config {cfg.name}: featurize.isolated: drop makes the splits depend on the graphs; not supported here"
        )
    path = Path(root) / str(cfg.dataset.path)
    raw = read_input(path)
    ds = cfg.dataset
    if ds.sample:
        raw = sample_rows(raw, **ds.sample)
    opts = IngestOptions(
        min_distance=ds.min_distance,
        id_column=ds.id_column,
        structure_column=ds.structure_column,
        columns=dict(ds.columns),
        required_properties=cfg.required_properties(),
        threads=threads,
        source=ds.source_label,
    )
    df, _, _ = ingest_frame(raw, opts, path=str(path), progress=False)
    sp = cfg.split
    subs = split.subsets(df, sp.metal_rule, sp.band_gap_threshold)
    fixed = split.read_test_ids(Path(root) / sp.test_ids) if sp.test_ids else None
    tests = {}
    for t in cfg.target_names:
        spec = cfg.split_spec(t)
        res = split.target_split(
            df, spec["property"], subs[spec["subset"]], sp.test_fraction, sp.test_max, sp.seed, test_ids=fixed
        )
        tests[t] = sorted(res["test"])
    return {
        "config": cfg.name,
        "input": str(cfg.dataset.path),
        "input_sha256": io.sha256_file(path),
        "rows": len(df),
        "tests": tests,
    }


def write(
    configs: Sequence[str | Path], out_stem: str | Path, threads: int = 1, root: str | Path = "."
) -> dict[str, Any]:
    """``<out_stem>.txt`` (the union of every test set of ``configs``) and ``<out_stem>.json``."""
    records = []
    for c in configs:
        rec = fixed_test_sets(load(Path(root) / c), threads=threads, root=root)
        rec["config_file"] = str(c)
        log.info("%s: %s", c, {t: len(v) for t, v in rec["tests"].items()})
        records.append(rec)
    union = sorted({i for r in records for ids in r["tests"].values() for i in ids})
    stem = Path(out_stem)
    header = [
        "# Held-out materials of the model zoo: the union of the fixed test sets of",
        *[f"#   {r['config_file']} ({', '.join(f'{t} {len(v)}' for t, v in r['tests'].items())})" for r in records],
        f"# {len(union)} ids; made by python -m tlcgcnn.data.heldout (see {stem.name}.json)",
    ]
    io.write_text(stem.with_suffix(".txt"), "\n".join([*header, *union]) + "\n")
    io.write_json(stem.with_suffix(".json"), {"n_ids": len(union), "configs": records})
    return {"n_ids": len(union), "configs": records}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tlcgcnn.data.heldout", description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="configuration files whose test sets the zoo must hold out")
    ap.add_argument("--out", required=True, help="output stem: writes <out>.txt and <out>.json")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    res = write(args.configs, args.out, threads=args.threads)
    print(f"{res['n_ids']} held-out ids -> {args.out}.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
